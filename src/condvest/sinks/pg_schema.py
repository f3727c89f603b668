"""The PostgreSQL cache's tables (docs/design.md §9) and their versioned upgrade path.

The schema version lives in ``condvest_schema_version`` (one row per applied migration).
:func:`migrate` applies the migrations above the current version in order, in ONE transaction,
under an advisory lock keyed by the schema name — two processes initialising the same schema at
once serialise, and the second finds nothing left to do. DDL is transactional in PostgreSQL, so a
failing migration leaves the previous version intact.

Statements use ``{schema}`` for the (quoted) schema name; nothing else is interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from condvest.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg

VERSION_TABLE = "condvest_schema_version"


@dataclass(frozen=True)
class Migration:
    """Version ``version`` of the schema: ``statements`` take it from ``version - 1``."""

    version: int
    description: str
    statements: tuple[str, ...]


V1 = Migration(
    1,
    "raw_ohlcv, symbol_metadata, watermarks, job_runs",
    (
        # Prices are double precision: the original's DECIMAL(10,2) rounded 0.0345 to 0.03 (§10).
        """create table if not exists {schema}.raw_ohlcv (
            symbol text not null,
            date date not null,
            open double precision not null,
            high double precision not null,
            low double precision not null,
            close double precision not null,
            volume double precision not null,
            vwap double precision,
            transactions bigint,
            fetched_at timestamptz not null,
            source text not null,
            primary key (symbol, date)
        )""",
        # Retention deletes and freshness (max(date)) scan by date, not by symbol.
        "create index if not exists raw_ohlcv_date_idx on {schema}.raw_ohlcv (date)",
        """create table if not exists {schema}.symbol_metadata (
            symbol text primary key,
            name text,
            market text,
            locale text,
            type text,
            active boolean,
            primary_exchange text,
            currency text,
            cik text,
            composite_figi text,
            list_date date,
            delisted_utc timestamptz,
            market_cap double precision,
            sic_code text,
            industry text,
            description text,
            updated_at timestamptz not null default now()
        )""",
        # Every advance is a row (history); exactly one row per name is current, enforced by
        # the partial unique index even if two writers race past the advisory lock.
        """create table if not exists {schema}.watermarks (
            id bigserial primary key,
            name text not null,
            value date not null,
            run_id text,
            is_current boolean not null,
            set_at timestamptz not null default now()
        )""",
        """create unique index if not exists watermarks_one_current
            on {schema}.watermarks (name) where is_current""",
        """create table if not exists {schema}.job_runs (
            run_id text not null,
            stage text not null,
            status text not null,
            started_at timestamptz not null,
            ended_at timestamptz,
            counts jsonb not null default '{{}}'::jsonb,
            error text,
            primary key (run_id, stage)
        )""",
        "create index if not exists job_runs_stage_idx on {schema}.job_runs (stage, started_at)",
    ),
)

# Cash dividends, one row per vendor id (condvest.sinks.pg_dividends writes them).
V2 = Migration(
    2,
    "dividends",
    (
        """create table if not exists {schema}.dividends (
            id text primary key,
            symbol text not null,
            ex_dividend_date date not null,
            cash_amount double precision not null,
            currency text not null,
            dividend_type text not null,
            frequency integer,
            declaration_date date,
            record_date date,
            pay_date date,
            fetched_at timestamptz not null,
            source text not null
        )""",
        """create index if not exists dividends_symbol_idx
            on {schema}.dividends (symbol, ex_dividend_date)""",
    ),
)


MIGRATIONS: tuple[Migration, ...] = (V1, V2)
"""Append a ``Migration(N + 1, …)`` to change the schema; never edit an applied one."""


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return max((m.version for m in migrations), default=0)


def check_migrations(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..N in order, got {versions}")


def _statement(text: str, schema: str) -> psycopg.sql.Composed:
    from psycopg import sql

    return sql.SQL(text).format(schema=sql.Identifier(schema))


def read_version(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int | None:
    """The applied version; None when the version table does not exist yet."""
    from psycopg import sql

    row = conn.execute("select to_regclass(%s)", [f'"{schema}".{VERSION_TABLE}']).fetchone()
    if row is None or row[0] is None:
        return None
    query = sql.SQL("select coalesce(max(version), 0) from {}.{}").format(
        sql.Identifier(schema), sql.Identifier(VERSION_TABLE)
    )
    found = conn.execute(query).fetchone()
    return int(found[0]) if found else 0  # type: ignore[call-overload]


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    schema: str,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> tuple[int, int]:
    """Bring ``schema`` to the latest version. Returns (version before, version after).

    ``conn`` must be in autocommit mode; the upgrade runs in its own transaction.
    """
    check_migrations(migrations)
    target = latest_version(migrations)
    with conn.transaction():
        # hashtext: one lock per schema, so test schemas (and tenants) do not serialise.
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", [f"condvest-migrate:{schema}"])
        conn.execute(_statement("create schema if not exists {schema}", schema))
        conn.execute(
            _statement(
                f"""create table if not exists {{schema}}.{VERSION_TABLE} (
                    version integer primary key,
                    description text not null,
                    applied_at timestamptz not null default now())""",
                schema,
            )
        )
        before = read_version(conn, schema) or 0
        if before > target:
            raise DatabaseError(
                f"PostgreSQL schema {schema!r} is at version {before}, newer than this condvest "
                f"knows ({target})",
                hint="upgrade condvest, or point postgres.schema_name at another schema",
            )
        for migration in migrations:
            if migration.version <= before:
                continue
            for text in migration.statements:
                conn.execute(_statement(text, schema))
            conn.execute(
                _statement(
                    f"insert into {{schema}}.{VERSION_TABLE} (version, description) "
                    "values (%s, %s)",
                    schema,
                ),
                [migration.version, migration.description],
            )
    return before, target

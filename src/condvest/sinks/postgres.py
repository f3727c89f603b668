"""The PostgreSQL serving cache (docs/design.md §9): ``raw_ohlcv``, ``symbol_metadata``,
``dividends``, the watermark and the job-run log. Imported only when PostgreSQL is enabled
(:func:`condvest.sinks.open_sink`).

Bulk writes stream the Arrow table as CSV (written by Arrow's C++ writer, so no Python loop per
row) into a temporary table with COPY, then ``INSERT … ON CONFLICT DO UPDATE … WHERE`` the row
actually differs: a repeat changes 0 rows, and the count returned is the rows really changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.types.json import Jsonb

from condvest.errors import DatabaseError
from condvest.settings import Settings
from condvest.sinks.pg_connect import CONNECT_HINT, Target, connect, one_line, resolve_target
from condvest.sinks.pg_dividends import dividend_rows
from condvest.sinks.pg_dividends import stage_sql as dividend_stage_sql
from condvest.sinks.pg_dividends import upsert_sql as dividend_upsert_sql
from condvest.sinks.pg_schema import MIGRATIONS, Migration, latest_version, migrate, read_version
from condvest.sinks.pg_sql import (
    canonical_rows,
    csv_chunks,
    meta_text,
    metadata_columns,
    metadata_stage_sql,
    metadata_upsert_sql,
    ohlcv_stage_sql,
    ohlcv_upsert_sql,
)
from condvest.state.fetchlog import DAILY_WATERMARK
from condvest.state.runs import RunRecord

log = logging.getLogger("condvest.sinks.postgres")


@dataclass(frozen=True)
class DbFreshness:
    """What ``status`` shows of the database beside the lake's freshness."""

    schema_version: int
    """0 when the tables do not exist yet (``status --init-db`` creates them)."""
    latest_version: int
    watermark: date | None
    max_date: date | None
    rows: int


class PostgresSink:
    """The :class:`condvest.sinks.Sink` over PostgreSQL. One lazily opened connection; every
    failure is a :class:`DatabaseError` of one line without the password. ``close()`` may be
    called any time: the next call reconnects."""

    def __init__(
        self,
        settings: Settings,
        *,
        target: Target | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.settings = settings
        self.schema = settings.postgres.schema_name
        self.migrations = tuple(migrations)
        self._target = target
        self._conn: Any = None
        self._schema_ready = False
        self.after_rows_hook: Callable[[], None] | None = None
        """Test seam: called inside ``upsert_session``'s transaction between the row upsert and
        the watermark update (an exception there must roll both back)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresSink:
        """A sink for ``settings`` (nothing is contacted until the first call)."""
        return cls(settings)

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return self._resolve().where

    def _resolve(self) -> Target:
        if self._target is None:
            self._target = resolve_target(self.settings)
        return self._target

    def _t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def _connection(self, *, ensure_schema: bool = True) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._resolve())
        if ensure_schema and not self._schema_ready:
            self._schema_ready = True
            try:
                # First use creates or upgrades the tables; a newer schema is refused there.
                if read_version(self._conn, self.schema) != latest_version(self.migrations):
                    migrate(self._conn, self.schema, self.migrations)
            except BaseException:
                self._schema_ready = False
                raise
        return self._conn

    @contextmanager
    def _tx(self, doing: str, *, ensure_schema: bool = True) -> Iterator[Any]:
        """One transaction; psycopg errors become one-line DatabaseErrors."""
        try:
            conn = self._connection(ensure_schema=ensure_schema)
            with conn.transaction():
                yield conn
        except psycopg.Error as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self.close()
            raise DatabaseError(
                f"PostgreSQL {self._target.where if self._target else ''}: {doing} failed: "
                f"{one_line(exc)}",
                hint=CONNECT_HINT if isinstance(exc, psycopg.OperationalError) else None,
            ) from None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
                self._schema_ready = False

    def __enter__(self) -> PostgresSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------
    def init_schema(self) -> tuple[int, int]:
        """Create or upgrade the tables. Returns (version before, version after)."""
        try:
            conn = self._connection(ensure_schema=False)
            versions = migrate(conn, self.schema, self.migrations)
            self._schema_ready = True
            return versions
        except psycopg.Error as exc:
            raise DatabaseError(
                f"PostgreSQL {self.where}: schema upgrade failed: {one_line(exc)}"
            ) from None

    def schema_version(self) -> int:
        with self._tx("reading the schema version") as conn:
            return read_version(conn, self.schema) or 0

    # -- OHLCV rows --------------------------------------------------------------------------
    def _upsert_ohlcv(self, conn: Any, rows: pa.Table) -> int:
        table = canonical_rows(rows)
        if table.num_rows == 0:
            return 0
        conn.execute("set local time zone 'UTC'")
        # The de-duplicating sort of a large batch stays in memory instead of spilling.
        conn.execute("set local work_mem = '64MB'")
        create, copy_sql = ohlcv_stage_sql(self._t("raw_ohlcv"))
        conn.execute(create)
        with conn.cursor().copy(copy_sql) as copy:
            for chunk in csv_chunks(table):
                copy.write(chunk)
        changed = int(conn.execute(ohlcv_upsert_sql(self._t("raw_ohlcv"))).rowcount)
        conn.execute("drop table condvest_stage")
        return changed

    def upsert_rows(self, rows: pa.Table) -> int:
        """Upsert rows (history, restatements, sync) without touching the watermark."""
        with self._tx(f"upserting {rows.num_rows} row(s) into raw_ohlcv") as conn:
            return self._upsert_ohlcv(conn, rows)

    def upsert_session(self, session: date, rows: pa.Table, *, run_id: str) -> int:
        """Rows of one session + the watermark advance to ``session``, in ONE transaction."""
        if rows.num_rows and "date" in rows.column_names:
            dates = set(rows.column("date").unique().to_pylist())
            if dates - {session}:
                raise ValueError(f"rows of {sorted(dates)} passed as session {session}")
        with self._tx(f"upserting session {session.isoformat()}") as conn:
            changed = self._upsert_ohlcv(conn, rows)
            if self.after_rows_hook is not None:
                self.after_rows_hook()
            self._advance(conn, DAILY_WATERMARK, session, run_id)
        return changed

    # -- watermark ---------------------------------------------------------------------------
    def _advance(self, conn: Any, name: str, day: date, run_id: str) -> date:
        # One advisory lock per (schema, watermark) serialises advances: READ COMMITTED then
        # sees the previous holder's row, so a stale writer never inserts a second current row.
        conn.execute(
            "select pg_advisory_xact_lock(hashtext(%s))", [f"condvest-wm:{self.schema}:{name}"]
        )
        row = conn.execute(
            sql.SQL("select value from {} where name = %s and is_current for update").format(
                self._t("watermarks")
            ),
            [name],
        ).fetchone()
        current: date | None = row[0] if row else None
        if current is not None and day <= current:
            return current
        conn.execute(
            sql.SQL("update {} set is_current = false where name = %s and is_current").format(
                self._t("watermarks")
            ),
            [name],
        )
        conn.execute(
            sql.SQL(
                "insert into {} (name, value, run_id, is_current) values (%s, %s, %s, true)"
            ).format(self._t("watermarks")),
            [name, day, run_id],
        )
        return day

    def advance_watermark(self, day: date, *, run_id: str, name: str = DAILY_WATERMARK) -> date:
        """Move the watermark to ``day`` if later (monotonic); returns the watermark after."""
        with self._tx(f"advancing watermark {name} to {day.isoformat()}") as conn:
            return self._advance(conn, name, day, run_id)

    def watermark(self, name: str = DAILY_WATERMARK) -> date | None:
        with self._tx(f"reading watermark {name}") as conn:
            row = conn.execute(
                sql.SQL("select value from {} where name = %s and is_current").format(
                    self._t("watermarks")
                ),
                [name],
            ).fetchone()
        return row[0] if row else None

    def watermark_history(self, name: str = DAILY_WATERMARK) -> list[tuple[date, bool]]:
        """(value, is_current) of every advance, oldest first."""
        with self._tx(f"reading watermark {name}") as conn:
            rows = conn.execute(
                sql.SQL("select value, is_current from {} where name = %s order by id").format(
                    self._t("watermarks")
                ),
                [name],
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- metadata ----------------------------------------------------------------------------
    def upsert_metadata(self, meta: pa.Table) -> int:
        """Upsert symbol metadata (``bronze/raw_meta`` columns; ``sic_description`` is accepted
        for ``industry``). Returns rows changed."""
        if meta.num_rows == 0:
            return 0
        meta, present = metadata_columns(meta)
        columns = meta.to_pydict()
        create, copy_sql = metadata_stage_sql(present)
        with self._tx(f"upserting {meta.num_rows} metadata row(s)") as conn:
            conn.execute(create)
            with conn.cursor().copy(copy_sql) as copy:
                for values in zip(*(columns[c] for c in present), strict=True):
                    copy.write_row([meta_text(v) for v in values])
            cursor = conn.execute(metadata_upsert_sql(self._t("symbol_metadata"), present))
            return int(cursor.rowcount)

    # -- dividends ---------------------------------------------------------------------------
    def upsert_dividends(self, rows: pa.Table) -> int:
        """Upsert dividends (:data:`~condvest.core.schema.DIVIDEND_SCHEMA` rows) on their id: a
        repeat changes nothing, an older fetch never replaces a newer one. Returns rows changed."""
        if rows.num_rows == 0:
            return 0
        create, copy_sql = dividend_stage_sql(self._t("dividends"))
        with self._tx(f"upserting {rows.num_rows} dividend(s)") as conn:
            conn.execute("set local time zone 'UTC'")
            conn.execute(create)
            with conn.cursor().copy(copy_sql) as copy:
                for values in dividend_rows(rows):
                    copy.write_row(values)
            return int(conn.execute(dividend_upsert_sql(self._t("dividends"))).rowcount)

    # -- job runs ----------------------------------------------------------------------------
    def record_run(self, record: RunRecord) -> None:
        """Insert or update the job-run row of (run_id, stage)."""
        with self._tx(f"recording the {record.stage} run {record.run_id}") as conn:
            conn.execute(
                sql.SQL(
                    "insert into {} (run_id, stage, status, started_at, ended_at, counts, error) "
                    "values (%s, %s, %s, %s, %s, %s, %s) on conflict (run_id, stage) do update "
                    "set status = excluded.status, ended_at = excluded.ended_at, "
                    "counts = excluded.counts, error = excluded.error"
                ).format(self._t("job_runs")),
                [
                    record.run_id,
                    record.stage,
                    record.outcome,
                    record.started_at,
                    record.ended_at,
                    Jsonb(record.counts),
                    record.error,
                ],
            )

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """The latest run of each stage in the job-run table (read-only, like freshness)."""
        with self._tx("reading job_runs", ensure_schema=False) as conn:
            if not read_version(conn, self.schema):
                return {}
            rows = conn.execute(
                sql.SQL(
                    "select distinct on (stage) stage, run_id, status, started_at, ended_at, "
                    "error from {} order by stage, started_at desc"
                ).format(self._t("job_runs"))
            ).fetchall()
        return {
            r[0]: {
                "run_id": r[1],
                "outcome": r[2],
                "started_at": r[3].isoformat() if r[3] else None,
                "ended_at": r[4].isoformat() if r[4] else None,
                "error": r[5],
            }
            for r in rows
        }

    # -- freshness and retention ---------------------------------------------------------------
    def freshness(self) -> DbFreshness:
        """Read-only (status must not write): tables that do not exist yet show as version 0
        and are not created here."""
        latest = latest_version(self.migrations)
        with self._tx("reading freshness", ensure_schema=False) as conn:
            version = read_version(conn, self.schema) or 0
            if version == 0:
                return DbFreshness(0, latest, None, None, 0)
            row = conn.execute(
                sql.SQL("select max(date), count(*) from {}").format(self._t("raw_ohlcv"))
            ).fetchone()
            mark = conn.execute(
                sql.SQL("select value from {} where name = %s and is_current").format(
                    self._t("watermarks")
                ),
                [DAILY_WATERMARK],
            ).fetchone()
        return DbFreshness(version, latest, mark[0] if mark else None, row[0], int(row[1]))

    def delete_older_than(
        self,
        days: int,
        *,
        dry_run: bool = False,
        today: date | None = None,
        batch_rows: int | None = None,
    ) -> int:
        """Delete ``raw_ohlcv`` rows dated before ``today - days`` (the lake keeps them), in
        batches of ``postgres.delete_batch_rows``, each its own transaction so a long retention
        never holds one huge lock. A dry run only counts. Returns the rows (to be) deleted."""
        if days < 1:
            raise ValueError("days must be at least 1")
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=days)
        table = self._t("raw_ohlcv")
        if dry_run:
            with self._tx("counting rows for retention") as conn:
                row = conn.execute(
                    sql.SQL("select count(*) from {} where date < %s").format(table), [cutoff]
                ).fetchone()
            return int(row[0])
        size = batch_rows or self.settings.postgres.delete_batch_rows
        total = 0
        while True:
            with self._tx(f"deleting rows before {cutoff.isoformat()}") as conn:
                cursor = conn.execute(
                    sql.SQL(
                        "delete from {t} where ctid = any(array("
                        "select ctid from {t} where date < %s limit %s))"
                    ).format(t=table),
                    [cutoff, size],
                )
                deleted = int(cursor.rowcount)
            total += deleted
            if deleted:
                log.info("deleted %d raw_ohlcv row(s) before %s", deleted, cutoff.isoformat())
            if deleted < size:
                return total

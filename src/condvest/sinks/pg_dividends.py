"""Writing the PostgreSQL ``dividends`` table (created by schema version 2, in pg_schema): one
row per vendor ``id``, upserted from the rows the fetch lands (docs/postgres.md).

A row is replaced only by a fetch at least as new whose values differ, so a repeat changes 0
rows and an older answer never overwrites a newer one — the lake's rule (newest ``fetched_at``
wins)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from psycopg import sql

from condvest.core.schema import DIVIDEND_SCHEMA

DIVIDEND_COLUMNS = tuple(DIVIDEND_SCHEMA.names)
_VALUES = tuple(c for c in DIVIDEND_COLUMNS if c not in ("id", "fetched_at"))


def _list(template: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL(template).format(sql.Identifier(c)) for c in columns)


def stage_sql(target: sql.Composable) -> tuple[sql.Composed, sql.Composed]:
    """(create the temporary stage, COPY into it); LIKE copies NOT NULL."""
    create = sql.SQL(
        "create temp table condvest_div_stage (like {} including defaults) on commit drop"
    ).format(target)
    copy = sql.SQL("copy condvest_div_stage ({}) from stdin").format(_list("{}", DIVIDEND_COLUMNS))
    return create, copy


def upsert_sql(target: sql.Composable) -> sql.Composed:
    """Stage → ``dividends``; its row count is the rows really changed."""
    return sql.SQL(
        "insert into {table} as t ({cols}) "
        "select distinct on (id) {cols} from condvest_div_stage order by id, fetched_at desc "
        "on conflict (id) do update set {updates} "
        "where excluded.fetched_at >= t.fetched_at and ({old}) is distinct from ({new})"
    ).format(
        table=target,
        cols=_list("{}", DIVIDEND_COLUMNS),
        updates=_list("{0} = excluded.{0}", (*_VALUES, "fetched_at")),
        old=_list("t.{}", _VALUES),
        new=_list("excluded.{}", _VALUES),
    )


def dividend_rows(rows: pa.Table) -> list[tuple[Any, ...]]:
    """``rows`` (:data:`DIVIDEND_SCHEMA`) as COPY tuples in :data:`DIVIDEND_COLUMNS` order."""
    table = rows.select(list(DIVIDEND_COLUMNS)).cast(DIVIDEND_SCHEMA)
    columns = table.to_pydict()
    return list(zip(*(columns[c] for c in DIVIDEND_COLUMNS), strict=True))

"""Statements and COPY payloads of the PostgreSQL sink: Arrow tables in, SQL and bytes out.

Identifiers are composed with :mod:`psycopg.sql` (never string formatting), so a schema or column
name can never become SQL."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from condvest.core.schema import BRONZE_COLUMNS, BRONZE_SCHEMA, META_SCHEMA

COPY_CHUNK_ROWS = 100_000
VALUE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "transactions", "source")
"""Compared to decide whether a row changed; ``fetched_at`` is not (a re-fetch of the same
values is not a change)."""
META_COLUMNS = tuple(META_SCHEMA.names)
_META_CASTS = {
    "active": "boolean",
    "list_date": "date",
    "delisted_utc": "timestamptz",
    "market_cap": "double precision",
    "updated_at": "timestamptz",
}


def _list(template: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL(template).format(sql.Identifier(c)) for c in columns)


# -- OHLCV ----------------------------------------------------------------------------------------
def canonical_rows(rows: pa.Table) -> pa.Table:
    """The bronze columns in order, ready for CSV: NOT NULL is PostgreSQL's to enforce, and
    ``fetched_at`` becomes naive UTC — Arrow formats a zoned timestamp ~6x slower than a naive
    one, which dominated the whole upsert (the transaction's time zone is UTC)."""
    missing = [c for c in BRONZE_COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"rows lack bronze column(s) {', '.join(missing)}")
    table = rows.select(list(BRONZE_COLUMNS))
    fetched = table.column("fetched_at")
    if pa.types.is_timestamp(fetched.type) and fetched.type.tz is None:
        raise ValueError("fetched_at must be a UTC timestamp")
    loose = pa.schema(
        [
            pa.field(f.name, pa.timestamp("ms") if f.name == "fetched_at" else f.type)
            for f in BRONZE_SCHEMA
        ]
    )
    return table.cast(loose)


def csv_chunks(table: pa.Table) -> Iterator[bytes]:
    """COPY payload: CSV written by Arrow's C++ writer (no Python loop per row). Doubles are
    written in their shortest round-trip form, so 0.0345 arrives as exactly 0.0345."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in table.to_batches(max_chunksize=COPY_CHUNK_ROWS):
        out = io.BytesIO()
        pacsv.write_csv(pa.Table.from_batches([batch]), out, options)
        yield out.getvalue()


def ohlcv_stage_sql(target: sql.Composable) -> tuple[sql.Composed, sql.Composed]:
    """(create the temporary stage table, COPY into it). LIKE copies NOT NULL, so a bad row
    fails at COPY, before anything is upserted."""
    create = sql.SQL(
        "create temp table if not exists condvest_stage (like {} including defaults) on commit drop"
    ).format(target)
    copy = sql.SQL("copy condvest_stage ({}) from stdin (format csv)").format(
        _list("{}", BRONZE_COLUMNS)
    )
    return create, copy


def ohlcv_upsert_sql(target: sql.Composable) -> sql.Composed:
    """Stage → ``raw_ohlcv``; its row count is the rows really changed.

    DISTINCT ON: a batch may repeat a (symbol, date) — keep the newest fetch (ON CONFLICT cannot
    touch one row twice). The anti-join drops unchanged rows in bulk first: ON CONFLICT's per-row
    path costs ~15 µs a row here, so a repeat of 100k rows went from ~2 s to ~0.3 s; ON CONFLICT
    still decides for rows a concurrent writer inserted meanwhile. The ORDER BY gives every
    writer the same lock order, so overlapping batches do not deadlock."""
    return sql.SQL(
        "insert into {table} as t ({cols}) "
        "select {picked} from (select distinct on (symbol, date) {cols} "
        "from condvest_stage order by symbol, date, fetched_at desc) s "
        "left join {table} c on c.symbol = s.symbol and c.date = s.date "
        "where c.symbol is null or ({cur}) is distinct from ({staged}) "
        "order by s.symbol, s.date "
        "on conflict (symbol, date) do update set {updates} "
        "where ({old}) is distinct from ({new})"
    ).format(
        table=target,
        cols=_list("{}", BRONZE_COLUMNS),
        picked=_list("s.{}", BRONZE_COLUMNS),
        cur=_list("c.{}", VALUE_COLUMNS),
        staged=_list("s.{}", VALUE_COLUMNS),
        updates=_list("{0} = excluded.{0}", (*VALUE_COLUMNS, "fetched_at")),
        old=_list("t.{}", VALUE_COLUMNS),
        new=_list("excluded.{}", VALUE_COLUMNS),
    )


# -- metadata -------------------------------------------------------------------------------------
def metadata_columns(meta: pa.Table) -> tuple[pa.Table, list[str]]:
    """The metadata table with ``industry`` (from Polygon's ``sic_description`` when absent) and
    the known columns it has."""
    if "industry" not in meta.column_names and "sic_description" in meta.column_names:
        meta = meta.append_column("industry", meta.column("sic_description"))
    present = [c for c in META_COLUMNS if c in meta.column_names]
    if "symbol" not in present:
        raise ValueError("metadata rows lack a symbol column")
    return meta.select(present), present


def metadata_stage_sql(present: Sequence[str]) -> tuple[sql.Composed, sql.Composed]:
    """Stage columns are text; the upsert casts them (inputs vary: strings, dates, booleans)."""
    create = sql.SQL("create temp table condvest_meta_stage ({}) on commit drop").format(
        _list("{} text", present)
    )
    copy = sql.SQL("copy condvest_meta_stage ({}) from stdin").format(_list("{}", present))
    return create, copy


def metadata_upsert_sql(target: sql.Composable, present: Sequence[str]) -> sql.Composed:
    casts = sql.SQL(", ").join(
        sql.SQL("cast(nullif({0}, '') as {1}) as {0}").format(
            sql.Identifier(c), sql.SQL(_META_CASTS[c])
        )
        if c in _META_CASTS
        else sql.Identifier(c)
        for c in present
    )
    changing = [c for c in present if c not in ("symbol", "updated_at")]
    updates: list[sql.Composable] = [
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in changing
    ]
    updates.append(
        sql.SQL("updated_at = excluded.updated_at")
        if "updated_at" in present
        else sql.SQL("updated_at = now()")
    )
    where = (
        sql.SQL(" where ({}) is distinct from ({})").format(
            _list("t.{}", changing), _list("excluded.{}", changing)
        )
        if changing
        else sql.SQL("")
    )
    return sql.SQL(
        "insert into {table} as t ({cols}) "
        "select distinct on (symbol) {casts} from condvest_meta_stage "
        "order by symbol on conflict (symbol) do update set {updates}{where}"
    ).format(
        table=target,
        cols=_list("{}", present),
        casts=casts,
        updates=sql.SQL(", ").join(updates),
        where=where,
    )


def meta_text(value: Any) -> str | None:
    """A metadata value as COPY text; the upsert casts it to the column's type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)

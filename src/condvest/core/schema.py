"""Canonical schemas (docs/design.md §4) and the normaliser for the original system's files."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from condvest.errors import CorruptFileError

NEW_YORK = "America/New_York"

BRONZE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("transactions", pa.int64()),
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)
BRONZE_COLUMNS = tuple(BRONZE_SCHEMA.names)
BAR_INPUT_COLUMNS = (
    "symbol",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "transactions",
)
"""The bronze columns bars are computed from (resample's input; the bronze tail index keeps
them too)."""
DAILY_ROWS_SCHEMA = pa.schema(
    [BRONZE_SCHEMA.field(c).with_nullable(True) for c in BAR_INPUT_COLUMNS]
    + [pa.field("fetched", pa.int64())]
)
"""Those columns as resample holds them: all nullable, ``fetched_at`` as ``fetched`` (int64 ms,
what de-duplication compares)."""

SILVER_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("start_date", pa.date32(), nullable=False),
        pa.field("end_date", pa.date32(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("vwap", pa.float64()),
        pa.field("transactions", pa.int64()),
        pa.field("sessions", pa.int32(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),
    ]
)

# Symbol metadata snapshots (bronze/raw_meta) and the PostgreSQL symbol_metadata columns.
META_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("market", pa.string()),
        pa.field("locale", pa.string()),
        pa.field("type", pa.string()),
        pa.field("active", pa.bool_()),
        pa.field("primary_exchange", pa.string()),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("cik", pa.string()),
        pa.field("composite_figi", pa.string()),
        pa.field("list_date", pa.date32()),
        pa.field("delisted_utc", pa.timestamp("ms", tz="UTC")),
        pa.field("market_cap", pa.float64()),
        pa.field("sic_code", pa.string()),
        pa.field("industry", pa.string()),
        pa.field("description", pa.string()),
        pa.field("updated_at", pa.timestamp("ms", tz="UTC")),
    ]
)

# Cash dividends (bronze/corporate_actions/dividends/date=<ex-date>.parquet): the vendor's fields,
# one row per vendor ``id`` (docs/lake-layout.md, docs/corporate-actions.md).
DIVIDEND_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("ex_dividend_date", pa.date32(), nullable=False),
        pa.field("cash_amount", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("dividend_type", pa.string(), nullable=False),
        pa.field("frequency", pa.int32()),
        pa.field("declaration_date", pa.date32()),
        pa.field("record_date", pa.date32()),
        pa.field("pay_date", pa.date32()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

# Splits (bronze/corporate_actions/splits/date=<execution date>.parquet): the full set seen for
# that date (docs/lake-layout.md, docs/corporate-actions.md).
SPLITS_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("execution_date", pa.date32(), nullable=False),
        pa.field("split_from", pa.float64(), nullable=False),
        pa.field("split_to", pa.float64(), nullable=False),
        pa.field("ratio", pa.float64(), nullable=False),
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

_PRICE_COLUMNS = ("open", "high", "low", "close")
_LEGACY_DROP = ("interval", "__index_level_0__", "timestamp", "timestamp_1")
LEGACY_SOURCE = "legacy"


def _to_ny_date(column: pa.ChunkedArray | pa.Array, where: str) -> pa.Array | pa.ChunkedArray:
    """A date, string or timezone-aware timestamp column → the America/New_York trading date.

    (Naive timestamps are handled by the caller: their wall-clock day is the date.)
    """
    typ = column.type
    if pa.types.is_date32(typ):
        return column
    if pa.types.is_date64(typ):
        return pc.cast(column, pa.date32())
    if pa.types.is_timestamp(typ):
        if typ.tz is None:
            column = pc.assume_timezone(column, "UTC")
        local = pc.local_timestamp(pc.cast(column, pa.timestamp(typ.unit, tz=NEW_YORK)))
        ny_day = pc.cast(pc.floor_temporal(local, unit="day"), pa.date32())
        # A date stored as UTC midnight (pandas/Spark "date as timestamp") is 19:00/20:00 the
        # evening before in New York, when no daily bar starts: its UTC day is the session.
        utc_wall = pc.cast(column, pa.timestamp(typ.unit))
        utc_midnight = pc.equal(pc.floor_temporal(utc_wall, unit="day"), utc_wall)
        return pc.if_else(utc_midnight, pc.cast(utc_wall, pa.date32()), ny_day)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pc.cast(
            pc.strptime(pc.utf8_slice_codeunits(column, 0, 10), "%Y-%m-%d", "s"), pa.date32()
        )
    raise CorruptFileError(f"{where}: date column has unsupported type {typ}")


def _to_float64(column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Numbers → float64. Decimals go through their exact text: Arrow's direct decimal→float
    cast is off by an ulp for many values (123.45 would not equal the float 123.45)."""
    if pa.types.is_decimal(column.type):
        return pc.cast(pc.cast(column, pa.string()), pa.float64())
    return pc.cast(column, pa.float64())


def normalise_bronze(
    table: pa.Table, *, where: str = "file", source: str | None = None
) -> pa.Table:
    """Return ``table`` in the canonical bronze schema.

    Accepts the original system's shapes: a naive ``timestamp`` (or ``timestamp_1``) instead of
    ``date``, an ``interval`` column, decimal/integer prices, a stray ``__index_level_0__``,
    missing ``vwap``/``transactions``/``fetched_at``/``source``. Raises
    :class:`CorruptFileError` naming ``where`` when required columns are missing or a column
    cannot be converted.
    """
    try:
        return _normalise(table, where, source)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise CorruptFileError(f"{where}: cannot normalise ({exc})") from None


def _normalise(table: pa.Table, where: str, source: str | None) -> pa.Table:
    names = set(table.column_names)
    if "date" in names:
        raw_date = table.column("date")
    else:
        ts_name = next((n for n in ("timestamp", "timestamp_1") if n in names), None)
        if ts_name is None:
            raise CorruptFileError(f"{where}: no date or timestamp column (has {sorted(names)})")
        raw_date = table.column(ts_name)
    if pa.types.is_timestamp(raw_date.type) and raw_date.type.tz is None:
        # Naive values: the original stored the session date at midnight (local meaning).
        day = pc.cast(pc.floor_temporal(raw_date, unit="day"), pa.date32())
    else:
        day = _to_ny_date(raw_date, where)
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in names]
    if missing:
        raise CorruptFileError(f"{where}: missing column(s) {', '.join(missing)}")
    n = table.num_rows
    if "symbol" in names:
        symbol = pc.cast(table.column("symbol"), pa.string())
    else:
        raise CorruptFileError(f"{where}: no symbol column")
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"symbol": symbol, "date": day}
    for name in (*_PRICE_COLUMNS, "volume"):
        columns[name] = _to_float64(table.column(name))
    columns["vwap"] = (
        _to_float64(table.column("vwap")) if "vwap" in names else pa.nulls(n, pa.float64())
    )
    if "transactions" in names:
        columns["transactions"] = pc.cast(table.column("transactions"), pa.int64())
    else:
        columns["transactions"] = pa.nulls(n, pa.int64())
    if "fetched_at" in names:
        fa = table.column("fetched_at")
        if pa.types.is_timestamp(fa.type) and fa.type.tz is None:
            fa = pc.assume_timezone(fa, "UTC")
        columns["fetched_at"] = pc.cast(fa, pa.timestamp("ms", tz="UTC"))
    else:
        # Legacy rows carry no fetch time: the epoch makes any real fetch win a de-duplication.
        columns["fetched_at"] = pa.array([0] * n, pa.timestamp("ms", tz="UTC"))
    if "source" in names:
        columns["source"] = pc.fill_null(
            pc.cast(table.column("source"), pa.string()), source or LEGACY_SOURCE
        )
    else:
        columns["source"] = pa.array([source or LEGACY_SOURCE] * n, pa.string())
    out = pa.table(columns)
    if out.num_rows and (
        out.column("symbol").null_count
        or out.column("date").null_count
        or any(out.column(c).null_count for c in (*_PRICE_COLUMNS, "volume"))
    ):
        raise CorruptFileError(f"{where}: null symbol, date, price or volume")
    return out.cast(BRONZE_SCHEMA)


def is_canonical(schema: pa.Schema) -> bool:
    return bool(schema.remove_metadata().equals(BRONZE_SCHEMA.remove_metadata()))


def empty_bronze() -> pa.Table:
    return BRONZE_SCHEMA.empty_table()


def ms_utc(moment: datetime) -> pa.Scalar:  # pragma: no cover - convenience
    return pa.scalar(moment, pa.timestamp("ms", tz="UTC"))


def date_range_of(table: pa.Table) -> tuple[date, date] | None:
    if table.num_rows == 0:
        return None
    mm = pc.min_max(table.column("date"))
    return mm["min"].as_py(), mm["max"].as_py()

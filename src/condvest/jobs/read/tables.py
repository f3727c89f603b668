"""The read side (``Lake.daily``, ``Lake.bars``, ...): the lake as Arrow tables.

``daily`` is each symbol's ``data.parquet`` plus every landed ``date=`` file beside it, merged by
:func:`condvest.core.merge.merge_bronze` — the function consolidate merges with — so a read
equals the ``data.parquet`` that ``consolidate --mode full`` would write now (newest
``fetched_at`` wins, ties to the landed file). A date file holds the session its name says
(fetch writes it so), so date files outside ``[start, end]`` are not read; canonical files are
read with a parquet filter on ``date`` (legacy shapes are normalised first, then filtered).
Quarantine lives elsewhere (``bronze/quarantine``) and is never listed. A file that cannot be
read is an error naming it, never a silently partial result; a date file that vanished while
being read (vacuumed after its consolidation) makes that symbol be listed and read again."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.merge import merge_bronze
from condvest.core.schema import (
    BRONZE_COLUMNS,
    BRONZE_SCHEMA,
    META_SCHEMA,
    SILVER_SCHEMA,
    SPLITS_SCHEMA,
)
from condvest.errors import CorruptFileError, NotFoundError, StorageError, UsageError
from condvest.jobs.base import JobContext
from condvest.jobs.bronze import SymbolFiles, between, date_filter, list_bronze, read_file
from condvest.storage.base import Storage

log = logging.getLogger("condvest.read")
_ATTEMPTS = 3
"""Listings of one symbol tried when its files change under the read (consolidate + vacuum)."""


def check_range(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and start > end:
        raise UsageError(
            f"--start {start.isoformat()} is after --end {end.isoformat()}",
            hint="give start <= end",
        )


def check_columns(columns: Sequence[str] | None, known: Sequence[str]) -> list[str] | None:
    """The requested columns, in the order asked (None: all); unknown or repeated → UsageError."""
    if columns is None:
        return None
    wanted = [c.strip() for c in columns if c.strip()]
    if not wanted:
        raise UsageError("--columns is empty", hint=f"pick from {', '.join(known)}")
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise UsageError(
            f"unknown column(s) {', '.join(unknown)}", hint=f"the columns are {', '.join(known)}"
        )
    return list(dict.fromkeys(wanted))


def _workers(storage: Storage) -> int:
    # Local reads are CPU-bound (parquet decoding); S3 reads wait on the network.
    return 4 if storage.local_path("") is not None else 32


def read_parquet_file(
    storage: Storage, key: str, filters: list[Any] | None = None
) -> tuple[pa.Table, bool]:
    """One parquet object that is not bronze (silver, metadata, corporate actions; bronze goes
    through :func:`condvest.jobs.bronze.read_file`), filtered, and whether the filter was
    applied. Absent → NotFoundError, unreadable → CorruptFileError naming it."""
    path = storage.local_path(key)
    where = storage.url(key)
    try:
        data = None if path is not None else storage.read_bytes(key)
        source: Any = str(path) if data is None else pa.BufferReader(data)
        if filters is not None:
            table = pq.read_table(source, filters=filters, partitioning=None, use_threads=False)
        else:
            # ParquetFile: no dataset discovery, a third of read_table's cost on small files
            table = pq.ParquetFile(source).read(use_threads=False)
    except FileNotFoundError:
        raise NotFoundError(f"{where} disappeared while it was being read") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{where} is not a readable parquet file: {exc}") from None
    return table, filters is not None


def _symbol_rows(
    storage: Storage, files: SymbolFiles, start: date | None, end: date | None
) -> pa.Table:
    """One symbol directory's merged rows in ``[start, end]``: consolidate's merge."""
    landed = [obj.key for day, obj in files.dates.items() if _within(day, start, end)]
    history = (
        read_file(storage, files.data.key, start, end)
        if files.data is not None
        else BRONZE_SCHEMA.empty_table()
    )
    # date files were chosen by their session: read whole (one row), then bounded as a guard
    tables = [read_file(storage, key, None, None) for key in sorted(landed)]
    incoming = pa.concat_tables(tables) if tables else BRONZE_SCHEMA.empty_table()
    merged, _ = merge_bronze(history, between(incoming, "date", start, end))
    return merged


def _within(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)


def _read_symbol(
    storage: Storage,
    directory: str,
    files: SymbolFiles,
    start: date | None,
    end: date | None,
) -> pa.Table:
    for attempt in range(_ATTEMPTS):
        try:
            return _symbol_rows(storage, files, start, end)
        except NotFoundError:
            if attempt == _ATTEMPTS - 1:
                raise
            log.info("read: %s changed while it was read; listing it again", directory)
            files = list_bronze(storage, [directory]).symbols.get(directory, SymbolFiles(directory))
    raise StorageError(f"{directory}: its files kept changing while they were read")


def daily_listing(storage: Storage, symbols: Sequence[str] | None) -> dict[str, SymbolFiles]:
    """The bronze files of ``symbols`` (all when None), by symbol directory; only the
    requested symbols' prefixes are listed."""
    if symbols is None:
        return list_bronze(storage).symbols
    workers = min(len(symbols), _workers(storage)) or 1
    return list_bronze(storage, list(symbols), workers=workers).symbols


def read_daily(
    ctx: JobContext,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
    columns: Sequence[str] | None,
) -> pa.Table:
    """Merged daily rows, one per (symbol, date), sorted by (symbol, date)."""
    check_range(start, end)
    wanted = check_columns(columns, BRONZE_COLUMNS)
    storage = ctx.storage
    listing = daily_listing(storage, symbols)
    dirs = sorted(listing)
    if not dirs:
        table = BRONZE_SCHEMA.empty_table()
    else:
        with ThreadPoolExecutor(min(len(dirs), _workers(storage))) as pool:
            parts = list(pool.map(lambda d: _read_symbol(storage, d, listing[d], start, end), dirs))
        table = pa.concat_tables(parts)
        # A directory is named after its symbol; a file holding another symbol's rows (never
        # written by condvest) still comes out in (symbol, date) order.
        names = [p.column("symbol")[0].as_py() for p in parts if p.num_rows]
        if names != sorted(names) or any(p.num_rows and not _one_symbol(p) for p in parts):
            table = table.sort_by([("symbol", "ascending"), ("date", "ascending")])
    return table.select(wanted) if wanted is not None else table


def _one_symbol(table: pa.Table) -> bool:
    column = table.column("symbol")
    return bool(column[0].as_py() == column[-1].as_py()) and len(pc.unique(column)) == 1


# -- bars ------------------------------------------------------------------------------------
def built_intervals(storage: Storage) -> list[int]:
    """Intervals with a checkpoint or a month file in silver (each built by resample)."""
    found: set[int] = set()
    for obj in storage.list_objects(layout.METADATA + "/"):
        name = obj.key.rsplit("/", 1)[-1]
        if name.startswith("silver_") and name.endswith("d_checkpoint.json"):
            text = name[len("silver_") : -len("d_checkpoint.json")]
            if text.isdigit():
                found.add(int(text))
    for prefix in storage.list_dirs(layout.SILVER + "/"):
        name = prefix.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("silver_") and name.endswith("d") and name[7:-1].isdigit():
            found.add(int(name[7:-1]))
    return sorted(found)


def _month(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_files(storage: Storage, interval: int, start: date | None, end: date | None) -> list[str]:
    """The interval's month files that can hold a bar starting in ``[start, end]``."""
    keys = []
    lo = _month(start) if start is not None else None
    hi = _month(end) if end is not None else None
    for obj in storage.list_objects(layout.silver_prefix(interval)):
        if layout.is_temp_key(obj.key):
            continue
        parsed = layout.parse_silver_file(obj.key)
        if parsed is None or parsed[0] != interval:
            continue
        month = parsed[1] * 12 + parsed[2] - 1
        if (lo is None or month >= lo) and (hi is None or month <= hi):
            keys.append(obj.key)
    return sorted(keys)


def read_silver(
    storage: Storage,
    interval: int,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
) -> pa.Table:
    """Silver bars of ``interval`` starting in ``[start, end]`` (of ``symbols``), sorted by
    (symbol, start_date)."""
    filters = date_filter("start_date", start, end) or []
    if symbols is not None:
        filters.append(("symbol", "in", list(symbols)))
    keys = month_files(storage, interval, start, end)
    if not keys:
        return SILVER_SCHEMA.empty_table()

    def read(key: str) -> pa.Table:
        table, _ = read_parquet_file(storage, key, filters or None)
        try:
            return (
                table.replace_schema_metadata(None).select(SILVER_SCHEMA.names).cast(SILVER_SCHEMA)
            )
        except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise CorruptFileError(
                f"{storage.url(key)} is not a silver file ({exc})",
                hint=f"rebuild it with condvest resample --intervals {interval} --full",
            ) from None

    with ThreadPoolExecutor(min(len(keys), _workers(storage))) as pool:
        tables = list(pool.map(read, keys))
    table = pa.concat_tables(tables)
    return table.sort_by([("symbol", "ascending"), ("start_date", "ascending")])


# -- the rest --------------------------------------------------------------------------------
def read_metadata(ctx: JobContext) -> pa.Table:
    """Per symbol, its row in the newest ``bronze/raw_meta`` snapshot that holds it."""
    storage = ctx.storage
    keys = sorted(
        o.key
        for o in storage.list_objects(layout.BRONZE_META + "/")
        if o.key.endswith(".parquet") and not layout.is_temp_key(o.key)
    )
    if not keys:
        return META_SCHEMA.empty_table()
    tables = []
    for rank, key in enumerate(keys):  # keys sort by snapshot date, then run id
        table, _ = read_parquet_file(storage, key)
        table = _conform(table.replace_schema_metadata(None), META_SCHEMA, storage.url(key))
        tables.append(table.append_column("_rank", pa.array([rank] * table.num_rows, pa.int32())))
    both = pa.concat_tables(tables)
    both = both.sort_by([("symbol", "ascending"), ("_rank", "descending")])
    symbol = both.column("symbol").to_pylist()
    keep = [i == 0 or symbol[i] != symbol[i - 1] for i in range(len(symbol))]
    return both.filter(pa.array(keep, pa.bool_())).drop_columns(["_rank"])


def _conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """``table`` with ``schema``'s columns (missing ones null), cast to it."""
    try:
        columns = [
            table.column(f.name).cast(f.type)
            if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(columns, schema=schema.with_metadata(None))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise CorruptFileError(f"{where}: unexpected columns ({exc})") from None


def read_splits(ctx: JobContext) -> pa.Table:
    """Every split seen (``bronze/corporate_actions/splits``: one file per execution date,
    the full set seen for it), sorted by (execution_date, symbol)."""
    tables = _action_tables(ctx.storage, "splits", SPLITS_SCHEMA)
    if not tables:
        return SPLITS_SCHEMA.with_metadata(None).empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([("execution_date", "ascending"), ("symbol", "ascending")])


def read_dividends(ctx: JobContext) -> pa.Table:
    """Every dividend landed (``bronze/corporate_actions/dividends``: one file per ex-date), one
    row per vendor ``id`` (the newest ``fetched_at``), sorted by (symbol, ex_dividend_date, id)."""
    from condvest.core.actions import latest_dividends
    from condvest.core.schema import DIVIDEND_SCHEMA

    return latest_dividends(_action_tables(ctx.storage, "dividends", DIVIDEND_SCHEMA))


def _action_tables(storage: Storage, kind: str, schema: pa.Schema) -> list[pa.Table]:
    """Every landed ``bronze/corporate_actions/<kind>/`` file, conformed to ``schema``."""
    keys = sorted(
        o.key
        for o in storage.list_objects(f"{layout.BRONZE_ACTIONS}/{kind}/")
        if o.key.endswith(".parquet") and not layout.is_temp_key(o.key)
    )
    return [_conform(read_parquet_file(storage, key)[0], schema, storage.url(key)) for key in keys]


def filter_actions(
    table: pa.Table,
    day_column: str,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
) -> pa.Table:
    """Rows of ``symbols`` (all when None) whose ``day_column`` is in ``[start, end]``."""
    check_range(start, end)
    if symbols is not None:
        table = table.filter(pc.is_in(table.column("symbol"), pa.array(list(symbols), pa.string())))
    return between(table, day_column, start, end)


def sessions_table(ctx: JobContext, start: date | None, end: date | None) -> list[date]:
    check_range(start, end)
    cal = ctx.calendar
    first = start or cal.first_session
    last = end or ctx.latest_completed_session()
    return list(cal.sessions_between(first, last)) if first <= last else []


def read_symbols(ctx: JobContext) -> list[str]:
    """Every symbol directory in bronze, sorted."""
    return sorted(daily_listing(ctx.storage, None))

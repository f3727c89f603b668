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
from datetime import date, timedelta
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
from condvest.jobs.bronze import (
    SymbolFiles,
    between,
    date_filter,
    index,
    list_bronze,
    may_match,
    read_file,
)
from condvest.storage.base import ObjectInfo, Storage

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
        source: Any = str(path) if path is not None else pa.BufferReader(storage.read_bytes(key))
        # One ParquetFile, opened once: no dataset discovery (read_table(filters=) costs ~3x
        # on these small files); the row groups whose statistics miss the filter are skipped,
        # the rest filtered in memory.
        file = pq.ParquetFile(source)
        use_filter = filters is not None
        if use_filter and filters:
            groups = [i for i in range(file.num_row_groups) if may_match(file, i, filters)]
            table = file.read_row_groups(groups, use_threads=False)
            table = table.filter(pq.filters_to_expression(filters))
        else:
            table = file.read(use_threads=False)
    except FileNotFoundError:
        raise NotFoundError(f"{where} disappeared while it was being read") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{where} is not a readable parquet file: {exc}") from None
    return table, use_filter


def _files_of(
    files: SymbolFiles, start: date | None, end: date | None
) -> tuple[str | None, list[str]]:
    """A symbol directory's data file and its landed date files dated in ``[start, end]``."""
    landed = sorted(obj.key for day, obj in files.dates.items() if _within(day, start, end))
    return (files.data.key if files.data is not None else None), landed


def _merged(
    history: pa.Table | None, landed: list[pa.Table], start: date | None, end: date | None
) -> pa.Table:
    """Consolidate's merge of a symbol's history and its landed rows."""
    incoming = pa.concat_tables(landed) if landed else BRONZE_SCHEMA.empty_table()
    old = history if history is not None else BRONZE_SCHEMA.empty_table()
    merged, _ = merge_bronze(old, between(incoming, "date", start, end))
    return merged


def _symbol_rows(
    storage: Storage, files: SymbolFiles, start: date | None, end: date | None
) -> pa.Table:
    """One symbol directory's merged rows in ``[start, end]``: consolidate's merge."""
    data_key, landed = _files_of(files, start, end)
    history = read_file(storage, data_key, start, end) if data_key is not None else None
    # date files were chosen by their session: read whole (one row), then bounded as a guard
    return _merged(history, [read_file(storage, k, None, None) for k in landed], start, end)


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
            files = _listed_again(storage, directory)
    raise StorageError(f"{directory}: its files kept changing while they were read")


Work = list[tuple[str, str, bool]]
"""(directory, key, is its data file) per file of a read, by directory."""


def _work(
    listing: dict[str, SymbolFiles], dirs: list[str], start: date | None, end: date | None
) -> Work:
    files = {d: _files_of(listing[d], start, end) for d in dirs}
    return [(d, k, k == data) for d, (data, landed) in files.items() for k in [data, *landed] if k]


def _read_one(storage: Storage, key: str, start: date | None, end: date | None) -> pa.Table | None:
    """One file's rows in ``[start, end]``; None when it vanished (its directory is read again)."""
    try:
        return read_file(storage, key, start, end)
    except NotFoundError:
        return None


def _assemble(
    storage: Storage,
    dirs: list[str],
    work: Work,
    got: list[pa.Table | None],
    start: date | None,
    end: date | None,
) -> list[pa.Table]:
    """Per directory, the merge of its files' rows; a directory with a vanished file is listed
    and read again."""
    mine: dict[str, list[tuple[bool, pa.Table | None]]] = {d: [] for d in dirs}
    for (owner, _, is_data), table in zip(work, got, strict=True):
        mine[owner].append((is_data, table))
    parts = []
    for d in dirs:
        if any(t is None for _, t in mine[d]):
            parts.append(_read_symbol(storage, d, _listed_again(storage, d), start, end))
            continue
        history = next((t for is_data, t in mine[d] if is_data), None)
        landed = [t for is_data, t in mine[d] if not is_data and t is not None]
        parts.append(_merged(history, landed, start, end))
    return parts


_BATCH_FILES = 5_000
"""Files per bulk scan: the scan's Arrow result and the merged parts of one batch are alive
together, so a whole-lake read stays near the size of its result."""


def _batches(listing: dict[str, SymbolFiles], dirs: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    files = 0
    for d in dirs:
        if files >= _BATCH_FILES:
            out.append([])
            files = 0
        out[-1].append(d)
        files += len(listing[d].dates) + 1
    return out


def _read_batch(
    storage: Storage,
    listing: dict[str, SymbolFiles],
    dirs: list[str],
    start: date | None,
    end: date | None,
) -> list[pa.Table]:
    """The merged rows of ``dirs``. Local disk: the canonical files in one DuckDB scan
    (jobs/read/scan.py), any other file (legacy shapes) on its own, every file on its own when
    the scan fails. S3 (a few directories): their files in parallel — one symbol's history is
    ~20 files, which in turn would wait on each other."""
    from condvest.jobs.read.scan import scan_files

    work = _work(listing, dirs, start, end)
    got: list[pa.Table | None] | None
    if storage.local_path("") is not None:
        stamps = {o.key: (o.size, o.mtime) for d in dirs for o in listing[d].unordered()}
        paths = [str(storage.local_path(k)) for _, k, _ in work]
        got = scan_files(paths, [stamps[k] for _, k, _ in work], start, end)
        if got is None:
            return [_read_symbol(storage, d, listing[d], start, end) for d in dirs]
        got = [
            _read_one(storage, k, start, end) if t is None else t
            for (_, k, _), t in zip(work, got, strict=True)
        ]
    else:
        with ThreadPoolExecutor(max(1, min(len(work), _workers(storage)))) as pool:
            got = list(pool.map(lambda w: _read_one(storage, w[1], start, end), work))
    return _assemble(storage, dirs, work, got, start, end)


_PROBE_DAYS = 7
"""Local reads of every symbol over at most this many days look up each directory's few
candidate files instead of listing all ~113,000 bronze objects of a seed-scale lake."""


def daily_listing(
    storage: Storage,
    symbols: Sequence[str] | None,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, SymbolFiles]:
    """The bronze files of ``symbols`` (all when None) that a read of ``[start, end]`` can
    need, by symbol directory (:func:`condvest.jobs.bronze.list_bronze`); only the requested
    symbols' prefixes are listed."""
    if symbols is None:
        if (
            storage.local_path("") is not None
            and start
            and end
            and (end - start).days < _PROBE_DAYS
        ):
            return _probed(storage, start, end)
        index = list_bronze(storage)
    else:
        index = list_bronze(storage, list(symbols), workers=min(len(symbols), _workers(storage)))
    return index.with_files()


def _probed(storage: Storage, start: date, end: date) -> dict[str, SymbolFiles]:
    """Per symbol directory, its data file and its date files of ``[start, end]`` that exist
    (one lookup each, local disk only: a file lookup costs less than listing one entry)."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    found: list[ObjectInfo] = []
    for directory in storage.list_dirs(layout.BRONZE_OHLCV + "/"):
        symbol = layout.parse_symbol_dir(f"{layout.BRONZE_OHLCV}/{directory}/")
        if symbol is None:
            continue
        keys = [layout.data_file(symbol), *(layout.date_file(symbol, d) for d in days)]
        found += [o for o in (storage.stat(k) for k in keys) if o is not None]
    return index(found).with_files()


def _listed_again(storage: Storage, directory: str) -> SymbolFiles:
    """A directory whose files changed while they were read, listed again."""
    return list_bronze(storage, [directory]).symbols.get(directory, SymbolFiles(directory))


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
    listing = daily_listing(storage, symbols, start, end)
    dirs = sorted(listing)
    workers = _workers(storage)
    if not dirs:
        table = BRONZE_SCHEMA.empty_table()
    else:
        if storage.local_path("") is not None:
            batches = _batches(listing, dirs)
            parts = [p for b in batches for p in _read_batch(storage, listing, b, start, end)]
        elif len(dirs) < 2 * workers:
            parts = _read_batch(storage, listing, dirs, start, end)
        else:
            with ThreadPoolExecutor(workers) as pool:
                read = pool.map(lambda d: _read_symbol(storage, d, listing[d], start, end), dirs)
                parts = list(read)
        table = pa.concat_tables(parts)
        # A directory is named after its symbol; a file holding another symbol's rows (never
        # written by condvest) still comes out in (symbol, date) order.
        if not _in_order(table):
            table = table.sort_by([("symbol", "ascending"), ("date", "ascending")])
    return table.select(wanted) if wanted is not None else table


def _in_order(table: pa.Table) -> bool:
    """Rows sorted by (symbol, date): one vectorised pass (a per-part check costs more)."""
    n = table.num_rows
    if n < 2:
        return True
    symbol, day = table.column("symbol"), table.column("date")
    s0, s1, d0, d1 = symbol.slice(0, n - 1), symbol.slice(1), day.slice(0, n - 1), day.slice(1)
    back = pc.or_(pc.less(s1, s0), pc.and_(pc.equal(s1, s0), pc.less(d1, d0)))
    return not pc.any(back).as_py()


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

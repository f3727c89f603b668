"""Resample's input: every symbol's ``data.parquet`` plus the landed ``date=`` rows it does not
hold yet, de-duplicated on (symbol, date) with the newest ``fetched_at`` winning.

Files are read with pyarrow straight into Arrow (local paths, or bytes through the Storage on S3)
— never through a hive-partition-detecting reader: the symbol comes from the file's own column,
so tickers such as ``INF``, ``NAN``, ``TRUE``, ``NULL`` or ``1234`` survive (DESIGN §12).

Which date files are read: one whose session is not in ``data.parquet``, or which was written at
or after ``data.parquet`` (a correction landed after the last consolidation). A date file older
than ``data.parquet`` whose session is already in it was merged by that consolidation (consolidate
merges every landed file of the symbol it rewrites, newest ``fetched_at`` winning), so it is not
read again — this is what keeps a lake with 30 days of retained date files cheap to resample.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.bars import day_number
from condvest.core.schema import BRONZE_SCHEMA, normalise_bronze
from condvest.errors import CorruptFileError, NotFoundError, StorageError
from condvest.storage.base import ObjectInfo, Storage

log = logging.getLogger("condvest.resample")
_TYPES = [f.type for f in BRONZE_SCHEMA]
_NAMES = BRONZE_SCHEMA.names
_LOOSE = pa.schema([f.with_nullable(True) for f in BRONZE_SCHEMA])


@dataclass
class SymbolFiles:
    """The bronze objects under one ``symbol=<X>/`` directory."""

    directory: str
    data: ObjectInfo | None = None
    dates: dict[date, ObjectInfo] = field(default_factory=dict)


def list_bronze(storage: Storage) -> dict[str, SymbolFiles]:
    """One listing of ``bronze/raw_ohlcv/``, grouped by symbol directory."""
    out: dict[str, SymbolFiles] = {}
    for obj in storage.list_objects(layout.BRONZE_OHLCV + "/"):
        if layout.is_temp_key(obj.key):
            continue
        directory = layout.parse_symbol_dir(obj.key)
        if directory is None:
            continue
        name = obj.key.rsplit("/", 1)[-1]
        files = out.setdefault(directory, SymbolFiles(directory))
        if name == layout.DATA_FILE:
            files.data = obj
        elif (day := layout.parse_date_file(name)) is not None:
            files.dates[day] = obj
    return out


def read_bronze_file(storage: Storage, key: str) -> pa.Table:
    """One bronze file in the canonical schema (legacy shapes normalised)."""
    path = storage.local_path(key)
    if path is None:
        table = storage.read_parquet(key)
    else:
        try:
            # ParquetFile, not read_table: no dataset discovery (so no hive parsing of the path),
            # and half the per-file overhead on the many small date files.
            table = pq.ParquetFile(path).read(use_threads=False)
        except FileNotFoundError:
            raise NotFoundError(f"{path} disappeared while resample was reading it") from None
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptFileError(f"{path} is not a readable parquet file: {exc}") from None
    if table.schema.names != _NAMES or table.schema.types != _TYPES:
        table = normalise_bronze(table, where=storage.url(key))
    # Nullability flags differ between writers; the columns are what matter (zero-copy).
    return pa.Table.from_arrays(table.columns, schema=_LOOSE)


def _merge(data: pa.Table | None, landed: list[pa.Table]) -> pa.Table:
    """Data rows plus landed rows: one row per date (newest fetched_at; a tie goes to the landed
    file), sorted by date."""
    parts = ([data] if data is not None else []) + landed
    if not parts:
        return _LOOSE.empty_table()
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    days = table.column("date").cast(pa.int32()).to_numpy()
    if len(days) < 2 or bool(np.all(np.diff(days) > 0)):
        return table  # the common case: data.parquet sorted, landed sessions after it
    fetched = table.column("fetched_at").cast(pa.int64()).to_numpy()
    rank = np.zeros(len(days), dtype=np.int8)
    rank[0 if data is None else data.num_rows :] = 1
    order = np.lexsort((rank, fetched, days))
    ordered_days = days[order]
    last_of_day = np.append(ordered_days[1:] != ordered_days[:-1], True)
    return table.take(pa.array(order[last_of_day]))


def _date_files_to_read(files: SymbolFiles, data: pa.Table | None) -> list[ObjectInfo]:
    if data is None or files.data is None:
        return list(files.dates.values())
    held = set(data.column("date").cast(pa.int32()).to_numpy().tolist()) if files.dates else set()
    data_mtime = files.data.mtime
    return [
        obj
        for day, obj in sorted(files.dates.items())
        if day_number(day) not in held or obj.mtime >= data_mtime
    ]


def read_symbol(storage: Storage, files: SymbolFiles) -> tuple[str, pa.Table, int]:
    """(symbol from the files' own column, merged rows, files read)."""
    data = read_bronze_file(storage, files.data.key) if files.data is not None else None
    landed: list[pa.Table] = []
    wanted = _date_files_to_read(files, data)
    for obj in wanted:
        try:
            landed.append(read_bronze_file(storage, obj.key))
        except NotFoundError:
            # Vacuum removed it after our listing: it only does so once the row is verified in
            # data.parquet, so the row is not lost.
            log.info("date file %s vanished during the read (vacuumed)", obj.key)
    merged = _merge(data, landed)
    n_read = len(wanted) + (1 if files.data is not None else 0)
    if merged.num_rows == 0:
        return files.directory, merged, n_read
    symbols = pc.unique(merged.column("symbol")).to_pylist()
    if len(symbols) != 1:
        raise CorruptFileError(
            f"{storage.url(layout.symbol_prefix(files.directory))} holds rows of "
            f"{len(symbols)} symbols ({', '.join(map(str, symbols[:5]))})",
            hint="each symbol directory must hold one symbol's rows",
        )
    symbol = str(symbols[0])
    if symbol != files.directory:
        log.warning(
            "files under symbol=%s hold symbol %s; using the column", files.directory, symbol
        )
    return symbol, merged, n_read


@dataclass(frozen=True)
class BronzeInput:
    """Every symbol's merged daily rows, concatenated in symbol order."""

    table: pa.Table
    symbols: tuple[str, ...]
    counts: np.ndarray
    files_read: int


def read_bronze(storage: Storage, listing: dict[str, SymbolFiles], workers: int) -> BronzeInput:
    """Read and merge every symbol (a thread pool: parquet decoding releases the GIL)."""
    by_symbol: dict[str, list[pa.Table]] = defaultdict(list)
    files_read = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for symbol, table, n_read in pool.map(
            lambda f: read_symbol(storage, f), [listing[k] for k in sorted(listing)]
        ):
            files_read += n_read
            if table.num_rows:
                by_symbol[symbol].append(table)
    names = tuple(sorted(by_symbol))
    tables: list[pa.Table] = []
    for name in names:
        parts = by_symbol[name]
        if len(parts) > 1:
            # Two directories holding one symbol's rows (should not happen): merge them.
            raise StorageError(
                f"symbol {name} has rows in {len(parts)} directories",
                hint="keep each symbol's files under bronze/raw_ohlcv/symbol=<SYMBOL>/",
            )
        tables.append(parts[0])
    counts = np.array([t.num_rows for t in tables], dtype=np.int64)
    table = pa.concat_tables(tables) if tables else _LOOSE.empty_table()
    return BronzeInput(table, names, counts, files_read)

"""Resample's input: every symbol's ``data.parquet`` plus the landed ``date=`` rows it does not
hold yet, de-duplicated on (symbol, date) with the newest ``fetched_at`` winning.

On local disk the canonical files are read in ONE multi-threaded DuckDB scan into Arrow
(``read_parquet([...], hive_partitioning=false)``; no extension is installed or loaded); files
with another schema (the original system's legacy shapes) are read with pyarrow and go through
``normalise_bronze``; if the scan fails (a file vanished or is corrupt) the files are read one by
one, which skips a vacuumed date file and names a corrupt one. On S3 a thread pool reads the files
through the Storage. The symbol comes from the file's own column, never from the path, so tickers
such as ``INF``, ``NAN``, ``TRUE``, ``NULL`` or ``1234`` survive (DESIGN §12); a directory holding
two symbols, or a symbol held in two directories, is an error.

Which date files are read: one whose session is not in ``data.parquet``, or which was written at
or after ``data.parquet`` (a correction landed after the last consolidation). A date file older
than ``data.parquet`` whose session is already in it was merged by that consolidation (consolidate
merges every landed file of the symbol it rewrites, newest ``fetched_at`` winning), so it is not
read again — this is what keeps a lake with 30 days of retained date files cheap to resample.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
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


# -- the bulk read ------------------------------------------------------------------------------
COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume", "vwap", "transactions")
"""The bronze columns resample needs (``fetched_at`` is read too, as int64 ms, to de-duplicate)."""

# (parquet physical type, converted type) of every canonical column, in order: a file that
# matches is read by DuckDB in the one bulk scan; any other file (legacy shapes) goes through
# pyarrow + normalise_bronze.
_CANONICAL = (
    ("symbol", "BYTE_ARRAY", "UTF8"),
    ("date", "INT32", "DATE"),
    *((name, "DOUBLE", None) for name in ("open", "high", "low", "close", "volume", "vwap")),
    ("transactions", "INT64", None),
    ("fetched_at", "INT64", "TIMESTAMP_MILLIS"),
    ("source", "BYTE_ARRAY", "UTF8"),
)
_SCAN = (
    "SELECT file_index::BIGINT AS owner, " + ", ".join(COLUMNS) + ", "
    "epoch_ms(fetched_at) AS fetched FROM read_parquet($files, hive_partitioning=false)"
)
_TAIL_SUMMARY = (
    "SELECT file_index::BIGINT AS owner, count(*) FILTER (date <= $upto) AS n, "
    "max(epoch_ms(fetched_at)) FILTER (date <= $upto) AS top, "
    "list(date) FILTER (date >= $d0 AND date <= $upto) AS held, "
    "list(struct_pack("
    + ", ".join(f"{c} := {c}" for c in COLUMNS)
    + ", fetched := epoch_ms(fetched_at))) FILTER (date >= $since) AS tail "
    "FROM read_parquet($files, hive_partitioning=false) GROUP BY ALL"
)
_GLOB_CHARS = frozenset("*?[]{}")
_NONE = np.iinfo(np.int64).min


def _day(number: int) -> date:
    return date.fromordinal(EPOCH_ORDINAL + number)


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class FileSummary:
    """Per file (by index): rows dated ``upto`` or earlier, their newest fetched_at (ms; _NONE
    when none) and the days in [d0, upto] it holds (only files that hold any)."""

    count: np.ndarray
    max_fetched: np.ndarray
    held: dict[int, set[int]]


def _empty_summary(n: int) -> FileSummary:
    return FileSummary(np.zeros(n, dtype=np.int64), np.full(n, _NONE, dtype=np.int64), {})


def _summary_of(rows: _Rows, n: int, summary: tuple[int, int] | None) -> FileSummary | None:
    if summary is None:
        return None
    upto, d0 = summary
    out = _empty_summary(n)
    days = _day_array(rows.table)
    fetched = np.asarray(pc.fill_null(rows.table.column("fetched"), 0).to_numpy(), np.int64)
    old = days <= upto
    out.count[:] = np.bincount(rows.owner[old], minlength=n)[:n]
    np.maximum.at(out.max_fetched, rows.owner[old], fetched[old])
    recent = old & (days >= d0)
    for owner, day in zip(rows.owner[recent].tolist(), days[recent].tolist(), strict=True):
        out.held.setdefault(owner, set()).add(day)
    return out


def _tail_of(rows: _Rows, since: int | None) -> _Rows:
    if since is None or rows.table.num_rows == 0:
        return rows
    keep = _day_array(rows.table) >= since
    return _Rows(rows.table.filter(pa.array(keep)), rows.owner[keep])


@dataclass(frozen=True)
class _Rows:
    """Rows of several files: ``COLUMNS`` + ``fetched``; ``owner[i]`` = index of row i's file."""

    table: pa.Table
    owner: np.ndarray


def _rows_of(tables: list[tuple[int, pa.Table]]) -> _Rows:
    """Per-file canonical tables -> _Rows."""
    parts = [
        pa.table(
            [*(t.column(c) for c in COLUMNS), t.column("fetched_at").cast(pa.int64())],
            names=[*COLUMNS, "fetched"],
        )
        for _, t in tables
    ]
    owner = np.repeat(
        np.array([i for i, _ in tables], dtype=np.int64),
        [t.num_rows for _, t in tables],
    )
    return _Rows(pa.concat_tables(parts) if parts else _empty_rows(), owner)


def _empty_rows() -> pa.Table:
    schema = pa.schema([_LOOSE.field(c) for c in COLUMNS] + [pa.field("fetched", pa.int64())])
    return schema.empty_table()


class BronzeReader:
    """Reads many bronze files into one Arrow table.

    On local disk the canonical files are read in ONE multi-threaded DuckDB scan (the per-file
    pyarrow reads cost ~40 s on the seed-scale lake; the scan ~2 s); on S3 a thread pool reads
    them through the Storage (network-bound). DuckDB never installs or loads an extension."""

    def __init__(
        self, storage: Storage, *, workers: int, threads: int = 0, memory_limit: str = ""
    ) -> None:
        self.storage = storage
        self.workers = max(1, workers)
        self.threads = threads
        self.memory_limit = memory_limit
        self.local = storage.local_path("") is not None

    def read(self, keys: list[str], *, optional: bool) -> _Rows:
        """Rows of ``keys`` (``optional``: a file vacuumed since the listing is skipped)."""
        return self.read_tail(keys, optional=optional)[0]

    def read_tail(
        self,
        keys: list[str],
        *,
        optional: bool,
        since: int | None = None,
        summary: tuple[int, int] | None = None,
    ) -> tuple[_Rows, FileSummary | None]:
        """Rows of ``keys`` dated ``since`` or later (a day number; None = all rows), and with
        ``summary=(upto, d0)`` a FileSummary of every file's rows dated ``upto`` or earlier."""
        if not keys:
            return _Rows(_empty_rows(), np.zeros(0, dtype=np.int64)), _empty_summary(0)
        if self.local:
            try:
                return self._read_bulk(keys, optional, since, summary)
            except duckdb.Error as exc:
                # A file vanished or is unreadable: the per-file path skips a vacuumed date
                # file and names a corrupt file in its error.
                log.info("bulk bronze scan failed (%s); reading file by file", exc)
        rows = self._read_each(keys, list(range(len(keys))), optional)
        return _tail_of(rows, since), _summary_of(rows, len(keys), summary)

    def _read_each(self, keys: list[str], indexes: list[int], optional: bool) -> _Rows:
        def one(i: int) -> tuple[int, pa.Table] | None:
            try:
                return i, read_bronze_file(self.storage, keys[i])
            except NotFoundError:
                if not optional:
                    raise
                # Vacuum removed it after our listing: it only does so once the row is
                # verified in data.parquet, so the row is not lost.
                log.info("date file %s vanished during the read (vacuumed)", keys[i])
                return None

        with ThreadPoolExecutor(self.workers) as pool:
            got = [t for t in pool.map(one, indexes) if t is not None]
        return _rows_of(got)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        config: dict[str, Any] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # not a connect-time option
        return con

    def _read_bulk(
        self, keys: list[str], optional: bool, since: int | None, summary: tuple[int, int] | None
    ) -> tuple[_Rows, FileSummary | None]:
        paths = [str(self.storage.local_path(k)) for k in keys]
        plain = [i for i, p in enumerate(paths) if not (_GLOB_CHARS & set(p))]
        con = self._connect()

        def scan(bulk: list[int]) -> tuple[pa.Table, FileSummary | None]:
            files = [paths[i] for i in bulk]
            found = _empty_summary(len(keys)) if summary is not None else None
            if found is not None and summary is not None and since is not None:
                return self._tail_and_summary(con, files, since, summary, bulk, found), found
            params: dict[str, Any] = {"files": files}
            query = _SCAN
            if since is not None:
                query, params["since"] = query + " WHERE date >= $since", _day(since)
            return con.sql(query, params=params).to_arrow_table(), found

        try:
            try:
                # Optimistic: every file canonical. A legacy file (no `date` column) fails the
                # bind, and only then are the schemas looked at (a footer pass of its own).
                bulk = plain
                table, found = scan(bulk)
            except duckdb.Error:
                bulk = [plain[j] for j in self._canonical(con, [paths[i] for i in plain])]
                table, found = scan(bulk)
        finally:
            con.close()
        rest = sorted(set(range(len(paths))) - set(bulk))
        owner = np.asarray(bulk, dtype=np.int64)[table.column("owner").to_numpy()]
        rows = _Rows(table.drop_columns(["owner"]).cast(_empty_rows().schema), owner)
        if not rest:
            return rows, found
        other = self._read_each(keys, rest, optional)  # legacy shapes: pyarrow + normalise
        if found is not None:
            extra = _summary_of(other, len(keys), summary)
            assert extra is not None
            for j in rest:
                found.count[j], found.max_fetched[j] = extra.count[j], extra.max_fetched[j]
                if j in extra.held:
                    found.held[j] = extra.held[j]
        other = _tail_of(other, since)
        rows = _Rows(
            pa.concat_tables([rows.table, other.table]), np.concatenate([rows.owner, other.owner])
        )
        return rows, found

    @staticmethod
    def _tail_and_summary(
        con: duckdb.DuckDBPyConnection,
        files: list[str],
        since: int,
        summary: tuple[int, int],
        bulk: list[int],
        found: FileSummary,
    ) -> pa.Table:
        """One scan for both: the rows dated ``since`` or later (aggregated into one list per
        file, then flattened) and each file's summary. Two scans cost twice: each data.parquet
        is one row group, so the date filter cannot skip any decoding."""
        if not files:
            return _empty_rows().add_column(0, "owner", pa.array([], pa.int64()))
        params = {
            "files": files,
            "since": _day(since),
            "upto": _day(summary[0]),
            "d0": _day(summary[1]),
        }
        got = con.sql(_TAIL_SUMMARY, params=params).to_arrow_table()
        owners = got.column("owner").to_numpy()
        for i, n, top, held in zip(
            owners.tolist(),
            got.column("n").to_pylist(),
            got.column("top").to_pylist(),
            got.column("held").to_pylist(),
            strict=True,
        ):
            j = bulk[i]
            found.count[j] = n
            found.max_fetched[j] = _NONE if top is None else top
            if held:
                found.held[j] = {day_number(d) for d in held}
        tail = got.column("tail").combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(tail), 0).to_numpy()
        flat = pc.list_flatten(tail)
        columns = {"owner": pa.array(np.repeat(owners, lengths))}
        columns.update({name: flat.field(name) for name in (*COLUMNS, "fetched")})
        return pa.table(columns)

    @staticmethod
    def _canonical(con: duckdb.DuckDBPyConnection, paths: list[str]) -> list[int]:
        """Indexes of the files whose parquet schema is exactly the canonical bronze one."""
        if not paths:
            return []
        query = (
            "SELECT file_name, string_agg(concat_ws(':', name, type, converted_type), ',' "
            "ORDER BY column_id) FROM parquet_schema($files) WHERE type IS NOT NULL "
            "GROUP BY file_name"
        )
        found = dict(con.sql(query, params={"files": paths}).fetchall())
        expected = ",".join(":".join(c for c in col if c) for col in _CANONICAL)
        return [i for i, p in enumerate(paths) if found.get(p) == expected]


def _keys(dirs: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (directory index, day)."""
    return (dirs.astype(np.int64) << 32) | (days.astype(np.int64) + (1 << 31))


def _day_array(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("date").cast(pa.int32()).to_numpy(), dtype=np.int64)


def _date_files_to_read(
    listing: dict[str, SymbolFiles], dirs: list[str], data_keys: np.ndarray, since: int | None
) -> list[tuple[int, ObjectInfo]]:
    """(directory index, object) of the date files to read (dated ``since`` or later), in
    (directory, day) order."""
    out: list[tuple[int, date, ObjectInfo]] = []
    maybe_held: list[tuple[int, date, ObjectInfo]] = []
    for i, name in enumerate(dirs):
        files = listing[name]
        for day, obj in sorted(files.dates.items()):
            if since is not None and day_number(day) < since:
                continue
            if files.data is None or obj.mtime >= files.data.mtime:
                out.append((i, day, obj))
            else:
                maybe_held.append((i, day, obj))
    if maybe_held:
        held = np.sort(data_keys)
        keys = _keys(
            np.array([i for i, _, _ in maybe_held]),
            np.array([day_number(d) for _, d, _ in maybe_held]),
        )
        pos = np.minimum(np.searchsorted(held, keys), max(len(held) - 1, 0))
        hit = held[pos] == keys if len(held) else np.zeros(len(keys), dtype=bool)
        out.extend(t for t, h in zip(maybe_held, hit.tolist(), strict=True) if not h)
    out.sort(key=lambda t: (t[0], t[1]))
    return [(i, obj) for i, _, obj in out]


def _merge_order(keys: np.ndarray, fetched: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
    """Row order giving one row per (directory, day) — newest fetched_at, a tie to the landed
    file, then the later file — sorted by key; None when the rows already are."""
    if len(keys) < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return None
    order = np.argsort(keys, kind="stable")  # timsort: near-linear on a few sorted runs
    ks = keys[order]
    dup = ks[1:] == ks[:-1]
    if not dup.any():
        return order
    mark = np.zeros(len(ks), dtype=bool)
    mark[1:] |= dup
    mark[:-1] |= dup
    sub = order[mark]
    ranked = sub[np.lexsort((rank[sub], fetched[sub], keys[sub]))]
    rk = keys[ranked]
    winner = np.zeros(len(keys), dtype=bool)
    winner[ranked[np.append(rk[1:] != rk[:-1], True)]] = True
    out: np.ndarray = order[~mark | winner[order]]
    return out


@dataclass(frozen=True)
class BronzeInput:
    """Every symbol's merged daily rows (``COLUMNS``), concatenated in symbol order."""

    table: pa.Table
    symbols: tuple[str, ...]
    counts: np.ndarray
    files_read: int


def read_bronze(
    storage: Storage,
    listing: dict[str, SymbolFiles],
    workers: int,
    *,
    threads: int = 0,
    memory_limit: str = "",
) -> BronzeInput:
    """Read every data.parquet, then the date files not in it yet, and merge them."""
    reader = BronzeReader(storage, workers=workers, threads=threads, memory_limit=memory_limit)
    dirs = sorted(listing)
    data_objs = [(i, obj) for i, d in enumerate(dirs) if (obj := listing[d].data) is not None]
    a = reader.read([o.key for _, o in data_objs], optional=False)
    return _assemble(reader, listing, dirs, data_objs, a, None)


@dataclass(frozen=True)
class TailInput:
    """Merged rows dated ``since`` or later, and per symbol directory a summary of its
    data.parquet's rows dated ``upto`` or earlier: (count, newest fetched_at ms or None), and
    the days in [d0, upto] it holds."""

    bronze: BronzeInput
    old: dict[str, tuple[int, int | None]]
    held: dict[str, set[int]]


def read_bronze_tail(
    storage: Storage,
    listing: dict[str, SymbolFiles],
    workers: int,
    *,
    since: int,
    upto: int,
    d0: int,
    threads: int = 0,
    memory_limit: str = "",
) -> TailInput:
    """The incremental read: only rows dated ``since`` or later are transferred (DuckDB filter
    pushdown on disk), plus the summary that tells whether older rows changed."""
    reader = BronzeReader(storage, workers=workers, threads=threads, memory_limit=memory_limit)
    dirs = sorted(listing)
    data_objs = [(i, obj) for i, d in enumerate(dirs) if (obj := listing[d].data) is not None]
    a, summary = reader.read_tail(
        [o.key for _, o in data_objs], optional=False, since=since, summary=(upto, d0)
    )
    assert summary is not None
    old: dict[str, tuple[int, int | None]] = {}
    held: dict[str, set[int]] = {}
    for j, (i, _) in enumerate(data_objs):
        top = int(summary.max_fetched[j])
        old[dirs[i]] = (int(summary.count[j]), None if top == _NONE else top)
        held[dirs[i]] = summary.held.get(j, set())
    bronze = _assemble(reader, listing, dirs, data_objs, a, since)
    return TailInput(bronze, old, held)


def _assemble(
    reader: BronzeReader,
    listing: dict[str, SymbolFiles],
    dirs: list[str],
    data_objs: list[tuple[int, ObjectInfo]],
    a: _Rows,
    since: int | None,
) -> BronzeInput:
    """Data rows ``a`` + the date files to read (dated ``since`` or later), merged."""
    a_dir = np.array([i for i, _ in data_objs], dtype=np.int64)[a.owner]
    a_keys = _keys(a_dir, _day_array(a.table))
    wanted = _date_files_to_read(listing, dirs, a_keys, since)
    b = reader.read([o.key for _, o in wanted], optional=True)
    b_dir = np.array([i for i, _ in wanted], dtype=np.int64)[b.owner]
    if b.table.num_rows:
        table = pa.concat_tables([a.table, b.table])
        row_dir = np.concatenate([a_dir, b_dir])
        keys = np.concatenate([a_keys, _keys(b_dir, _day_array(b.table))])
    else:
        table, row_dir, keys = a.table, a_dir, a_keys
    del a, b
    # Dictionary-encoded symbols: the checks below and any re-ordering take ints, not strings.
    table = table.set_column(
        0, "symbol", pc.dictionary_encode(table.column("symbol")).combine_chunks()
    )
    rank = np.repeat(np.array([0, 1], dtype=np.int8), [len(a_dir), len(row_dir) - len(a_dir)])
    fetched = np.asarray(pc.fill_null(table.column("fetched"), 0).to_numpy(), dtype=np.int64)
    order = _merge_order(keys, fetched, rank)
    if order is not None:
        table, row_dir = table.take(pa.array(order)), row_dir[order]
    files_read = len(data_objs) + len(wanted)
    return _by_symbol(reader.storage, table, row_dir, dirs, files_read)


def _by_symbol(
    storage: Storage, table: pa.Table, row_dir: np.ndarray, dirs: list[str], files_read: int
) -> BronzeInput:
    """Symbols from the files' own column (one per directory), blocks in symbol order."""
    n = table.num_rows
    if n == 0:
        return BronzeInput(table, (), np.zeros(0, dtype=np.int64), files_read)
    encoded = table.column("symbol").combine_chunks()
    codes = encoded.indices.to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], row_dir[1:] != row_dir[:-1]]))
    lo, hi = np.minimum.reduceat(codes, starts), np.maximum.reduceat(codes, starts)
    for b in np.flatnonzero(lo != hi)[:1].tolist():
        end = starts[b + 1] if b + 1 < len(starts) else n
        symbols = pc.unique(table.column("symbol").slice(starts[b], end - starts[b])).to_pylist()
        raise CorruptFileError(
            f"{storage.url(layout.symbol_prefix(dirs[row_dir[starts[b]]]))} holds rows of "
            f"{len(symbols)} symbols ({', '.join(map(str, symbols[:5]))})",
            hint="each symbol directory must hold one symbol's rows",
        )
    names = [str(s) for s in encoded.dictionary.take(pa.array(lo)).to_pylist()]
    block_dirs = [dirs[d] for d in row_dir[starts].tolist()]
    counts = np.diff(np.append(starts, n))
    seen: dict[str, str] = {}
    for name, directory in zip(names, block_dirs, strict=True):
        if name in seen:
            raise StorageError(
                f"symbol {name} has rows in 2 directories (symbol={seen[name]}, "
                f"symbol={directory})",
                hint="keep each symbol's files under bronze/raw_ohlcv/symbol=<SYMBOL>/",
            )
        seen[name] = directory
        if name != directory:
            log.warning("files under symbol=%s hold symbol %s; using the column", directory, name)
    if names != sorted(names):
        blocks = sorted(range(len(names)), key=names.__getitem__)
        take = np.concatenate([np.arange(starts[b], starts[b] + counts[b]) for b in blocks])
        table, names, counts = (
            table.take(pa.array(take)),
            [names[b] for b in blocks],
            counts[blocks],
        )
    return BronzeInput(table, tuple(names), counts.astype(np.int64), files_read)

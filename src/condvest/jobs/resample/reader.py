"""Resample's input: every symbol's ``data.parquet`` plus the landed ``date=`` rows it does not
hold yet, de-duplicated on (symbol, date) with the newest ``fetched_at`` winning.

The files are read by :class:`condvest.jobs.resample.scan.BronzeReader` (one DuckDB scan of
the canonical files on disk; any other file through the one bronze reader, which normalises
legacy shapes). The symbol comes from the file's own column, never from the path, so tickers
such as ``INF``, ``NAN``, ``TRUE``, ``NULL`` or ``1234`` survive (docs/design.md §12); a directory
holding two symbols, or a symbol held in two directories, is an error.

Which date files are read: one whose session is not in ``data.parquet``, or which was written at
or after ``data.parquet`` (a correction landed after the last consolidation). A date file older
than ``data.parquet`` whose session is already in it was merged by that consolidation (consolidate
merges every landed file of the symbol it rewrites, newest ``fetched_at`` winning), so it is not
read again — this is what keeps a lake with 30 days of retained date files cheap to resample.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import layout
from condvest.core.bars import day_number
from condvest.errors import CorruptFileError, StorageError
from condvest.jobs.bronze import SymbolFiles
from condvest.jobs.resample.scan import (
    COLUMNS,
    NO_DAY,
    ROWS_SCHEMA,
    BronzeReader,
    Rows,
    day_array,
)
from condvest.state.bronze_tails import TailIndex
from condvest.storage.base import ObjectInfo, Storage

log = logging.getLogger("condvest.resample")


def _keys(dirs: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One sortable int64 per (directory index, day)."""
    return (dirs.astype(np.int64) << 32) | (days.astype(np.int64) + (1 << 31))


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
    bytes_read: int = 0
    """Size of the files read (the listing's; a filtered scan may decode less of them)."""
    from_index: int = 0
    """Data files taken from the bronze tail index instead of read."""


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
    tails: TailIndex | None = None,
) -> TailInput:
    """The incremental read: only rows dated ``since`` or later are transferred (DuckDB filter
    pushdown on disk), plus the summary that tells whether older rows changed. A data file the
    bronze tail index (``tails``) holds at its listed version is not read at all: its entry
    gives the same rows and summary, provided it reaches back to ``since``, ``d0`` and
    ``upto``."""
    reader = BronzeReader(storage, workers=workers, threads=threads, memory_limit=memory_limit)
    dirs = sorted(listing)
    data_objs = [(i, obj) for i, d in enumerate(dirs) if (obj := listing[d].data) is not None]
    cached = _covered(tails, [(dirs[i], obj) for i, obj in data_objs], min(since, d0, upto))
    served = set(cached)
    to_read = [j for j in range(len(data_objs)) if j not in served]
    a, summary = reader.read_tail(
        [data_objs[j][1].key for j in to_read], optional=False, since=since, summary=(upto, d0)
    )
    assert summary is not None
    old: dict[str, tuple[int, int | None]] = {}
    held: dict[str, set[int]] = {}
    for k, j in enumerate(to_read):
        name = dirs[data_objs[j][0]]
        top = int(summary.max_fetched[k])
        old[name] = (int(summary.count[k]), None if top == NO_DAY else top)
        held[name] = summary.held.get(k, set())
    a = Rows(a.table, np.asarray(to_read, dtype=np.int64)[a.owner])
    if cached:
        assert tails is not None
        b = _from_tails(tails, [dirs[data_objs[j][0]] for j in cached], since, upto, d0)
        old.update(b.old)
        held.update(b.held)
        owner = np.asarray(cached, dtype=np.int64)[b.rows.owner]
        a = Rows(pa.concat_tables([a.table, b.rows.table]), np.concatenate([a.owner, owner]))
        log.info(
            "%d of %d data files from the bronze tail index, %d read",
            len(cached),
            len(data_objs),
            len(to_read),
        )
    bronze = _assemble(reader, listing, dirs, data_objs, a, since)
    if cached:
        saved = sum(data_objs[j][1].size for j in cached)
        assert tails is not None
        bronze = replace(
            bronze,
            files_read=bronze.files_read - len(cached) + 1,
            bytes_read=bronze.bytes_read - saved + tails.size,
            from_index=len(cached),
        )
    return TailInput(bronze, old, held)


def _covered(tails: TailIndex | None, data: list[tuple[str, ObjectInfo]], day: int) -> list[int]:
    """Positions in ``data`` of the files the index holds at their listed version, with rows
    reaching back to ``day`` (or every row of the file)."""
    if tails is None:
        return []
    out = []
    for j, (name, obj) in enumerate(data):
        if obj.version is None or tails.versions.get(name) != obj.version:
            continue
        if tails.before[name][0] == 0 or tails.first_days[name] <= day:
            out.append(j)
    return out


@dataclass(frozen=True)
class _FromTails:
    rows: Rows
    """Rows dated ``since`` or later; ``owner`` indexes the names asked for."""
    old: dict[str, tuple[int, int | None]]
    held: dict[str, set[int]]


def _from_tails(tails: TailIndex, names: list[str], since: int, upto: int, d0: int) -> _FromTails:
    """What :meth:`BronzeReader.read_tail` gives for these files, from their index entries."""
    spans = np.array([tails.spans[n] for n in names], dtype=np.int64).reshape(-1, 2)
    lengths = spans[:, 1] - spans[:, 0]
    if len(names) == len(tails.spans) and bool(np.all(spans[1:, 0] == spans[:-1, 1])):
        table = tails.table  # every entry, in the index's own order: no copy
    else:  # row i of entry k is at spans[k, 0] + i
        offsets = np.repeat(spans[:, 0] - (np.cumsum(lengths) - lengths), lengths)
        table = tails.table.take(pa.array(np.arange(int(lengths.sum())) + offsets))
    owner = np.repeat(np.arange(len(names), dtype=np.int64), lengths)
    days = day_array(table)
    fetched = np.asarray(pc.fill_null(table.column("fetched"), NO_DAY).to_numpy(), np.int64)
    old_rows = days <= upto
    count = np.bincount(owner[old_rows], minlength=len(names))
    top = np.full(len(names), NO_DAY, dtype=np.int64)
    np.maximum.at(top, owner[old_rows], fetched[old_rows])
    old: dict[str, tuple[int, int | None]] = {}
    for k, name in enumerate(names):
        before, before_top = tails.before[name]
        tops = [t for t in (before_top, int(top[k])) if t is not None and t != NO_DAY]
        old[name] = (before + int(count[k]), max(tops) if tops else None)
    held: dict[str, set[int]] = {n: set() for n in names}
    recent = old_rows & (days >= d0)
    for k, day in zip(owner[recent].tolist(), days[recent].tolist(), strict=True):
        held[names[k]].add(day)
    keep = days >= since
    rows = table.select([*COLUMNS, "fetched"]).filter(pa.array(keep))
    return _FromTails(Rows(rows.cast(ROWS_SCHEMA), owner[keep]), old, held)


def _assemble(
    reader: BronzeReader,
    listing: dict[str, SymbolFiles],
    dirs: list[str],
    data_objs: list[tuple[int, ObjectInfo]],
    a: Rows,
    since: int | None,
) -> BronzeInput:
    """Data rows ``a`` + the date files to read (dated ``since`` or later), merged."""
    a_dir = np.array([i for i, _ in data_objs], dtype=np.int64)[a.owner]
    a_keys = _keys(a_dir, day_array(a.table))
    wanted = _date_files_to_read(listing, dirs, a_keys, since)
    b = reader.read([o.key for _, o in wanted], optional=True)
    b_dir = np.array([i for i, _ in wanted], dtype=np.int64)[b.owner]
    if b.table.num_rows:
        table = pa.concat_tables([a.table, b.table])
        row_dir = np.concatenate([a_dir, b_dir])
        keys = np.concatenate([a_keys, _keys(b_dir, day_array(b.table))])
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
    size = sum(o.size for _, o in data_objs) + sum(o.size for _, o in wanted)
    return replace(_by_symbol(reader.storage, table, row_dir, dirs, files_read), bytes_read=size)


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

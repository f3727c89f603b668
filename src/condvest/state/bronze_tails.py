"""The bronze tail index (``processing_metadata/bronze_tails.parquet``): per symbol directory, the
last rows of its ``data.parquet`` and a summary of the rows before them (how many, their newest
``fetched_at``), tied to the exact version of the file they were taken from.

Consolidate writes it after merging (the rows are those of the table it has just written, the
version the one its compare-and-swap produced — never read back, so another writer's file can
never be taken for its own). The daily resample reads this one file instead of every
``data.parquet``: an entry is used only while the listing shows the file at the entry's version,
so any other write (``fetch --history``, a split restatement, a file put there by hand) makes
resample read that file again. The index is a cache: absent, unreadable or of another format it
is ignored with a log line, and every file is read (docs/design.md, "The bronze tail index").
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.schema import BAR_INPUT_COLUMNS, DAILY_ROWS_SCHEMA
from condvest.errors import NotFoundError, StorageError
from condvest.storage.base import Storage, parquet_bytes

log = logging.getLogger("condvest.state")

FORMAT = b"1"
_FORMAT_KEY = b"condvest.bronze_tails.format"
ROW_COLUMNS = BAR_INPUT_COLUMNS
"""The bronze columns an entry keeps (``fetched_at`` too, as ``fetched``: int64 ms)."""

SCHEMA = pa.schema(
    [
        pa.field("dir", pa.string()),
        pa.field("version", pa.string()),
        pa.field("rows_before", pa.int64()),
        pa.field("fetched_before", pa.int64()),
        *DAILY_ROWS_SCHEMA,
    ]
)
"""One row per kept bronze row; the entry's own fields repeat on each of its rows (they compress
to almost nothing). Every entry has at least one row: an empty data file gets no entry."""


MAX_KEEP = 272
"""Entries never keep more rows than this (intervals of up to 256 sessions are served): with
longer bars the index would approach the size of bronze, and those files are read instead."""


def keep_rows(intervals: Iterable[int]) -> int:
    """Rows an entry keeps: the longest interval (resample reads from the start of the bar that
    holds the first new session) plus 16 sessions of margin — for resample running a few
    sessions behind consolidate, and for the retained date files it checks against the file —,
    at most :data:`MAX_KEEP`."""
    return min(max(intervals, default=0) + 16, MAX_KEEP)


@dataclass(frozen=True)
class TailEntry:
    """The tail of one data.parquet version (``rows``: ``ROW_COLUMNS`` + ``fetched``, by date)."""

    directory: str
    version: str
    rows_before: int
    fetched_before: int | None
    rows: pa.Table

    def table(self) -> pa.Table:
        n = self.rows.num_rows
        head = {
            "dir": pa.array([self.directory] * n, pa.string()),
            "version": pa.array([self.version] * n, pa.string()),
            "rows_before": pa.array([self.rows_before] * n, pa.int64()),
            "fetched_before": pa.array([self.fetched_before] * n, pa.int64()),
        }
        return pa.table({**head, **{c: self.rows.column(c) for c in self.rows.column_names}}).cast(
            SCHEMA
        )


def tail_entry(directory: str, version: str, merged: pa.Table, keep: int) -> TailEntry | None:
    """The entry of ``merged`` (a canonical bronze table, sorted by date, just written at
    ``version``): its last ``keep`` rows and a summary of the others. None for an empty table."""
    n = merged.num_rows
    if n == 0 or keep <= 0:
        return None
    cut = max(0, n - keep)
    fetched = merged.column("fetched_at").cast(pa.int64())
    top = pc.max(fetched.slice(0, cut)).as_py() if cut else None
    tail = merged.slice(cut)
    rows = pa.table(
        [*(tail.column(c) for c in ROW_COLUMNS), fetched.slice(cut)],
        names=[*ROW_COLUMNS, "fetched"],
    )
    # take() copies: a slice would keep the whole merged history alive until the index is
    # written (every symbol's, in a consolidate run)
    return TailEntry(directory, version, cut, top, rows.take(np.arange(rows.num_rows)))


@dataclass(frozen=True)
class TailIndex:
    """The index as read: ``table`` (``SCHEMA``) with each directory's rows at ``spans[dir]``."""

    table: pa.Table
    spans: dict[str, tuple[int, int]]
    versions: dict[str, str]
    before: dict[str, tuple[int, int | None]]
    """Per directory: (rows before the kept ones, their newest fetched_at ms or None)."""
    first_days: dict[str, int]
    """Per directory: day number (days since 1970-01-01) of its first kept row."""
    size: int
    """Bytes of the index file (what reading it cost)."""


class TailIndexError(ValueError):
    """The index file is not one this code wrote (the message says why)."""


def decode(data: bytes) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
    """The index table and each directory's row span; :class:`TailIndexError` when the bytes
    are not this format."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = parquet.schema_arrow.metadata or {}
        table = parquet.read()
    except (pa.ArrowException, OSError) as exc:
        raise TailIndexError(f"not readable: {exc}") from None
    if meta.get(_FORMAT_KEY) != FORMAT:
        raise TailIndexError(f"format {meta.get(_FORMAT_KEY)!r}, this condvest reads {FORMAT!r}")
    if not table.schema.remove_metadata().equals(SCHEMA):
        raise TailIndexError("unexpected columns")
    dirs = pc.dictionary_encode(table.column("dir")).combine_chunks()
    codes = dirs.indices.to_numpy()
    n = len(codes)
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])) if n else codes
    ends = np.append(starts[1:], n)
    names = dirs.dictionary.take(pa.array(codes[starts] if n else [], pa.int32())).to_pylist()
    spans = {str(d): (int(a), int(b)) for d, a, b in zip(names, starts, ends, strict=True)}
    if len(spans) != len(starts):
        raise TailIndexError("a directory's rows are not contiguous")
    return table, spans


def read_tails(storage: Storage) -> TailIndex | None:
    """The index, or None when there is none or it cannot be used (logged: then every data file
    is read, as without an index)."""
    key = layout.BRONZE_TAILS
    try:
        data = storage.read_bytes(key)
    except NotFoundError:
        return None
    try:
        table, spans = decode(data)
    except TailIndexError as exc:
        log.warning("%s is ignored (%s): every data.parquet is read", storage.url(key), exc)
        return None
    starts = [a for a, _ in spans.values()]
    pick = pa.array(starts, pa.int64())
    versions = table.column("version").take(pick).to_pylist()
    counts = table.column("rows_before").take(pick).to_pylist()
    tops = table.column("fetched_before").take(pick).to_pylist()
    firsts = table.column("date").take(pick).cast(pa.int32()).to_pylist()
    names = list(spans)
    return TailIndex(
        table,
        spans,
        {d: str(v) for d, v in zip(names, versions, strict=True)},
        {d: (int(c), t) for d, c, t in zip(names, counts, tops, strict=True)},
        {d: int(f) for d, f in zip(names, firsts, strict=True)},
        len(data),
    )


def update_tails(storage: Storage, entries: Iterable[TailEntry], *, attempts: int = 20) -> int:
    """Put ``entries`` into the index (replacing each directory's old entry), by compare-and-
    swap so concurrent consolidate shards keep each other's. Returns the index's size. (An entry
    of a directory that is gone stays until that directory's next entry; no listing matches it,
    so it is never used.)"""
    new = list(entries)
    if not new:
        return 0
    mine = pa.concat_tables([e.table() for e in new])
    replaced = pa.array(sorted({e.directory for e in new}), pa.string())
    key = layout.BRONZE_TAILS
    for _ in range(attempts):
        old: pa.Table | None = None
        version: str | None
        try:
            data, version = storage.read_versioned(key)
            try:
                old, _ = decode(data)
            except TailIndexError as exc:
                log.warning("%s is replaced (%s)", storage.url(key), exc)
        except NotFoundError:
            version = None
        parts = [mine]
        if old is not None and old.num_rows:
            parts.insert(0, old.filter(pc.invert(pc.is_in(old.column("dir"), replaced))))
        table = pa.concat_tables(parts).replace_schema_metadata({_FORMAT_KEY: FORMAT})
        payload = parquet_bytes(table)
        done = (
            storage.create(key, payload)
            if version is None
            else storage.replace(key, payload, version)
        )
        if done:
            return len(payload)
    raise StorageError(f"could not update {storage.url(key)}: too many concurrent writers")


def record_tails(storage: Storage, entries: list[TailEntry]) -> None:
    """:func:`update_tails`, for a writer whose run must not fail on a cache: when the index
    cannot be written, the next resample reads those data files instead (said in the log)."""
    if not entries:
        return
    try:
        update_tails(storage, entries)
    except StorageError as exc:
        log.warning(
            "the bronze tail index was not updated (%s): the next resample reads the %d data "
            "files merged instead",
            exc.message,
            len(entries),
        )

"""The verified, atomic merge of rows into ``symbol=<S>/data.parquet`` — shared by consolidate,
``fetch --history`` and split restatement.

The merge reads the current file with its version, merges, verifies, re-reads the bytes it is
about to write, and swaps them in with a compare-and-swap (local: temp file + rename under a
directory lock; S3: one conditional PUT). A concurrent writer makes the swap fail and the merge
is redone on the new file, so no writer's rows are lost. A read error on an existing file fails
the symbol — it is never treated as "absent"."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.merge import MergeStats, canonical, merge_bronze, verify_merge
from condvest.core.schema import BRONZE_SCHEMA
from condvest.errors import NotFoundError, StorageError, VerificationError
from condvest.faults import kill_point
from condvest.jobs.bronze import decode
from condvest.state.bronze_tails import TailEntry, tail_entry
from condvest.storage.base import PARQUET_COMPRESSION, Storage

_CAS_ATTEMPTS = 32
_BACKOFF_S = 0.002
"""A lost compare-and-swap waits a random 0..2^n x 2 ms (n capped at 6) before retrying, so a
slow writer is not starved by a fast one (8 immediate retries did lose under load)."""


@dataclass(frozen=True)
class SymbolMergeReport:
    symbol: str
    changed: bool
    stats: MergeStats
    first_date: date | None
    last_date: date | None
    bytes_written: int
    tail: TailEntry | None = None
    """The written file's tail-index entry (asked for with ``keep_tail``; None when the
    storage could not say the new file's exact version)."""


def bronze_bytes(table: pa.Table) -> bytes:
    """Encode a canonical bronze table. Dictionary encoding only for the constant string columns
    and statistics only on ``date`` (what readers filter on): ~4x faster to write than the
    defaults, and smaller (dictionary pages of unique float prices are pure overhead). An Arrow
    buffer as the sink, not a Python file object: the writer then never takes the GIL back
    mid-encode, so parallel merges overlap."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=PARQUET_COMPRESSION,
        use_dictionary=["symbol", "source"],
        write_statistics=["date"],
    )
    encoded: bytes = sink.getvalue().to_pybytes()
    return encoded


def merge_into_data_file(
    storage: Storage, symbol: str, incoming: pa.Table, *, keep_tail: int = 0
) -> SymbolMergeReport:
    """Merge ``incoming`` (canonical rows of ``symbol``) into its data.parquet, verified + CAS.
    ``keep_tail`` > 0: the report carries the new file's entry of the bronze tail index (its
    last ``keep_tail`` rows, at the version the swap produced)."""
    key = layout.data_file(symbol)
    incoming = canonical(incoming)
    for attempt in range(_CAS_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, _BACKOFF_S * 2 ** min(attempt, 6)))
        version: str | None
        try:
            data, version = storage.read_versioned(key)
            old, was_canonical = decode(data, where=storage.url(key))
        except NotFoundError:
            old, was_canonical, version = BRONZE_SCHEMA.empty_table(), True, None
        merged, stats = merge_bronze(old, incoming)
        first = merged.column("date")[0].as_py() if merged.num_rows else None
        last = merged.column("date")[-1].as_py() if merged.num_rows else None
        if version is not None and was_canonical and not stats.added_dates and merged.equals(old):
            # unchanged: the entry is of the file as read (read_versioned's version is exact)
            entry = tail_entry(symbol, version, merged, keep_tail) if keep_tail else None
            return SymbolMergeReport(symbol, False, stats, first, last, 0, entry)
        verify_merge(old, incoming, merged, symbol=symbol)
        payload = bronze_bytes(merged)
        check, _ = decode(payload, where=f"{symbol} (new data.parquet)")
        if not check.equals(merged):
            raise VerificationError(f"{symbol}: the encoded data.parquet does not read back equal")
        swapped, written = (
            storage.create_versioned(key, payload)
            if version is None
            else storage.replace_versioned(key, payload, version)
        )
        if swapped:
            kill_point("after-swap", key)
            entry = (
                tail_entry(symbol, written, merged, keep_tail) if keep_tail and written else None
            )
            return SymbolMergeReport(symbol, True, stats, first, last, len(payload), entry)
    raise StorageError(f"{symbol}: data.parquet kept changing under concurrent writers; retry")

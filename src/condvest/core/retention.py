"""Pure rules shared by consolidate, vacuum and status: when a landed date file is still pending,
when one is superseded (safe to delete), the retention cut-off and shard assignment.

The pending rule compares like with like: every time involved is a storage modification time
(the S3 server's or the filesystem's clock), never a host clock. After consolidating a symbol,
its manifest row's ``last_updated`` is the newest modification time of the date files it merged
(rounded up to the manifest's millisecond precision). So a date file is pending when

* the symbol has no manifest row (or the row has no ``last_updated``/``last_consolidated_date``),
* its modification time is newer than ``last_updated`` (landed or re-landed after the last merge
  — this catches corrections and late files older than ``last_consolidated_date``), or
* its date is after ``last_consolidated_date``.
"""

from __future__ import annotations

import zlib
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa

from condvest.errors import UsageError


def is_pending(
    day: date,
    mtime: datetime,
    last_consolidated_date: date | None,
    last_updated: datetime | None,
) -> bool:
    """True when the date file (``day``, modified at ``mtime``) is not yet in data.parquet."""
    if last_updated is None or last_consolidated_date is None:
        return True
    return mtime > last_updated or day > last_consolidated_date


def ceil_ms(moment: datetime) -> datetime:
    """``moment`` rounded up to a whole millisecond (the manifest stores timestamp(ms))."""
    extra = moment.microsecond % 1000
    return moment if extra == 0 else moment + timedelta(microseconds=1000 - extra)


def retention_cutoff(today: date, retention_days: int) -> date:
    """Date files for sessions strictly before this date are old enough to delete."""
    return today - timedelta(days=retention_days)


def shard_of(symbol: str, count: int) -> int:
    """Stable shard of ``symbol`` among ``count`` (CRC-32: same on every host and Python run)."""
    return zlib.crc32(symbol.encode()) % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N) with 0 <= K < N."""
    index_text, sep, count_text = text.partition("/")
    try:
        if not sep:
            raise ValueError
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise UsageError(
            f"--shard {text!r} is not K/N", hint="pass e.g. --shard 0/4 (shard 0 of 4)"
        ) from None
    return check_shard(index, count, shown=f"--shard {text}")


def check_shard(index: int, count: int, *, shown: str) -> tuple[int, int]:
    if count < 1:
        raise UsageError(f"{shown}: the shard count {count} must be at least 1")
    if not 0 <= index < count:
        raise UsageError(
            f"{shown}: shard index {index} must be between 0 and {count - 1}",
            hint="shards are numbered from 0 (AWS Batch array index)",
        )
    return index, count


def _day_numbers(table: pa.Table) -> np.ndarray:
    days: np.ndarray = table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
    return days


def is_superseded(landed: pa.Table, history: pa.Table) -> bool:
    """True when every row of a date file (``landed``) is already represented in ``history``
    (a symbol's data.parquet, sorted by date, one row per date): the history has a row for the
    date that is identical or strictly newer (``fetched_at``). A landed row that differs and is
    not older is pending, not superseded — deleting its file would lose it. Both tables are in
    the canonical schema."""
    if landed.num_rows == 0:
        return True
    days = _day_numbers(history)
    fetched = history.column("fetched_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    landed_fetched = landed.column("fetched_at").cast(pa.int64()).to_pylist()
    rows = landed.to_pylist()
    for row_day, row_ms, row in zip(
        _day_numbers(landed).tolist(), landed_fetched, rows, strict=True
    ):
        pos = int(np.searchsorted(days, row_day))
        if pos >= len(days) or int(days[pos]) != row_day:
            return False
        if row_ms < int(fetched[pos]):
            continue
        if history.slice(pos, 1).to_pylist()[0] != row:
            return False
    return True

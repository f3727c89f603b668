"""Merging rows into a symbol's history (pure): de-duplicate on date with the newest
``fetched_at`` winning (ties: the incoming batch wins), sort by date, and verify before anything
is swapped in — no old date lost, one row per date, row count = old + genuinely new dates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.schema import BRONZE_SCHEMA
from condvest.errors import VerificationError


@dataclass(frozen=True)
class MergeStats:
    old_rows: int
    incoming_rows: int
    merged_rows: int
    added_dates: int
    """Dates that were not in the old history."""
    replaced_dates: int
    """Existing dates whose winning row came from the incoming batch (corrections, restatements)."""


def _day_numbers(table: pa.Table) -> np.ndarray:
    days: np.ndarray = table.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
    return days


def canonical(table: pa.Table) -> pa.Table:
    """``table`` in the canonical bronze schema (no cast when it already is: the common case)."""
    return table if table.schema.equals(BRONZE_SCHEMA) else table.cast(BRONZE_SCHEMA)


def merge_bronze(old: pa.Table, incoming: pa.Table) -> tuple[pa.Table, MergeStats]:
    """``old`` + ``incoming`` → one row per date, sorted; both in the canonical schema."""
    old = canonical(old)
    incoming = canonical(incoming)
    if incoming.num_rows == 0:
        return old, MergeStats(old.num_rows, 0, old.num_rows, 0, 0)
    appended = _append_only(old, incoming)
    if appended is not None:
        return appended
    batch = pa.concat_arrays(
        [pa.array(np.zeros(old.num_rows, np.int8)), pa.array(np.ones(incoming.num_rows, np.int8))]
    )
    both = pa.concat_tables([old, incoming]).append_column("_batch", batch)
    order = pc.sort_indices(
        both,
        sort_keys=[("date", "ascending"), ("fetched_at", "descending"), ("_batch", "descending")],
    )
    both = both.take(order)
    days = _day_numbers(both)
    keep = np.ones(len(days), dtype=bool)
    keep[1:] = days[1:] != days[:-1]
    merged = both.filter(pa.array(keep)).drop_columns(["_batch"])
    old_days = set(_day_numbers(old).tolist())
    added = len(set(_day_numbers(incoming).tolist()) - old_days)
    winners_from_incoming = both.column("_batch").filter(pa.array(keep))
    from_incoming = int(pc.sum(winners_from_incoming).as_py() or 0)
    replaced = from_incoming - added
    return merged, MergeStats(old.num_rows, incoming.num_rows, merged.num_rows, added, replaced)


def _append_only(old: pa.Table, incoming: pa.Table) -> tuple[pa.Table, MergeStats] | None:
    """The daily case without a sort: incoming dates strictly increasing, all after the history."""
    new_days = _day_numbers(incoming)
    if len(new_days) > 1 and not bool(np.all(new_days[1:] > new_days[:-1])):
        return None
    if old.num_rows and int(_day_numbers(old.slice(old.num_rows - 1))[0]) >= int(new_days[0]):
        return None
    merged = pa.concat_tables([old, incoming]).combine_chunks()
    n = incoming.num_rows
    return merged, MergeStats(old.num_rows, n, merged.num_rows, n, 0)


def verify_merge(old: pa.Table, incoming: pa.Table, merged: pa.Table, *, symbol: str) -> None:
    """Raise VerificationError unless ``merged`` is a lossless merge of ``old`` and ``incoming``:
    sorted with one row per date, every old and incoming date present, and no other date."""
    merged_days = _day_numbers(merged)
    if len(merged_days) and not bool(np.all(merged_days[1:] > merged_days[:-1])):
        raise VerificationError(f"{symbol}: merged history is not sorted with one row per date")
    # merged_days is sorted and unique, so a binary search places every expected date: no sort
    # of old + incoming (np.union1d) is needed — this is ~10x cheaper on long histories.
    covered = np.zeros(len(merged_days), dtype=bool)
    lost: set[int] = set()
    for part in (old, incoming):
        days = _day_numbers(part)
        if not len(days):
            continue
        at = np.searchsorted(merged_days, days)
        found = at < len(merged_days)
        found[found] = merged_days[at[found]] == days[found]
        if not bool(found.all()):
            lost.update(days[~found].tolist())
        covered[at[found]] = True
    if lost:
        raise VerificationError(f"{symbol}: the merge would lose {len(lost)} date(s)")
    if not bool(covered.all()):
        # a date in neither input: the row count is not old + genuinely new dates
        expected = int(covered.sum())
        raise VerificationError(
            f"{symbol}: merged row count {len(merged_days)} != old + new dates {expected}"
        )
    symbols = pc.unique(merged.column("symbol")).to_pylist() if merged.num_rows else [symbol]
    if symbols != [symbol]:
        raise VerificationError(f"{symbol}: merged history holds other symbols {symbols[:3]}")

"""The daily incremental resample: read only the rows that can change a bar, merge into months.

Every checkpoint (format 2) records, per symbol, how many merged daily rows it had on or before
the checkpoint's ``through`` and their newest ``fetched_at`` (the ``bronze`` state). With calendar
alignment, the bars that can change after ``through`` are, for interval N, those starting at or
after b_N — the start of the bar that holds the first session after ``through`` (bars before it
end on or before ``through`` and were already final). So when no symbol's rows on or before
``through`` changed, the run reads only rows dated from C = min b_N (DuckDB filter pushdown),
recomputes those bars and rewrites only the months they start in, keeping each month's rows that
start before b_N. The cutoff is counted in sessions, not rows, so a bar completed by the clock
alone (a halted symbol) is still recomputed.

"Rows on or before ``through`` unchanged" is checked without reading them: per data.parquet, the
count and newest fetched_at of those rows (an aggregate over two columns). Every rewrite of a row
comes from a newer fetch (a restatement, a late correction), so a change shows as a newer
fetched_at or a different count. Such a symbol (a restatement, a correction, a re-landed date
file) has its whole history read apart, and every one of its bars replaced: in the months they
start in, and in the months its old bars were in (per symbol, the checkpoint's ``spans``: first
and last bar start). Anything else this path cannot vouch for — a vanished symbol, a month file
missing or changed since the checkpoint, a checkpoint without spans, other options, ``rows``
alignment — makes the run take the full-read path, which recomputes everything and rewrites the
months whose content changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import bars
from condvest.core.bars import BarAlignment, BarOptions
from condvest.core.calendar import TradingCalendar
from condvest.core.schema import SILVER_SCHEMA
from condvest.jobs.base import JobContext
from condvest.jobs.bronze import SymbolFiles
from condvest.jobs.resample.checkpoint import Checkpoint
from condvest.jobs.resample.reader import BronzeInput, read_bronze_tail
from condvest.jobs.resample.scan import BronzeReader
from condvest.state.bronze_tails import read_tails
from condvest.storage.base import ObjectInfo

log = logging.getLogger("condvest.resample")
_NO_FETCH = np.iinfo(np.int64).min


def bronze_state(
    src: BronzeInput, upto: int, *, days: np.ndarray | None = None
) -> dict[str, list[int | None]]:
    """Per symbol: [rows dated ``upto`` or earlier, their newest fetched_at ms (None if none)].
    ``days``: the rows' day numbers when the caller has them already."""
    if not src.symbols:
        return {}
    if days is None:
        days = np.asarray(src.table.column("date").cast(pa.int32()).to_numpy(), dtype=np.int64)
    fetched = bars.filled_numpy(src.table.column("fetched"), 0, np.int64)
    old = days <= upto
    starts = np.concatenate([[0], np.cumsum(src.counts)[:-1]])
    count = np.add.reduceat(old, starts, dtype=np.int64)
    top = np.maximum.reduceat(np.where(old, fetched, _NO_FETCH), starts)
    return {
        s: [int(c), int(t) if c else None]
        for s, c, t in zip(src.symbols, count.tolist(), top.tolist(), strict=True)
    }


def advance_state(
    state: dict[str, list[Any]], src: BronzeInput, after: int, upto: int
) -> dict[str, list[int | None]]:
    """``state`` (rows dated ``after`` or earlier) plus the rows of ``src`` in (after, upto]."""
    out: dict[str, list[int | None]] = {s: list(v) for s, v in state.items()}
    new = bronze_state(src, upto)
    before = bronze_state(src, after)
    for symbol, (count, top) in new.items():
        added = int(count or 0) - int(before[symbol][0] or 0)
        if added <= 0:
            continue
        was = out.get(symbol, [0, None])
        tops = [t for t in (was[1], top) if t is not None]
        out[symbol] = [int(was[0] or 0) + added, max(tops) if tops else None]
    return out


def cutoffs(calendar: TradingCalendar, through: date, intervals: tuple[int, ...]) -> dict[int, int]:
    """Per interval N: day number of b_N, the start of the bar holding the first session after
    ``through``."""
    first = calendar.next_session(through)
    assert first is not None
    index = calendar.session_index(first)
    return {n: bars.day_number(calendar.session_at(index // n * n)) for n in intervals}


def why_not_tail(
    checkpoints: dict[int, Checkpoint],
    existing: dict[int, dict[str, ObjectInfo]],
    alignment: BarAlignment,
    through: date,
) -> str:
    """Why the tail path cannot be used ('' when it can), before reading anything."""
    if alignment is not BarAlignment.CALENDAR:
        return "rows alignment"
    throughs = {c.through for c in checkpoints.values()}
    if len(throughs) != 1:
        return "intervals were last resampled through different sessions"
    if any(c.bronze is None for c in checkpoints.values()):
        return "checkpoint has no bronze state"
    if next(iter(throughs)) > through:
        return "the checkpoint is ahead of the latest completed session"
    for n, checkpoint in checkpoints.items():
        now = {label: obj.version for label, obj in existing[n].items()}
        if now != checkpoint.month_versions:
            return f"{n}d month files differ from the checkpoint"
    return ""


@dataclass(frozen=True)
class TailRead:
    """The rows dated from the cutoff, and the symbol directories whose rows on or before the
    checkpoint's ``through`` changed (a restatement, a correction: read in full apart)."""

    bronze: BronzeInput
    changed: tuple[str, ...]
    bytes_read: int = 0
    """The bronze files read: the tail scan's and the unmerged older date files'."""


def read_tail(
    ctx: JobContext,
    listing: dict[str, SymbolFiles],
    state: dict[str, list[Any]],
    previous: date,
    since: int,
    workers: int,
) -> TailRead | str:
    """The rows dated ``since`` or later and the symbols whose older rows changed, or why the
    tail path cannot be used."""
    upto = bars.day_number(previous)
    for name in state:
        if name not in listing:
            return f"symbol {name} has no bronze files any more"
    old_dates = [
        (name, bars.day_number(day), obj)
        for name, files in listing.items()
        for day, obj in files.dates.items()
        if bars.day_number(day) <= upto
    ]
    d0 = min((d for _, d, _ in old_dates), default=upto + 1)
    settings = ctx.settings.resample
    tail = read_bronze_tail(
        ctx.storage,
        listing,
        workers,
        since=since,
        upto=upto,
        d0=d0,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
        tails=read_tails(ctx.storage),
    )
    # Date files dated `previous` or earlier that are not merged into data.parquet yet count
    # among the older rows too (they were, or now are, part of the merged input).
    unmerged = [
        (name, day, obj)
        for name, day, obj in old_dates
        if (data := listing[name].data) is None
        or obj.mtime >= data.mtime
        or day not in tail.held.get(name, set())
    ]
    extra = _unmerged_summary(ctx, unmerged, tail.held, workers)
    changed: list[str] = []
    for name in listing:
        count, top = tail.old.get(name, (0, None))
        add, add_top = extra.get(name, (0, None))
        tops = [t for t in (top, add_top) if t is not None]
        now = [count + add, max(tops) if tops else None]
        was = state.get(name, [0, None])
        if now != [was[0], was[1]]:
            changed.append(name)  # restated or corrected: its whole history is read
    if any(s not in listing for s in tail.bronze.symbols):
        return "a symbol directory holds another symbol's rows"
    size = tail.bronze.bytes_read + sum(obj.size for _, _, obj in unmerged)
    return TailRead(tail.bronze, tuple(sorted(changed)), size)


def _unmerged_summary(
    ctx: JobContext,
    unmerged: list[tuple[str, int, ObjectInfo]],
    held: dict[str, set[int]],
    workers: int,
) -> dict[str, tuple[int, int | None]]:
    """Per symbol directory: (rows the unmerged date files add — days data.parquet does not
    hold —, their newest fetched_at). The newest fetched_at of a (data + landed) day is its
    winner's, so the merged rows' newest is the max over both."""
    if not unmerged:
        return {}
    reader = BronzeReader(ctx.storage, workers=workers)
    rows = reader.read([obj.key for _, _, obj in unmerged], optional=True)
    days = rows.table.column("date").cast(pa.int32()).to_numpy().tolist()
    fetched = pc.fill_null(rows.table.column("fetched"), 0).to_numpy().tolist()
    added: dict[str, set[int]] = {}
    tops: dict[str, int] = {}
    for owner, day, ms in zip(rows.owner.tolist(), days, fetched, strict=True):
        name = unmerged[owner][0]
        if day not in held.get(name, set()):
            added.setdefault(name, set()).add(day)
        tops[name] = max(tops.get(name, ms), ms)
    return {name: (len(added.get(name, ())), top) for name, top in tops.items()}


def tail_bars(
    daily: bars.DailyArrays,
    session_days: np.ndarray,
    positions: np.ndarray,
    opts: BarOptions,
    start_day: int,
) -> tuple[pa.Table, np.ndarray]:
    """Bars starting on or after ``start_day`` (the rows before it were not read)."""
    table, codes = bars.compute_bars(daily, session_days, positions, opts)
    keep = table.column("start_date").cast(pa.int32()).to_numpy() >= start_day
    if bool(keep.all()):
        return table, codes
    return table.filter(pa.array(keep)), codes[keep]


def bar_spans(table: pa.Table, codes: np.ndarray, symbols: tuple[str, ...]) -> dict[str, list[int]]:
    """Per symbol: [first, last] start day of its bars (``table`` sorted by code, start_date;
    ``codes`` index ``symbols``). Kept in the checkpoint: the months a restated symbol's old
    bars can be in, without reading every month."""
    if not len(codes):
        return {}
    firsts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    lasts = np.append(firsts[1:], len(codes)) - 1
    days = table.column("start_date").cast(pa.int32()).to_numpy()
    return {
        symbols[c]: [int(a), int(b)]
        for c, a, b in zip(
            codes[firsts].tolist(), days[firsts].tolist(), days[lasts].tolist(), strict=True
        )
    }


def advance_spans(
    spans: dict[str, list[int]], new: pa.Table, restated: frozenset[str]
) -> dict[str, list[int]]:
    """``spans`` after merging ``new`` (bars sorted by symbol, start_date): a restated symbol's
    span is its new bars' alone; any other's grows to cover them (a superset stays safe: a
    month read for nothing is left unwritten, its digest unchanged)."""
    out = {s: v for s, v in spans.items() if s not in restated}
    if not new.num_rows:
        return out
    symbols = pc.dictionary_encode(new.column("symbol")).combine_chunks()
    codes = symbols.indices.to_numpy()
    names = tuple(str(s) for s in symbols.dictionary.to_pylist())
    order = np.argsort(codes, kind="stable")
    got = bar_spans(new.take(pa.array(order)), codes[order], names)
    for symbol, (first, last) in got.items():
        was = out.get(symbol)
        out[symbol] = [min(first, was[0]), max(last, was[1])] if was else [first, last]
    return out


def span_months(spans: dict[str, list[int]], symbols: frozenset[str]) -> list[tuple[str, str]]:
    """The (first, last) month labels of the spans of ``symbols`` (those that have bars)."""
    out: list[tuple[str, str]] = []
    for symbol in sorted(symbols & set(spans)):
        keys = bars.month_keys(np.array(spans[symbol], dtype=np.int64)).tolist()
        out.append((bars.month_label(keys[0]), bars.month_label(keys[1])))
    return out


def merge_months(
    olds: list[pa.Table | None],
    new: pa.Table,
    where: dict[str, tuple[int, int]],
    labels: tuple[str, ...],
    replace_from: int,
    restated: frozenset[str],
) -> tuple[pa.Table, dict[str, tuple[int, int]], dict[str, str], int]:
    """Months ``labels`` merged: each month's existing bars (``olds[i]``: month ``labels[i]``'s
    file) starting before ``replace_from`` of symbols not in ``restated`` (whose every bar
    ``new`` holds), plus its new bars (month ``label``'s at rows ``where[label]`` of ``new``).
    All months at once: a split day touching every month costs a few array passes, not
    thousands of small ones. Returns the
    rows sorted by (month, symbol, start_date), each month's rows [a, b) and digest (the one
    the full path computes for such a month), and how many old rows were dropped."""
    parts = [old.cast(SILVER_SCHEMA) for old in olds if old is not None and old.num_rows]
    old_month = np.repeat(
        np.arange(len(labels), dtype=np.int32),
        [old.num_rows if old is not None else 0 for old in olds],
    )
    old = pa.concat_tables(parts) if parts else SILVER_SCHEMA.empty_table()
    del parts
    keep = old.column("start_date").cast(pa.int32()).to_numpy() < replace_from
    if restated:
        keep &= ~pc.is_in(old.column("symbol"), pa.array(sorted(restated))).to_numpy(
            zero_copy_only=False
        )
    new_month = np.repeat(
        np.arange(len(labels), dtype=np.int32), [b - a for a, b in (where[m] for m in labels)]
    )
    table = pa.concat_tables([old.filter(pa.array(keep)), new.cast(SILVER_SCHEMA)])
    month = np.concatenate([old_month[keep], new_month])
    dropped = len(keep) - int(np.count_nonzero(keep))
    del old
    # One int64 key per row — month, the symbol's rank among the names, start day — sorted by
    # numpy: the old months arrive in key order already, so the sort is near-linear (a
    # three-column Arrow sort on strings took ~1 s per interval on a split day).
    symbols = pc.dictionary_encode(table.column("symbol")).combine_chunks()
    names = tuple(str(x) for x in symbols.dictionary.to_pylist())
    rank = np.empty(len(names), dtype=np.int64)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names))
    codes = symbols.indices.to_numpy()
    day = table.column("start_date").cast(pa.int32()).to_numpy().astype(np.int64) + (1 << 17)
    key = (month.astype(np.int64) << 38) | (rank[codes] << 18) | day
    order = np.argsort(key, kind="stable")
    table, month, codes = table.take(pa.array(order)), month[order], codes[order]
    counts = np.bincount(month, minlength=len(labels))
    ends = np.cumsum(counts)
    slices = {m: (int(e - c), int(e)) for m, c, e in zip(labels, counts, ends, strict=True)}
    hashes = bars.row_hashes(table, codes, bars.symbol_hashes(names))
    filled = np.flatnonzero(counts)
    sums = bars.group_digests(hashes, (ends - counts)[filled]) if len(filled) else []
    digests = {labels[i]: f"{d}:{counts[i]}" for i, d in zip(filled.tolist(), sums, strict=True)}
    return table, slices, digests, dropped

"""The incremental (tail) plan of ``condvest resample``: when every interval's checkpoint proves
that no symbol's rows on or before its ``through`` changed, only the rows dated from the cutoff
are read (:mod:`condvest.jobs.resample.tail`), and the symbols whose older rows changed have
their whole history read the way the full read does. Also the helpers both plans share: the
session days, the bar options, and the month order of bars."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import bars
from condvest.core.bars import BarAlignment, BarOptions
from condvest.core.schema import SILVER_SCHEMA
from condvest.jobs.base import JobContext
from condvest.jobs.bronze import SymbolFiles
from condvest.jobs.resample import full as resample_full
from condvest.jobs.resample import tail as resample_tail
from condvest.jobs.resample.checkpoint import Checkpoint
from condvest.jobs.resample.plan import IntervalPlan, ResampleOptions, ResamplePlan
from condvest.storage.base import ObjectInfo

log = logging.getLogger("condvest.resample")


def session_days(ctx: JobContext) -> np.ndarray:
    """Day numbers of every session of the calendar."""
    return np.array([bars.day_number(d) for d in ctx.calendar.all_sessions()], dtype=np.int64)


def bar_options_of(
    ctx: JobContext, options: ResampleOptions, alignment: BarAlignment, through: date
) -> Callable[[int], BarOptions]:
    """Interval N → the options its bars are computed with."""

    def bar_options(n: int) -> BarOptions:
        return BarOptions(
            interval=n,
            alignment=alignment,
            latest_index=ctx.calendar.session_index(through),
            include_partial=options.include_partial,
            since_day=bars.day_number(options.since) if options.since else None,
        )

    return bar_options


def month_order(table: pa.Table) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """The row order grouping bars by start month — a stable sort keeps (symbol, start_date)
    order inside —, each month's first position in it, and each month's (start, end)."""
    months = bars.month_keys(table.column("start_date").cast(pa.int32()).to_numpy())
    if len(months) and months.min() >= -(2**15) and months.max() < 2**15:
        months = months.astype(np.int16)  # numpy's stable sort is a radix sort on 16 bits
    order = np.argsort(months, kind="stable")
    months = months[order]
    m_starts = (
        np.flatnonzero(np.concatenate([[True], months[1:] != months[:-1]]))
        if len(months)
        else np.zeros(0, np.int64)
    )
    m_ends = np.append(m_starts[1:], len(months))[: len(m_starts)]
    labels = [bars.month_label(int(k)) for k in months[m_starts]]
    slices = {lab: (int(a), int(b)) for lab, a, b in zip(labels, m_starts, m_ends, strict=True)}
    return order, m_starts, slices


def by_month(
    table: pa.Table,
) -> tuple[pa.Table, np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """:func:`month_order` applied: the bars sorted by month, the order, the month starts and
    slices (the tail path's tables are small; the full path keeps the order instead)."""
    order, m_starts, slices = month_order(table)
    return table.take(pa.array(order)), order, m_starts, slices


def plan_tail(
    ctx: JobContext,
    options: ResampleOptions,
    alignment: BarAlignment,
    through: date,
    listing: dict[str, SymbolFiles],
    checkpoints: dict[int, Checkpoint],
    existing: dict[int, dict[str, ObjectInfo]],
) -> ResamplePlan | None:
    """The incremental plan that reads only the tail of bronze (resample_tail) — and the whole
    history of the symbols whose older rows changed —, or None when it cannot be used (then
    everything is read)."""
    started = time.perf_counter()
    reason = resample_tail.why_not_tail(checkpoints, existing, alignment, through)
    got: Any = None
    first = next(iter(checkpoints.values()))
    previous, state0 = first.through, dict(first.bronze or {})
    workers = 4 if ctx.storage.local_path("") is not None else 32
    if not reason:
        starts = resample_tail.cutoffs(ctx.calendar, previous, tuple(checkpoints))
        got = resample_tail.read_tail(ctx, listing, state0, previous, min(starts.values()), workers)
        reason = got if isinstance(got, str) else ""
    if not reason and got.changed and any(c.spans is None for c in checkpoints.values()):
        reason = f"rows of {got.changed[0]} on or before {previous} changed (no bar spans)"
    days = session_days(ctx)
    bar_options = bar_options_of(ctx, options, alignment, through)
    restated = None
    if not reason and got.changed:
        restated = _read_restated(ctx, listing, got.changed, tuple(checkpoints), bar_options)
        reason = restated if isinstance(restated, str) else ""
    if reason:
        log.info("incremental run reads all of bronze: %s", reason)
        return None
    assert not isinstance(restated, str)
    source = got.bronze
    log.info("incremental run reads bronze from %s", bars.EPOCH + timedelta(min(starts.values())))
    if restated is not None:
        log.info("incremental run reads the whole history of %s", ", ".join(restated.symbols))
    daily = bars.daily_arrays(source.table, source.symbols, source.counts)
    positions = bars.session_positions(daily.day, days)
    state = resample_tail.advance_state(
        state0, source, bars.day_number(previous), bars.day_number(through)
    )
    if restated is not None:
        state.update(restated.state)  # their rows counted afresh, every one of them read
    plans = [
        _tail_interval(
            checkpoint,
            resample_tail.tail_bars(daily, days, positions, bar_options(n), starts[n]),
            daily.symbols,
            starts,
            n,
            existing[n],
            restated,
        )
        for n, checkpoint in checkpoints.items()
    ]
    return ResamplePlan(
        alignment=alignment,
        through=through,
        include_partial=options.include_partial,
        since=options.since,
        symbols=len(set(source.symbols) | set(restated.symbols if restated else ())),
        input_rows=source.table.num_rows + (restated.input_rows if restated else 0),
        files_read=source.files_read + (restated.files_read if restated else 0),
        bytes_read=got.bytes_read + (restated.bytes_read if restated else 0),
        data_files_from_index=source.from_index,
        off_calendar_rows=int(np.count_nonzero(positions < 0)),
        intervals=tuple(plans),
        compute_s=time.perf_counter() - started,
        bronze_state=state,
        full_history=restated.symbols if restated else (),
    )


def _read_restated(
    ctx: JobContext,
    listing: dict[str, SymbolFiles],
    changed: tuple[str, ...],
    intervals: tuple[int, ...],
    bar_options: Callable[[int], BarOptions],
) -> resample_full.FullBars | str:
    """Every bar of the symbol directories ``changed`` (their whole history read, the way the
    full read does), or why the tail path cannot be used."""
    settings = ctx.settings.resample
    sub = {name: listing[name] for name in changed}
    through = ctx.latest_completed_session()
    got = resample_full.read_and_compute(
        ctx.storage,
        resample_full.split_listing(sub, {}, settings.full_read_rows),
        intervals,
        bar_options,
        BarAlignment.CALENDAR,
        session_days(ctx),
        through,
        workers=4 if ctx.storage.local_path("") is not None else 32,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
    )
    if got.symbols != changed:
        return "a changed symbol's directory holds another symbol's rows"
    return got


def _tail_interval(
    checkpoint: Checkpoint,
    computed: tuple[pa.Table, np.ndarray],
    symbols: tuple[str, ...],
    starts: dict[int, int],
    n: int,
    existing: dict[str, ObjectInfo],
    restated: resample_full.FullBars | None,
) -> IntervalPlan:
    """Interval ``n``'s tail plan: the bars from its cutoff (``computed``) — for a restated
    symbol every bar instead — and the months they, or a restated symbol's old bars, are in."""
    table, codes = computed
    names = frozenset(restated.symbols) if restated is not None else frozenset()
    spans = None if checkpoint.spans is None else dict(checkpoint.spans)
    if restated is not None:
        drop = np.isin(codes, [i for i, s in enumerate(symbols) if s in names])
        table = pa.concat_tables(
            [
                table.filter(pa.array(~drop)).cast(SILVER_SCHEMA),
                restated.bars[n][0].cast(SILVER_SCHEMA),
            ]
        )
    table, _, _, slices = by_month(table)
    first_month = bars.month_label(int(bars.month_keys(np.array([starts[n]]))[0]))
    to_write = set(slices) | {m for m in existing if m >= first_month}
    for lo, hi in resample_tail.span_months(spans or {}, names):
        to_write |= {m for m in existing if lo <= m <= hi}  # the restated symbols' old bars
    return IntervalPlan(
        interval=n,
        mode="incremental",
        reason=f"bars from {bars.EPOCH + timedelta(days=starts[n])} (rows read from "
        f"{bars.EPOCH + timedelta(days=min(starts.values()))})"
        + (f"; every bar of {len(names)} symbols whose older rows changed" if names else ""),
        bars=table.num_rows,
        months_to_write=tuple(sorted(to_write)),
        months_to_delete=(),
        symbols_affected=tuple(sorted(map(str, pc.unique(table.column("symbol")).to_pylist()))),
        rows_to_write=table.num_rows,
        table=table,
        month_slices=slices,
        month_digests={},
        symbol_digests=dict(checkpoint.symbols),
        existing=existing,
        replace_from=starts[n],
        previous=checkpoint,
        symbol_spans=None if spans is None else resample_tail.advance_spans(spans, table, names),
        restated=names,
    )

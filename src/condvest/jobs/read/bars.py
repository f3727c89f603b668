"""``Lake.bars``: silver's complete bars, plus (``include_partial``) each symbol's trailing bar
whose window is not over, computed on the fly from the merged daily rows with the bar code
resample uses (:func:`condvest.core.bars.compute_bars`), in the alignment the interval was built
with. A bar is selected by its ``start_date``: ``[start, end]`` bounds the bars' start dates,
so only the month files of those months are read (silver is partitioned by start month)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import bars
from condvest.core.bars import BarAlignment, BarOptions
from condvest.core.schema import SILVER_SCHEMA
from condvest.errors import UsageError
from condvest.jobs.base import JobContext
from condvest.jobs.bronze import between
from condvest.jobs.read.tables import (
    built_intervals,
    check_range,
    read_daily,
    read_silver,
)


def check_interval(ctx: JobContext, interval: int) -> None:
    """``interval`` must be a built one: else an error naming the command that builds it."""
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise UsageError(f"--interval {interval!r} must be a whole number of sessions, >= 1")
    built = built_intervals(ctx.storage)
    if interval not in built:
        have = ", ".join(f"{n}" for n in built) or "none"
        raise UsageError(
            f"no {interval}-session bars in {ctx.settings.lake.uri} (built intervals: {have})",
            hint=f"build them with: condvest resample --intervals {interval}",
        )


def alignment_of(ctx: JobContext, interval: int) -> BarAlignment:
    """The alignment the interval's silver was built with (its checkpoint), else the setting."""
    from condvest.jobs.resample import recorded  # resample's DuckDB stays out of read's import

    try:
        return BarAlignment(str(recorded(ctx.storage, interval, "alignment")))
    except ValueError:
        return BarAlignment(str(ctx.settings.resample.alignment.value))


def read_bars(
    ctx: JobContext,
    interval: int,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
    include_partial: bool,
) -> pa.Table:
    check_range(start, end)
    check_interval(ctx, interval)
    table = read_silver(ctx.storage, interval, symbols, start, end)
    if table.num_rows and not pc.all(table.column("complete")).as_py():
        # built with resample --include-partial: its trailing bars are recomputed below
        table = table.filter(table.column("complete"))
    if not include_partial:
        return table
    partial = between(partial_bars(ctx, interval, symbols), "start_date", start, end)
    if not partial.num_rows:
        return table
    out = pa.concat_tables([table, partial])
    return out.sort_by([("symbol", "ascending"), ("start_date", "ascending")])


def partial_bars(ctx: JobContext, interval: int, symbols: Sequence[str] | None) -> pa.Table:
    """Each symbol's trailing bar that is not complete yet (SILVER_SCHEMA, by symbol)."""
    alignment = alignment_of(ctx, interval)
    cal = ctx.calendar
    through = ctx.latest_completed_session()
    latest = cal.session_index(through)
    # Calendar bars are windows of sessions: the open one starts at its window's first
    # session. Row bars count each symbol's rows from its first, so they need the history.
    since = (
        cal.session_at(latest // interval * interval)
        if alignment is BarAlignment.CALENDAR
        else None
    )
    daily = read_daily(ctx, symbols, since, None, None)
    if not daily.num_rows:
        return SILVER_SCHEMA.empty_table()
    computed = bars_of(ctx, daily, interval, alignment, latest, include_partial=True)
    return computed.filter(pc.invert(computed.column("complete")))


def bars_of(
    ctx: JobContext,
    daily: pa.Table,
    interval: int,
    alignment: BarAlignment,
    latest: int,
    *,
    include_partial: bool,
) -> pa.Table:
    """SILVER_SCHEMA bars of ``daily`` (sorted by symbol, date), computed with resample's bar
    code in ``alignment``; ``latest`` is the index of the latest completed session."""
    if not daily.num_rows:
        return SILVER_SCHEMA.empty_table()
    names, counts = _runs(daily.column("symbol"))
    arrays = bars.daily_arrays(daily, names, counts)
    session_days = np.array(
        [bars.day_number(d) for d in ctx.calendar.all_sessions()], dtype=np.int64
    )
    positions = (
        bars.row_numbers(arrays.code)
        if alignment is BarAlignment.ROWS
        else bars.session_positions(arrays.day, session_days)
    )
    options = BarOptions(interval, alignment, latest, include_partial=include_partial)
    computed, _ = bars.compute_bars(arrays, session_days, positions, options)
    return computed.cast(SILVER_SCHEMA)


def _runs(column: pa.ChunkedArray) -> tuple[tuple[str, ...], np.ndarray]:
    """The symbols of a column sorted by symbol, and how many rows each has."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    codes = encoded.indices.to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    counts = np.diff(np.append(starts, len(codes)))
    names = tuple(str(s) for s in encoded.dictionary.take(pa.array(codes[starts])).to_pylist())
    return names, counts.astype(np.int64)


__all__ = ["alignment_of", "bars_of", "check_interval", "partial_bars", "read_bars"]

"""The read modes (docs/corporate-actions.md): ``Lake.daily`` / ``Lake.bars`` with ``adjust=`` and
``as_of=``, and the ``factors`` table, all through :mod:`condvest.core.factors`.

A read in the mode the lake stores, without ``as_of``, is the plain read (the stored rows as
they are, silver as resample wrote it). Any other read takes the merged daily rows, the landed
splits and dividends, computes the factors as of ``as_of`` and applies them; bars in such a
mode are computed from those rows with resample's bar code (:func:`condvest.core.bars.
compute_bars`), in the alignment the interval was built with."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.bars import BarAlignment
from condvest.core.calendar import ORIGIN
from condvest.core.factors import (
    AdjustMode,
    PriceScale,
    adjust,
    events_of,
    factor_table,
    skipped_dividends,
    stored_mode,
)
from condvest.core.schema import BRONZE_COLUMNS, BRONZE_SCHEMA
from condvest.errors import UsageError
from condvest.jobs.context import JobContext, today_ny
from condvest.jobs.read.tables import (
    check_columns,
    check_range,
    read_daily,
    read_dividends,
    read_splits,
)
from condvest.state.marker import recorded_price_scale

log = logging.getLogger("condvest.read")
_CLOSES = ["symbol", "date", "close"]


def check_mode(value: AdjustMode | str) -> AdjustMode:
    """``adjust=`` / ``--adjust``: one of split, raw, total_return (else one UsageError line)."""
    if isinstance(value, AdjustMode):
        return value
    try:
        return AdjustMode(str(value))
    except ValueError:
        known = ", ".join(m.value for m in AdjustMode)
        raise UsageError(f"--adjust {value!r} is not one of {known}") from None


def check_as_of(ctx: JobContext, value: date | None) -> date | None:
    """``as_of`` must lie between the calendar's first session and today (New York)."""
    if value is None:
        return None
    if value < ORIGIN:
        raise UsageError(
            f"--as-of {value.isoformat()} is before {ORIGIN.isoformat()}, the first session known"
        )
    today = today_ny(ctx)
    if value > today:
        raise UsageError(
            f"--as-of {value.isoformat()} is in the future (today is {today.isoformat()})",
            hint="as_of is the day the series is seen from: today or earlier",
        )
    return value


def price_scale(ctx: JobContext) -> PriceScale:
    """The lake's stored scale, from its marker (one read: every read mode needs it)."""
    return recorded_price_scale(ctx.storage)


def read_events(ctx: JobContext, symbols: Sequence[str] | None = None) -> pa.Table:
    """Every landed action as one event per (symbol, ex-date) (of ``symbols`` when given)."""
    events = events_of(read_splits(ctx), read_dividends(ctx))
    if symbols is not None:
        events = events.filter(pc.is_in(events.column("symbol"), pa.array(list(symbols))))
    return events


def read_factors(ctx: JobContext, symbols: Sequence[str] | None = None) -> pa.Table:
    """The factors of every event (``Lake.factors``, the ``factors`` SQL view), as of now: the
    previous closes come from the daily rows of the symbols with a dividend."""
    events = read_events(ctx, symbols)
    paying = pc.unique(events.filter(pc.greater(events["dividend_cash"], 0.0))["symbol"])
    names = paying.to_pylist()
    closes = read_daily(ctx, names, None, None, _CLOSES) if names else _no_closes()
    return factor_table(events, closes, price_scale(ctx))


def _no_closes() -> pa.Table:
    return BRONZE_SCHEMA.empty_table().select(_CLOSES)


def read_daily_adjusted(
    ctx: JobContext,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
    columns: Sequence[str] | None,
    mode: AdjustMode | str,
    as_of: date | None,
) -> pa.Table:
    """``read_daily`` in ``mode`` as of ``as_of``: rows after it left out, only the actions
    with an ex-date on or before it applied."""
    chosen = check_mode(mode)
    as_of = check_as_of(ctx, as_of)
    check_range(start, end)
    wanted = check_columns(columns, BRONZE_COLUMNS)
    scale = price_scale(ctx)
    if as_of is None and chosen is stored_mode(scale):
        return read_daily(ctx, symbols, start, end, wanted)
    table = _adjusted(ctx, symbols, start, end, chosen, as_of, scale)
    return table.select(wanted) if wanted is not None else table


def _adjusted(
    ctx: JobContext,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
    mode: AdjustMode,
    as_of: date | None,
    scale: PriceScale,
) -> pa.Table:
    last = end if as_of is None else (as_of if end is None else min(end, as_of))
    if start is not None and last is not None and start > last:
        return BRONZE_SCHEMA.empty_table()
    daily = read_daily(ctx, symbols, start, last, None)
    if not daily.num_rows:
        return daily
    events = read_events(ctx, pc.unique(daily["symbol"]).to_pylist())
    closes = _no_closes()
    if mode is AdjustMode.TOTAL_RETURN:
        # A factor that moves a row in [start, last] has its previous close in [start, as_of]
        # (the row itself is before the ex-date): only a read ending before as_of reads more.
        if last == as_of or (as_of is None and end is None):
            closes = daily.select(_CLOSES)
        else:
            paying = events.filter(pc.greater(events["dividend_cash"], 0.0))
            names = pc.unique(paying["symbol"]).to_pylist()
            if names:
                closes = read_daily(ctx, names, start, as_of, _CLOSES)
    factors = factor_table(events, closes, scale, as_of)
    skipped = skipped_dividends(factors)
    if mode is AdjustMode.TOTAL_RETURN and skipped.num_rows:
        first = skipped.slice(0, 1).to_pylist()[0]
        log.warning(
            "%d dividend(s) not applied: the cash is not below the previous close "
            "(e.g. %s on %s: %s against %s)",
            skipped.num_rows,
            first["symbol"],
            first["date"],
            first["dividend_cash"],
            first["prev_close"],
        )
    return adjust(daily, factors, mode)


def read_bars_adjusted(
    ctx: JobContext,
    interval: int,
    symbols: Sequence[str] | None,
    start: date | None,
    end: date | None,
    include_partial: bool,
    mode: AdjustMode | str,
    as_of: date | None,
) -> pa.Table:
    """``read_bars`` in ``mode`` as of ``as_of``: in the stored mode without ``as_of`` silver
    as written; else bars computed from :func:`read_daily_adjusted`'s rows, complete when their
    window ended by ``as_of`` (and by the latest completed session)."""
    from condvest.jobs.read.bars import alignment_of, bars_of, check_interval, read_bars

    chosen = check_mode(mode)
    as_of = check_as_of(ctx, as_of)
    check_range(start, end)
    scale = price_scale(ctx)
    if as_of is None and chosen is stored_mode(scale):
        return read_bars(ctx, interval, symbols, start, end, include_partial)
    check_interval(ctx, interval)
    alignment = alignment_of(ctx, interval)
    cal = ctx.calendar
    through = ctx.latest_completed_session()
    if as_of is not None and as_of < through:
        through = as_of if cal.is_session(as_of) else (cal.previous_session(as_of) or ORIGIN)
    latest = cal.session_index(through)
    # calendar bars starting in [start, end] need rows from start to the end of end's window;
    # row bars count each symbol's rows from its first, so they need the whole history
    since = start if alignment is BarAlignment.CALENDAR else None
    daily = read_daily_adjusted(ctx, symbols, since, as_of, None, chosen, as_of)
    table = bars_of(ctx, daily, interval, alignment, latest, include_partial=include_partial)
    keep = pc.less_equal(table["start_date"], pa.scalar(through, pa.date32()))
    if start is not None:
        keep = pc.and_(keep, pc.greater_equal(table["start_date"], pa.scalar(start, pa.date32())))
    if end is not None:
        keep = pc.and_(keep, pc.less_equal(table["start_date"], pa.scalar(end, pa.date32())))
    return table.filter(keep)


__all__ = [
    "check_as_of",
    "check_mode",
    "price_scale",
    "read_bars_adjusted",
    "read_daily_adjusted",
    "read_events",
    "read_factors",
]

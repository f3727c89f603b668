"""The daily fetch's sessions (the backfill planner) and the watermark they advance.

* The watermark is the *contiguous frontier*: every expected session up to it has a fetch-log
  entry. It only ever moves forward (``advance_watermark`` is monotonic).
* A gap larger than ``max_backfill_days``: the most recent N sessions are fetched (fresh data
  keeps flowing), the older ones are reported with the exact ``condvest fetch --start A --end B``
  that fills them, and the run exits 1. The watermark stays below the gap, so every later run
  reports it again until it is filled — nothing is ever skipped silently."""

from __future__ import annotations

from datetime import date
from typing import Any

from condvest.core.calendar import TradingCalendar
from condvest.errors import UsageError
from condvest.jobs.context import JobContext
from condvest.jobs.fetch.model import DailyPlan, FetchOptions, Gap, estimate_s, pacing
from condvest.state.fetchlog import advance_watermark, landed_sessions, read_watermark


def _explicit_sessions(cal: TradingCalendar, opts: FetchOptions, latest: date) -> list[date]:
    if opts.day is not None:
        if opts.start or opts.end:
            raise UsageError("--date cannot be combined with --start/--end")
        if not cal.is_session(opts.day):
            raise UsageError(
                f"--date {opts.day} is not a {cal.exchange} trading session",
                hint="pick a weekday that is not an exchange holiday",
            )
        days = [opts.day]
    else:
        if opts.start is None:
            raise UsageError("--end needs --start", hint="e.g. --start 2025-01-02 --end 2025-01-31")
        end = opts.end or latest
        if end < opts.start:
            raise UsageError(f"--start {opts.start} is after --end {end}")
        days = cal.sessions_between(opts.start, end)
    late = [d for d in days if d > latest]
    if late:
        raise UsageError(
            f"{late[0]} has not completed yet (latest completed session is {latest})",
            hint="sessions can be fetched once their close has passed in New York",
        )
    return days


def _gap_of(days: list[date]) -> Gap:
    return Gap(
        days[0],
        days[-1],
        len(days),
        f"condvest fetch --start {days[0].isoformat()} --end {days[-1].isoformat()}",
    )


def _window(
    ctx: JobContext, opts: FetchOptions, watermark: date | None, latest: date, landed: set[date]
) -> list[date]:
    """The sessions the run considers: the ones asked for, else those after the watermark."""
    if opts.day or opts.start or opts.end:
        return _explicit_sessions(ctx.calendar, opts, latest)
    if watermark is None:
        # A fresh lake (or one without a watermark): start from the newest landed session, or
        # just the latest completed one — history comes from --history / --start.
        newest = max(landed) if landed else None
        return ctx.calendar.sessions_between(newest, latest)[1:] if newest else [latest]
    return ctx.calendar.sessions_between(watermark, latest)[1:]


def plan_daily(ctx: JobContext, opts: FetchOptions, base: dict[str, Any]) -> DailyPlan:
    """The sessions to land: the window less those landed (unless --force), the newest
    ``max_backfill_days`` of them when the window is not explicit."""
    s = ctx.settings
    latest: date = base["latest_completed"]
    source: str = base["source"]
    landed = landed_sessions(ctx.storage)
    window = _window(ctx, opts, base["watermark"], latest, landed)
    todo = window if opts.force else [d for d in window if d not in landed]
    notes: list[str] = []
    gap = None
    limit = opts.max_backfill_days or s.fetch.max_backfill_days
    if not (opts.day or opts.start) and len(todo) > limit:
        gap = _gap_of(todo[:-limit])
        todo = todo[-limit:]
        notes.append(
            f"{gap.sessions} older missing session(s) {gap.start}..{gap.end} exceed "
            f"max_backfill_days={limit} and are NOT fetched by this run; fill them with: "
            f"{gap.command}"
        )
    if opts.symbols:
        notes.append("--symbols: only these symbols are written; the fetch log is not updated")
    if s.fetch.backfill_new_symbols:
        per = estimate_s(2, s.polygon.requests_per_minute) if source == "polygon" else 0.0
        notes.append(
            "fetch.backfill_new_symbols is on: each symbol first seen costs one more request "
            f"(~{per:.0f}s at the configured rate) for {s.fetch.history_years} years of history"
        )
    requests = len(todo) + (2 if todo else 0)  # + one splits, one dividends request (paged)
    return DailyPlan(
        sessions=todo,
        skipped_landed=len(window) - len(todo),
        gap=gap,
        requests=requests,
        estimated_s=estimate_s(requests, pacing(ctx, source)),
        force=opts.force,
        notes=notes,
        **base,
    )


def contiguous_frontier(
    cal: TradingCalendar, landed: set[date], watermark: date | None, latest: date
) -> date | None:
    """The newest session S such that every session after the watermark up to S is landed."""
    if not landed:
        return watermark
    start = watermark if watermark is not None else min(landed)
    frontier = watermark
    for day in cal.sessions_between(start, latest):
        if watermark is not None and day == watermark:
            continue
        if day not in landed:
            break
        frontier = day
    return frontier


def finish_watermark(ctx: JobContext) -> date | None:
    """Advance the watermark to the contiguous frontier (never backwards)."""
    current = read_watermark(ctx.storage)
    frontier = contiguous_frontier(
        ctx.calendar, landed_sessions(ctx.storage), current, ctx.latest_completed_session()
    )
    if frontier is not None and (current is None or frontier > current):
        return advance_watermark(ctx.storage, frontier, run_id=ctx.run_id)
    return current

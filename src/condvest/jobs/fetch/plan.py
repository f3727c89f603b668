"""``condvest fetch`` (docs/design.md §5): plan the missing sessions, land them, restate split
symbols.

Decisions an operator should know (also in docs/commands/fetch.md):

* The watermark is the *contiguous frontier*: every expected session up to it has a fetch-log
  entry. It only ever moves forward (``advance_watermark`` is monotonic).
* A gap larger than ``max_backfill_days``: the most recent N sessions are fetched (fresh data
  keeps flowing), the older ones are reported with the exact ``condvest fetch --start A --end B``
  that fills them, and the run exits 1. The watermark stays below the gap, so every later run
  reports it again until it is filled — nothing is ever skipped silently.
* A session that comes back empty (not published yet, or an unscheduled closure) or that lands
  no accepted row / far fewer than the recent sessions is a *failed* session: not recorded, so
  the watermark stays below it, status lists it missing with the reason, and every run asks
  again (``calendar.closures_file`` marks a real closure).
* ``--symbols`` restricts what is written; such a partial landing is not recorded in the fetch
  log and does not move the watermark (the session is not complete for the universe).
* Sessions are independent: a failed one does not block the later ones; three failures in a row
  stop the run (the source is likely down) and leave the rest for the next run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

from condvest.core.calendar import TradingCalendar
from condvest.core.validate import Bounds
from condvest.errors import UsageError
from condvest.jobs.base import Failure, JobContext, JobResult, run_stage, to_jsonable
from condvest.progress import format_s
from condvest.settings import SourceKind
from condvest.sources import open_source
from condvest.state.fetchlog import (
    advance_watermark,
    landed_sessions,
    read_watermark,
)
from condvest.state.marker import require_price_scale

log = logging.getLogger("condvest.jobs.fetch")
STAGE = "fetch"
FetchMode = Literal["daily", "history", "meta", "corporate_actions"]
STOP_MARGIN_S = 60.0
"""Stop before a Lambda deadline with this much time left (one session takes seconds)."""


@dataclass(frozen=True)
class FetchOptions:
    """What the command line asked for (None = use the setting / the default)."""

    day: date | None = None
    """--date"""
    start: date | None = None
    end: date | None = None
    max_backfill_days: int | None = None
    symbols: list[str] | None = None
    force: bool = False
    history: bool = False
    meta: bool = False
    corporate_actions: bool = False
    """--corporate-actions: backfill splits and dividends over [start, end]."""


@dataclass(frozen=True)
class Gap:
    """Sessions the planner did not fetch this run, and the command that fills them."""

    start: date
    end: date
    sessions: int
    command: str


@dataclass(frozen=True)
class FetchPlan:
    mode: FetchMode
    source: str
    sessions: list[date]
    """Sessions to fetch (daily mode), oldest first."""
    skipped_landed: int
    """Sessions in the window already in the fetch log (re-fetched only with --force)."""
    gap: Gap | None
    symbols: list[str] | None
    history_start: date | None
    history_end: date | None
    requests: int
    """Requests the plan needs at least (pagination may add more)."""
    estimated_s: float
    """At the configured pacing; 0 when unpaced."""
    watermark: date | None
    latest_completed: date
    force: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        # readable next to the seconds: a free-plan history of 500 symbols takes ~1h40m
        out["estimated"] = format_s(self.estimated_s)
        return out


@dataclass(frozen=True)
class FetchResult(JobResult):
    mode: str = "daily"
    source: str = ""
    partial: bool = False
    sessions_planned: int = 0
    sessions: list[date] = field(default_factory=list)
    """Sessions landed (with rows)."""
    empty_sessions: list[date] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Session date or symbol → error."""
    requests: int = 0
    retries: int = 0
    rows: int = 0
    symbols: int = 0
    new_symbols: int = 0
    quarantined: int = 0
    files: int = 0
    bytes: int = 0
    splits: int = 0
    dividends: int = 0
    """Dividends landed (distinct vendor ids in the answers, after --symbols)."""
    corporate_actions: dict[str, int] = field(default_factory=dict)
    """--corporate-actions: splits, dividends, quarantined, windows."""
    restated: list[str] = field(default_factory=list)
    symbols_missing: list[str] = field(default_factory=list)
    """--symbols the source delivered no bar for (in any landed session / the history range)."""
    gap: Gap | None = None
    watermark: date | None = None
    sink_errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def stage_failures(self) -> tuple[Failure, ...]:
        failed = tuple(Failure(key, error) for key, error in self.failed.items())
        return failed + tuple(Failure("", error) for error in self.sink_errors)


# -- planning ---------------------------------------------------------------------------------
def estimate_s(requests: int, per_minute: int) -> float:
    return 0.0 if per_minute <= 0 else max(0, requests - 1) * 60.0 / per_minute


def paced_per_s(ctx: JobContext, source: str) -> float | None:
    """Requests per second at the configured pacing, for a progress ETA (None: unpaced)."""
    rpm = ctx.settings.polygon.requests_per_minute
    return rpm / 60.0 if source == SourceKind.POLYGON.value and rpm > 0 else None


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


def plan_fetch(ctx: JobContext, opts: FetchOptions) -> FetchPlan:
    """Build the plan the real run executes and ``--dry-run`` prints (reads state only)."""
    s = ctx.settings
    latest = ctx.latest_completed_session()
    watermark = read_watermark(ctx.storage)
    source = s.fetch.source.value
    base: dict[str, Any] = dict(
        source=source, watermark=watermark, latest_completed=latest, symbols=opts.symbols
    )
    if sum((opts.history, opts.meta, opts.corporate_actions)) > 1:
        raise UsageError(
            "--history, --meta and --corporate-actions are separate runs; pass one of them"
        )
    if not opts.meta:  # prices of one scale never land in a lake of the other
        require_price_scale(ctx.storage, s.polygon.adjusted)
    if opts.corporate_actions:
        from condvest.jobs.fetch.dividends import plan_corporate_actions

        return plan_corporate_actions(ctx, opts, base)
    if opts.history or opts.meta:
        from condvest.jobs.fetch.history import plan_history, plan_meta

        return plan_history(ctx, opts, base) if opts.history else plan_meta(ctx, opts, base)
    landed = landed_sessions(ctx.storage)
    notes: list[str] = []
    gap = None
    if opts.day or opts.start or opts.end:
        window = _explicit_sessions(ctx.calendar, opts, latest)
    elif watermark is None:
        # A fresh lake (or one without a watermark): start from the newest landed session, or
        # just the latest completed one — history comes from --history / --start.
        newest = max(landed) if landed else None
        window = ctx.calendar.sessions_between(newest, latest)[1:] if newest else [latest]
    else:
        window = ctx.calendar.sessions_between(watermark, latest)[1:]
    todo = window if opts.force else [d for d in window if d not in landed]
    skipped = len(window) - len(todo)
    limit = opts.max_backfill_days or s.fetch.max_backfill_days
    explicit = bool(opts.day or opts.start)
    if not explicit and len(todo) > limit:
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
    rpm = s.polygon.requests_per_minute if source == SourceKind.POLYGON.value else 0
    return FetchPlan(
        mode="daily",
        sessions=todo,
        skipped_landed=skipped,
        gap=gap,
        history_start=None,
        history_end=None,
        requests=requests,
        estimated_s=estimate_s(requests, rpm),
        force=opts.force,
        notes=notes,
        **base,
    )


# -- running ----------------------------------------------------------------------------------
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


def run_fetch(ctx: JobContext, plan: FetchPlan) -> FetchResult:
    """Execute ``plan`` under the fetch stage lock, recording the run."""
    return run_stage(ctx, STAGE, lambda _lock: _execute(ctx, plan))


def _execute(ctx: JobContext, plan: FetchPlan) -> FetchResult:
    started = time.monotonic()
    source = open_source(ctx.settings, ctx.calendar, symbols=plan.symbols)
    try:
        if plan.mode == "daily":
            from condvest.jobs.fetch.daily import run_daily

            result = run_daily(ctx, plan, source)
        elif plan.mode == "history":
            from condvest.jobs.fetch.history import run_history

            result = run_history(ctx, plan, source)
        elif plan.mode == "corporate_actions":
            from condvest.jobs.fetch.dividends import run_corporate_actions

            result = run_corporate_actions(ctx, plan, source)
        else:
            from condvest.jobs.fetch.history import run_meta

            result = run_meta(ctx, plan, source)
    finally:
        source.close()
    return replace(
        result,
        requests=source.requests,
        retries=source.retries,
        duration_s=round(time.monotonic() - started, 3),
    )


def finish_watermark(ctx: JobContext) -> date | None:
    """Advance the watermark to the contiguous frontier (never backwards)."""
    current = read_watermark(ctx.storage)
    frontier = contiguous_frontier(
        ctx.calendar, landed_sessions(ctx.storage), current, ctx.latest_completed_session()
    )
    if frontier is not None and (current is None or frontier > current):
        return advance_watermark(ctx.storage, frontier, run_id=ctx.run_id)
    return current


def today_ny(ctx: JobContext) -> date:
    from condvest.core.calendar import NEW_YORK

    return ctx.now().astimezone(NEW_YORK).date()


def row_bounds(ctx: JobContext) -> Bounds:
    """The configured sanity ceilings of row validation."""
    f = ctx.settings.fetch
    return Bounds(f.max_price, f.max_volume, f.max_transactions)


def fetched_at_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def fail_result(ctx: JobContext, plan: FetchPlan, **fields: Any) -> FetchResult:
    return FetchResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=False,
        duration_s=0.0,
        mode=plan.mode,
        source=plan.source,
        **fields,
    )

"""``condvest fetch`` (docs/commands/fetch.md, docs/design.md): the stage's plan and execution.

The options pick the mode, and each mode plans its own frozen plan type
(:mod:`condvest.jobs.fetch.model`): daily sessions (:mod:`~condvest.jobs.fetch.backfill`,
landed by :mod:`~condvest.jobs.fetch.daily`), ``--history`` (:mod:`~condvest.jobs.fetch.history`),
``--meta`` (:mod:`~condvest.jobs.fetch.metadata`) and ``--corporate-actions``
(:mod:`~condvest.jobs.fetch.dividends`). Executing a plan opens the source and hands the plan to
its mode.

Decisions an operator should know (also in docs/commands/fetch.md):

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

import time
from dataclasses import replace
from typing import Any

from condvest.errors import UsageError
from condvest.jobs.base import Job, run_planned
from condvest.jobs.context import JobContext
from condvest.jobs.fetch.backfill import plan_daily
from condvest.jobs.fetch.daily import run_daily
from condvest.jobs.fetch.dividends import plan_corporate_actions, run_corporate_actions
from condvest.jobs.fetch.history import plan_history, run_history
from condvest.jobs.fetch.metadata import plan_meta, run_meta
from condvest.jobs.fetch.model import (
    STAGE,
    CorporateActionsPlan,
    DailyPlan,
    FetchOptions,
    FetchPlan,
    FetchResult,
    HistoryPlan,
)
from condvest.sources import open_source
from condvest.state.fetchlog import read_watermark
from condvest.state.marker import require_price_scale


def plan_fetch(ctx: JobContext, opts: FetchOptions) -> FetchPlan:
    """Build the plan the real run executes and ``--dry-run`` prints (reads state only)."""
    s = ctx.settings
    base: dict[str, Any] = dict(
        source=s.fetch.source.value,
        watermark=read_watermark(ctx.storage),
        latest_completed=ctx.latest_completed_session(),
        symbols=opts.symbols,
    )
    if sum((opts.history, opts.meta, opts.corporate_actions)) > 1:
        raise UsageError(
            "--history, --meta and --corporate-actions are separate runs; pass one of them"
        )
    if not opts.meta:  # prices of one scale never land in a lake of the other
        require_price_scale(ctx.storage, s.polygon.adjusted)
    if opts.corporate_actions:
        return plan_corporate_actions(ctx, opts, base)
    if opts.history:
        return plan_history(ctx, opts, base)
    if opts.meta:
        return plan_meta(ctx, opts, base)
    return plan_daily(ctx, opts, base)


def execute_fetch(ctx: JobContext, plan: FetchPlan) -> FetchResult:
    """Open the source, land what ``plan`` says, and count the requests it took."""
    started = time.monotonic()
    source = open_source(ctx.settings, ctx.calendar, symbols=plan.symbols)
    try:
        if isinstance(plan, DailyPlan):
            result = run_daily(ctx, plan, source)
        elif isinstance(plan, HistoryPlan):
            result = run_history(ctx, plan, source)
        elif isinstance(plan, CorporateActionsPlan):
            result = run_corporate_actions(ctx, plan, source)
        else:
            result = run_meta(ctx, plan, source)
    finally:
        source.close()
    return replace(
        result,
        requests=source.requests,
        retries=source.retries,
        duration_s=round(time.monotonic() - started, 3),
    )


FETCH: Job[FetchOptions, FetchPlan, FetchResult] = Job(STAGE, plan_fetch, execute_fetch)
"""``condvest fetch`` (every mode but ``--sync-db``, which is :data:`DB_SYNC`)."""


def run_fetch(ctx: JobContext, plan: FetchPlan) -> FetchResult:
    """Execute a plan made beforehand under the fetch lock, recording the run."""
    return run_planned(ctx, FETCH, plan)

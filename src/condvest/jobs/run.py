"""``condvest run``: the daily pipeline in one process — fetch → consolidate → resample
(→ vacuum when asked) — stopping at the first failed stage. This is what cron calls.

The pipeline holds its own ``run`` lock (two runs at once: the second is refused) and each stage
still takes its own stage lock and writes its own run record, exactly as when run alone."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from condvest.errors import CondvestError
from condvest.jobs.base import Failure, JobContext, JobResult, run_stage

STAGE = "run"
_STAGES = ("fetch", "consolidate", "resample", "vacuum")


@dataclass(frozen=True)
class RunOptions:
    vacuum: bool = False
    """Also run vacuum after resample."""


@dataclass(frozen=True)
class RunPlan:
    stages: tuple[str, ...]
    """The stages to run, in order. Each stage is planned when its turn comes, after the
    previous one ran (planning them all up front would be wrong and would double the work)."""


@dataclass(frozen=True)
class RunResult(JobResult):
    stages_run: list[str] = field(default_factory=list)
    failed_stage: str | None = None
    partial: bool = False
    error: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    """One line per stage run: ok, partial, duration (the text rendering shows this)."""
    results: dict[str, Any] = field(default_factory=dict)
    """Each stage's full result (JSON output)."""

    def counts(self) -> dict[str, Any]:
        out = super().counts()
        for stage, body in self.results.items():
            out[f"{stage}_ok"] = bool(body.get("ok"))
            out[f"{stage}_duration_s"] = body.get("duration_s")
        return out

    def stage_failures(self) -> tuple[Failure, ...]:
        return (Failure("", self.error),) if self.error else ()


def _stage_jobs(ctx: JobContext) -> dict[str, tuple[Callable[[], Any], Callable[[Any], JobResult]]]:
    from condvest.jobs.consolidate import ConsolidateOptions, plan_consolidate, run_consolidate
    from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
    from condvest.jobs.resample import ResampleOptions, plan_resample, run_resample
    from condvest.jobs.vacuum import VacuumOptions, plan_vacuum, run_vacuum

    return {
        "fetch": (lambda: plan_fetch(ctx, FetchOptions()), lambda p: run_fetch(ctx, p)),
        "consolidate": (
            lambda: plan_consolidate(ctx, ConsolidateOptions()),
            lambda p: run_consolidate(ctx, p),
        ),
        "resample": (
            lambda: plan_resample(ctx, ResampleOptions()),
            lambda p: run_resample(ctx, p),
        ),
        "vacuum": (
            lambda: plan_vacuum(ctx, VacuumOptions()),
            lambda p: run_vacuum(ctx, p),
        ),
    }


def plan_run(ctx: JobContext, options: RunOptions) -> RunPlan:
    """The stages to run."""
    return RunPlan(tuple(s for s in _STAGES if s != "vacuum" or options.vacuum))


def preview_run(ctx: JobContext, plan: RunPlan) -> dict[str, Any]:
    """--dry-run: each stage's plan on the lake as it is now (later stages will also see what
    the earlier ones land, so the preview under-counts their work)."""
    jobs = _stage_jobs(ctx)
    previews: dict[str, Any] = {}
    for stage in plan.stages:
        stage_plan = jobs[stage][0]()
        previews[stage] = (
            stage_plan.to_dict() if hasattr(stage_plan, "to_dict") else _plain(stage_plan)
        )
    return previews


def _plain(plan: Any) -> Any:
    from condvest.jobs.base import to_jsonable

    return to_jsonable(plan)


def run_run(ctx: JobContext, plan: RunPlan) -> RunResult:
    """Execute the stages in order under the ``run`` lock; stop at the first failure."""
    return run_stage(ctx, STAGE, lambda _lock: _execute(ctx, plan))


def _execute(ctx: JobContext, plan: RunPlan) -> RunResult:
    started = time.monotonic()
    jobs = _stage_jobs(ctx)
    results: dict[str, Any] = {}
    ran: list[str] = []
    failed: str | None = None
    partial = False
    error: str | None = None
    for stage in plan.stages:
        make_plan, execute = jobs[stage]
        ran.append(stage)
        try:
            # Planned afresh: each stage sees what the previous one landed.
            result = execute(make_plan())
        except CondvestError as exc:
            failed, error = stage, f"{stage}: {exc}"
            results[stage] = {"ok": False, "error": str(exc)}
            break
        body = result.to_dict()
        results[stage] = body
        if not result.ok:
            failed, error = stage, f"{stage} failed (see its result)"
            break
        if body.get("partial"):
            partial = True
            break
    lines = [
        {
            "stage": name,
            "ok": bool(body.get("ok")),
            "partial": bool(body.get("partial", False)),
            "duration_s": body.get("duration_s"),
            "error": body.get("error"),
        }
        for name, body in results.items()
    ]
    return RunResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=failed is None,
        duration_s=round(time.monotonic() - started, 3),
        stages_run=ran,
        failed_stage=failed,
        partial=partial,
        error=error,
        stages=lines,
        results=results,
    )

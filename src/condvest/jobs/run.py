"""``condvest run``: the daily pipeline in one process — fetch → consolidate → resample
(→ vacuum when asked) — stopping at the first failed stage. This is what cron calls.

The pipeline holds its own ``run`` lock (two runs at once: the second is refused) and each stage
still takes its own stage lock and writes its own run record, exactly as when run alone."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from condvest.errors import CondvestError
from condvest.jobs.base import Failure, Job, JobResult, run_job, run_planned
from condvest.jobs.consolidate import CONSOLIDATE, ConsolidateOptions
from condvest.jobs.context import JobContext
from condvest.jobs.fetch import FETCH, FetchOptions
from condvest.jobs.resample import RESAMPLE, ResampleOptions
from condvest.jobs.vacuum import VACUUM, VacuumOptions

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

    def to_dict(self) -> dict[str, Any]:
        return {"stages": list(self.stages)}


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


def _stage_jobs() -> dict[str, tuple[Job[Any, Any, Any], Any]]:
    """Each stage's job and the options ``run`` gives it (the settings' defaults)."""
    return {
        "fetch": (FETCH, FetchOptions()),
        "consolidate": (CONSOLIDATE, ConsolidateOptions()),
        "resample": (RESAMPLE, ResampleOptions()),
        "vacuum": (VACUUM, VacuumOptions()),
    }


def plan_run(ctx: JobContext, options: RunOptions) -> RunPlan:
    """The stages to run."""
    return RunPlan(tuple(s for s in _STAGES if s != "vacuum" or options.vacuum))


def preview_run(ctx: JobContext, plan: RunPlan) -> dict[str, Any]:
    """--dry-run: each stage's plan on the lake as it is now (later stages will also see what
    the earlier ones land, so the preview under-counts their work)."""
    jobs = _stage_jobs()
    return {
        stage: run_job(ctx, jobs[stage][0], jobs[stage][1], dry_run=True).plan.to_dict()
        for stage in plan.stages
    }


def _preview(ctx: JobContext, plan: RunPlan) -> dict[str, Any]:
    return {"dry_run": True, "stages": list(plan.stages), "plans": preview_run(ctx, plan)}


def run_run(ctx: JobContext, plan: RunPlan) -> RunResult:
    """Execute the stages in order under the ``run`` lock; stop at the first failure."""
    return run_planned(ctx, RUN, plan)


def _execute(ctx: JobContext, plan: RunPlan) -> RunResult:
    started = time.monotonic()
    jobs = _stage_jobs()
    results: dict[str, Any] = {}
    ran: list[str] = []
    failed: str | None = None
    partial = False
    error: str | None = None
    for stage in plan.stages:
        job, options = jobs[stage]
        ran.append(stage)
        try:
            # Planned afresh: each stage sees what the previous one landed.
            result = run_job(ctx, job, options)
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


RUN: Job[RunOptions, RunPlan, RunResult] = Job(STAGE, plan_run, _execute, preview=_preview)
"""``condvest run``: its own ``run`` lock around the stages, each under its own lock."""

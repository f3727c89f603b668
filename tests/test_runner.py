"""The one runner (jobs.base.run_job): a dry run plans and writes nothing; a real run plans, then
executes under the stage lock and records the run; a lock-first stage (resample) plans under its
lock, so a second run is refused before computing anything, and a planning failure is a
recorded failed run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

import condvest.jobs.resample.job as resample_job
from condvest.errors import LockHeldError, SourceError
from condvest.jobs.base import Job, JobResult, run_job
from condvest.jobs.context import JobContext
from condvest.jobs.fetch import FETCH, FetchOptions
from condvest.jobs.resample import RESAMPLE, ResampleOptions
from condvest.state.lock import StageLock, read_lock
from condvest.state.runs import last_runs
from conftest import Lake

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # after the 2026-11-25 close


@dataclass(frozen=True)
class _Plan:
    locked_while_planning: bool

    def to_dict(self) -> dict[str, Any]:
        return {"locked_while_planning": self.locked_while_planning}


def _probe(lock_first: bool, fail: bool = False) -> Job[None, _Plan, JobResult]:
    """A job whose plan notes whether the resample lock was held while it planned."""

    def plan(ctx: JobContext, options: None) -> _Plan:
        if fail:
            raise SourceError("planning broke")
        return _Plan(read_lock(ctx.storage, "resample") is not None)

    def execute(ctx: JobContext, plan: _Plan) -> JobResult:
        assert ctx.lock is not None and read_lock(ctx.storage, "resample") is not None
        return JobResult("resample", ctx.run_id, False, plan.locked_while_planning, 0.0)

    return Job("resample", plan, execute, lock_first=lock_first)


def test_dry_run_plans_takes_no_lock_and_writes_nothing(lake: Lake) -> None:
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 3})
    before = {o.key for o in lake.storage.list_objects("")}
    dry = run_job(ctx, FETCH, FetchOptions(start=date(2026, 11, 2)), dry_run=True)
    assert dry.dry_run and dry.stage == "fetch" and dry.plan.sessions[0] == date(2026, 11, 2)
    assert dry.to_dict() == {"dry_run": True, **dry.plan.to_dict()}
    assert {o.key for o in lake.storage.list_objects("")} == before
    probe = run_job(ctx, _probe(lock_first=True), None, dry_run=True)
    assert probe.plan.locked_while_planning is False  # a dry run never locks


def test_lock_first_plans_under_the_lock_others_before_it(local_lake: Lake) -> None:
    ctx = local_lake.context(now=NOW)
    assert run_job(ctx, _probe(lock_first=True), None).ok  # planned while locked
    assert not run_job(ctx, _probe(lock_first=False), None).ok  # planned before the lock
    assert ctx.lock is None and read_lock(local_lake.storage, "resample") is None
    assert RESAMPLE.lock_first and not FETCH.lock_first


def test_a_planning_failure_under_the_lock_is_a_recorded_failed_run(local_lake: Lake) -> None:
    ctx = local_lake.context(now=NOW)
    with pytest.raises(SourceError):
        run_job(ctx, _probe(lock_first=True, fail=True), None)
    record = last_runs(local_lake.storage, ("resample",))["resample"]
    assert (
        record is not None and record.outcome == "failed" and "planning broke" in str(record.error)
    )
    assert read_lock(local_lake.storage, "resample") is None  # released


def test_held_resample_lock_refuses_before_planning(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resample's plan reads and computes every bar: with the lock held elsewhere the run is
    refused before reading bronze at all."""

    def no_reading(*_: object) -> None:
        raise AssertionError("resample planned while another run held its lock")

    holder = StageLock(local_lake.storage, "resample", run_id="other-run")
    holder.acquire()
    try:
        monkeypatch.setattr(resample_job, "list_bronze", no_reading)
        with pytest.raises(LockHeldError):
            run_job(local_lake.context(now=NOW), RESAMPLE, ResampleOptions(intervals=(3,)))
    finally:
        holder.release()

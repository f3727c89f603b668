"""``condvest run``: the whole pipeline offline (synthetic source) on local disk and S3; stops at
the first failed stage; a second run while one holds the lock is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from condvest.errors import LockHeldError
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.run import RunOptions, plan_run, run_run
from condvest.jobs.status.job import check_failed, run_status
from condvest.state.lock import StageLock
from conftest import Lake

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # after the 2026-11-25 close


def _seed(lake: Lake) -> None:
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 6})
    plan = plan_fetch(ctx, FetchOptions(start=date(2026, 9, 1), end=date(2026, 11, 24)))
    assert run_fetch(ctx, plan).ok


def test_pipeline_builds_bronze_and_silver(lake: Lake) -> None:
    _seed(lake)
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 6})
    plan = plan_run(ctx, RunOptions(vacuum=True))
    assert plan.stages == ("fetch", "consolidate", "resample", "vacuum")
    result = run_run(ctx, plan)
    assert result.ok, result.to_dict()
    assert result.stages_run == ["fetch", "consolidate", "resample", "vacuum"]
    assert [line["stage"] for line in result.stages] == result.stages_run
    assert result.results["fetch"]["sessions"] == ["2026-11-25"]
    status = run_status(lake.context(now=NOW))
    assert not check_failed(status), status.problems
    assert status.bronze["pending_date_files"] == 0
    assert all(view["months"] > 0 for view in status.silver.values())
    assert status.runs["run"]["outcome"] == "success"
    # Re-running finds nothing to do and still succeeds.
    again = run_run(ctx, plan_run(ctx, RunOptions()))
    assert again.ok and again.results["fetch"]["sessions"] == []


def test_pipeline_stops_at_the_first_failed_stage(lake: Lake) -> None:
    _seed(lake)
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 6})
    # A consolidate run holding its lock makes the consolidate stage fail.
    held = StageLock(lake.storage, "consolidate", run_id="someone-else", ttl_s=600)
    held.acquire()
    try:
        result = run_run(ctx, plan_run(ctx, RunOptions()))
    finally:
        held.release()
    assert not result.ok and result.exit_code == 1
    assert result.failed_stage == "consolidate"
    assert result.stages_run == ["fetch", "consolidate"]
    assert "someone-else" in (result.results["consolidate"]["error"] or "")
    status = run_status(lake.context(now=NOW))
    assert status.runs["run"]["outcome"] == "failed"


def test_second_run_is_refused_while_one_holds_the_lock(local_lake: Lake) -> None:
    ctx = local_lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 3})
    held = StageLock(local_lake.storage, "run", run_id="eventbridge-retry", ttl_s=600)
    held.acquire()
    with pytest.raises(LockHeldError, match="eventbridge-retry"):
        run_run(ctx, plan_run(ctx, RunOptions()))
    held.release()
    assert run_run(ctx, plan_run(ctx, RunOptions())).ok


def test_dry_run_previews_every_stage_and_changes_nothing(lake: Lake) -> None:
    from condvest.jobs.run import preview_run

    _seed(lake)
    before = {(o.key, o.size) for o in lake.storage.list_objects("")}
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": 6})
    plan = plan_run(ctx, RunOptions(vacuum=True))
    previews = preview_run(ctx, plan)
    assert list(previews) == ["fetch", "consolidate", "resample", "vacuum"]
    assert previews["fetch"]["sessions"] == ["2026-11-25"]
    assert {(o.key, o.size) for o in lake.storage.list_objects("")} == before

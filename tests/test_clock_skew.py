"""A host clock in the past (issue 13 item 4): the lake holds sessions the clock says have not
completed yet. Every writing command refuses with one line and writes nothing (resample once
deleted 7 of 21 month files that "should not exist yet"); status reports it."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import cli_proc
from condvest.errors import UsageError
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.jobs.run import RunOptions, plan_run, run_run
from condvest.jobs.status.job import run_status
from condvest.jobs.vacuum.job import VacuumOptions, plan_vacuum, run_vacuum
from condvest.state.fetchlog import advance_watermark
from conftest import Lake, LakeCopy, at, make_local_lake

NOW = at("2025-06-27T22:00:00Z")  # a Friday after the close
PAST = at("2025-05-30T22:00:00Z")  # the host clock four weeks behind
SYNTHETIC = {"fetch": {"source": "synthetic", "synthetic_symbols": 5}}


def _ctx(lake: Lake, now: Any) -> Any:
    return lake.context(now=now, **SYNTHETIC)


def _snapshot(lake: Lake) -> dict[str, tuple[int, Any]]:
    return {o.key: (o.size, o.mtime) for o in lake.storage.list_objects("")}


STAGES: dict[str, Callable[[Any], Any]] = {
    "fetch": lambda ctx: run_fetch(ctx, plan_fetch(ctx, FetchOptions())),
    "consolidate": lambda ctx: run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions())),
    "resample": lambda ctx: run_resample(ctx, plan_resample(ctx, ResampleOptions())),
    "vacuum": lambda ctx: run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions())),
    "run": lambda ctx: run_run(ctx, plan_run(ctx, RunOptions())),
}


_BUILT: dict[str, LakeCopy] = {}  # one built lake per backend and worker, copied per test


@pytest.fixture
def built(lake: Lake) -> Lake:
    """Four months fetched, consolidated and resampled with the right clock (built once, then
    restored into each test's own empty lake with the same bytes and modification times)."""
    if lake.kind in _BUILT:
        return _BUILT[lake.kind].restore(lake)
    ctx = _ctx(lake, NOW)
    assert run_fetch(ctx, plan_fetch(ctx, FetchOptions(start=date(2025, 3, 3)))).ok
    for stage in ("consolidate", "resample"):
        assert STAGES[stage](_ctx(lake, NOW)).ok
    _BUILT[lake.kind] = LakeCopy.of(lake)
    return lake


@pytest.mark.parametrize("stage", list(STAGES))
def test_writing_commands_refuse_a_lake_ahead_of_the_clock(built: Lake, stage: str) -> None:
    before = _snapshot(built)
    with pytest.raises(UsageError, match="the clock is behind") as err:
        STAGES[stage](_ctx(built, PAST))
    assert "2025-06-27" in str(err.value) and "nothing was written" in str(err.value)
    assert _snapshot(built) == before  # no lock, no run record, no month deleted


def test_status_reports_the_skew(built: Lake) -> None:
    health = run_status(_ctx(built, PAST))
    assert not health.healthy
    assert any("the clock is behind" in p for p in health.problems)
    assert run_status(_ctx(built, NOW)).healthy  # the same lake with the right clock


def test_cli_refuses_with_one_line(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    advance_watermark(lake.storage, date(2028, 12, 28), run_id="future")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env |= lake.env() | {"CONDVEST_FETCH__SOURCE": "synthetic"}
    before = _snapshot(lake)
    for args in (["resample"], ["vacuum"], ["consolidate"], ["fetch"]):
        out = cli_proc.run(args, env=env, timeout=120)
        assert out.returncode == 2, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "2028-12-28" in lines[0] and "clock" in lines[0], lines
    assert _snapshot(lake) == before
    status = cli_proc.run(["status", "--check"], env=env, timeout=120)
    assert status.returncode == 1 and "the clock is behind" in status.stdout

"""Crash suite (docs/design.md §10, issue 8): fetch, consolidate, resample, vacuum and ``run`` are
each SIGKILLed at many points — before the Nth storage mutation, for N spread over the whole run —
then re-run, and the lake must equal one an uninterrupted run produced: identical bronze rows,
identical bronze files, identical silver month files, no lost row, and no orphan except temp files
that ``condvest status`` reports and vacuum removes. On local disk and the S3 server.

The kill uses the test-only generic hook ``CONDVEST_TEST_KILL_AFTER_WRITES`` (condvest.faults).
A killed run's lease still holds its stage lock, long before it expires: the re-run takes it over
at once because the holder provably died on this machine (same boot and PID namespace, no process
with its PID and start time; condvest.state.lock) — exactly what the next cron run does after an
OOM kill. The re-run would fail with "already running" otherwise; a holder on another machine is
only taken over after the expiry (tests/test_concurrency.py).
Kill points tried per stage and backend are printed at the end of the session (conftest)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import cli_proc
import condvest.faults as faults
from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.jobs.base import JobResult
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.jobs.run import RunOptions, plan_run, run_run
from condvest.jobs.status.job import run_status
from condvest.jobs.vacuum.job import VacuumOptions, plan_vacuum, run_vacuum
from condvest.state import landed_sessions, read_manifest, read_watermark
from condvest.state.lock import holder_is_dead, read_lock
from condvest.storage import Storage
from conftest import Lake, make_local_lake, make_s3_lake, moto_copy_prefix
from consolidate_helpers import all_rows

pytestmark = pytest.mark.slow

SIZE = {"local": (20, 45), "s3": (6, 30)}
"""(symbols, sessions back) per backend: every moto request costs ~10 ms on this machine, so the
S3 lake is smaller (still past the consolidate retention, so its cleanup is exercised)."""


def _settings(kind: str) -> dict[str, dict[str, Any]]:
    return {
        "fetch": {
            "source": "synthetic",
            "synthetic_symbols": SIZE[kind][0],
            "write_concurrency": 2,
        },
        "consolidate": {"workers": 2},
    }


def _env(kind: str) -> dict[str, str]:
    return {
        "CONDVEST_FETCH__SOURCE": "synthetic",
        "CONDVEST_FETCH__SYNTHETIC_SYMBOLS": str(SIZE[kind][0]),
        "CONDVEST_FETCH__WRITE_CONCURRENCY": "2",
        "CONDVEST_CONSOLIDATE__WORKERS": "2",
    }


POINTS = {"local": 6, "s3": 3}
"""Kill points per stage: spread evenly over the run's storage mutations (first and last
included). Each point costs a condvest process and a re-run (~3-5 s here)."""


def _sessions(kind: str) -> tuple[list[date], list[date]]:
    """(base: ~40 sessions locally, new: the 3 after them, ending 2 sessions before the latest
    completed one, so ``run`` has 2 + 1 to fetch). Relative to today: runs on any date."""
    cal = get_calendar()
    last = cal.session_index(cal.latest_completed_session(datetime.now(UTC)))
    days = [cal.session_at(i) for i in range(last - SIZE[kind][1], last - 1)]
    return days[:-3], days[-3:]


@dataclass(frozen=True)
class Stage:
    name: str
    cli: Callable[[list[date]], list[str]]
    job: Callable[[Lake, list[date]], JobResult]
    prepare: Callable[[Lake, list[date], list[date]], None]


def _ctx(lake: Lake, **extra: Any) -> Any:
    return lake.context(**{**_settings(lake.kind), **extra})


def _fetch(lake: Lake, days: list[date]) -> JobResult:
    ctx = _ctx(lake)
    return run_fetch(ctx, plan_fetch(ctx, FetchOptions(start=days[0], end=days[-1])))


def _consolidate(lake: Lake, _days: list[date]) -> JobResult:
    ctx = _ctx(lake)
    return run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions()))


def _resample(lake: Lake, _days: list[date]) -> JobResult:
    ctx = _ctx(lake)
    return run_resample(ctx, plan_resample(ctx, ResampleOptions()))


VACUUM_DAYS = 20


def _vacuum(lake: Lake, _days: list[date]) -> JobResult:
    ctx = _ctx(lake)
    return run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(retention_days=VACUUM_DAYS)))


def _run(lake: Lake, _days: list[date]) -> JobResult:
    ctx = _ctx(lake)
    return run_run(ctx, plan_run(ctx, RunOptions(vacuum=True)))


def _prep_fetched(lake: Lake, base: list[date], _new: list[date]) -> None:
    assert _fetch(lake, base).ok


def _prep_consolidated(lake: Lake, base: list[date], new: list[date]) -> None:
    _prep_fetched(lake, base, new)
    # keep every date file (vacuum then has old, merged files to remove)
    ctx = _ctx(lake)
    assert run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(retention_days=365))).ok


def _prep_resample(lake: Lake, base: list[date], new: list[date]) -> None:
    _prep_fetched(lake, base, new)
    assert _consolidate(lake, base).ok


STAGES = {
    "fetch": Stage(
        "fetch",
        lambda d: ["fetch", "--start", str(d[0]), "--end", str(d[-1])],
        _fetch,
        _prep_fetched,
    ),
    "consolidate": Stage("consolidate", lambda d: ["consolidate"], _consolidate, _prep_fetched),
    "resample": Stage("resample", lambda d: ["resample"], _resample, _prep_resample),
    "vacuum": Stage(
        "vacuum",
        lambda d: ["vacuum", "--retention-days", str(VACUUM_DAYS)],
        _vacuum,
        _prep_consolidated,
    ),
    "run": Stage("run", lambda d: ["run", "--vacuum"], _run, _prep_resample),
}


# -- lake copies ----------------------------------------------------------------------------
class Lakes:
    """Fresh copies of one built base lake, on local disk or under new S3 prefixes."""

    def __init__(self, kind: str, tmp: Path, endpoint: str | None) -> None:
        self.kind, self.tmp, self.endpoint = kind, tmp, endpoint
        self.base = self.make("base")

    def make(self, name: str) -> Lake:
        if self.kind == "local":
            return make_local_lake(self.tmp / name)
        return make_s3_lake(self.endpoint or "", "condvest-test", name)

    def copy(self, name: str) -> Lake:
        target = self.make(name)
        if self.kind == "local":
            shutil.copytree(self.tmp / "base", self.tmp / name)
            return target
        copied = moto_copy_prefix("condvest-test", "base/", f"{name}/")
        assert copied == len(self.base.storage.list_objects(""))
        return target


# -- what must be equal -----------------------------------------------------------------------
def bronze_rows(storage: Storage) -> dict[tuple[str, date], tuple[Any, ...]]:
    """Every (symbol, date)'s newest row in data.parquet or a date file, fetched_at aside (it is
    the wall-clock time of the fetch)."""
    return {
        key: tuple(v for k, v in row.items() if k != "fetched_at")
        for key, row in all_rows(storage).items()
    }


def silver_rows(storage: Storage) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for obj in storage.list_objects(layout.SILVER + "/"):
        if layout.parse_silver_file(obj.key) and not layout.is_temp_key(obj.key):
            rows = storage.read_parquet(obj.key).to_pylist()
            out[obj.key] = sorted(tuple(r.values()) for r in rows)
    return out


_RUN_NAMED = (layout.RUNS_PREFIX, layout.BRONZE_QUARANTINE + "/", layout.BRONZE_META + "/")
"""Keys that embed a run id or a wall-clock time: never equal between two runs."""


def durable_keys(storage: Storage) -> set[str]:
    return {
        o.key
        for o in storage.list_objects("")
        if not layout.is_temp_key(o.key) and not o.key.startswith(_RUN_NAMED)
    }


@dataclass
class View:
    bronze: dict[tuple[str, date], tuple[Any, ...]]
    silver: dict[str, list[tuple[Any, ...]]]
    keys: set[str]
    state: tuple[Any, ...]
    """Watermark, landed sessions, and each symbol's manifest row (row count, dates)."""


def view(lake: Lake) -> View:
    storage = lake.storage
    manifest = {
        s: (r.row_count, r.first_date, r.last_consolidated_date)
        for s, r in read_manifest(storage)[0].items()
    }
    state = (read_watermark(storage), sorted(landed_sessions(storage)), manifest)
    return View(bronze_rows(storage), silver_rows(storage), durable_keys(storage), state)


# -- the sweep --------------------------------------------------------------------------------
def kill_at(lake: Lake, args: list[str], n: int) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(lake.env() | _env(lake.kind) | {faults.WRITES_ENV: str(n)})
    proc = cli_proc.run(args, env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, f"kill point {n} not reached: {proc.stderr}"
    return proc.returncode


def dead_holders(lake: Lake) -> list[str]:
    """The locks the killed run left behind, each held by a process that no longer exists and
    still within its lease (so only the dead-holder takeover can hand it to the re-run)."""
    held = []
    for obj in lake.storage.list_objects(layout.LOCKS_PREFIX):
        if layout.is_temp_key(obj.key):
            continue  # the killed write of a lock: an orphan temp file, checked later
        name = obj.key[len(layout.LOCKS_PREFIX) : -len(".json")]
        holder = read_lock(lake.storage, name)
        assert holder is not None and holder.pid != os.getpid()
        assert holder.expires > datetime.now(UTC), "the lease expired: the test proves nothing"
        assert holder_is_dead(holder), f"{name}: the killed run's lock does not read as dead"
        held.append(name)
    return held


def check_recovered(lake: Lake, ref: View, rows_before: set[tuple[str, date]]) -> None:
    got = view(lake)
    assert rows_before <= set(got.bronze), "a row of the lake before the run was lost"
    assert got.bronze == ref.bronze
    assert got.silver == ref.silver
    assert got.state == ref.state
    assert got.keys == ref.keys, (sorted(got.keys - ref.keys)[:5], sorted(ref.keys - got.keys)[:5])
    # Orphans: only temp files of the killed write, all reported by status, all vacuumed.
    temps = [o.key for o in lake.storage.list_objects("") if layout.is_temp_key(o.key)]
    status = run_status(lake.context())
    reported = status.bronze["temp_files"] + status.bronze["temp_files_elsewhere"]
    assert reported == len(temps), (temps, status.bronze)
    if temps:
        ctx = lake.context(vacuum={"temp_grace_hours": 0})
        assert run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions())).ok
        assert not [o for o in lake.storage.list_objects("") if layout.is_temp_key(o.key)]


def sweep(
    stage: Stage, lakes: Lakes, base: list[date], new: list[date], kind: str
) -> tuple[str, str, int, int]:
    """Kills ``stage`` at points over its run; returns (stage, backend, kill points, writes)."""
    stage.prepare(lakes.base, base, new)
    rows_before = set(bronze_rows(lakes.base.storage))
    ref_lake = lakes.copy("reference")
    before = faults.writes()
    assert stage.job(ref_lake, new).ok
    total = faults.writes() - before
    ref = view(ref_lake)
    wanted = POINTS[kind]
    points = sorted({1 + round(i * (total - 1) / (wanted - 1)) for i in range(wanted)})
    for n in points:
        lake = lakes.copy(f"kill-{n}")
        kill_at(lake, stage.cli(new), n)
        stale = dead_holders(lake)
        result = stage.job(lake, new)  # takes the dead run's lock over, no waiting
        assert result.ok, (n, result.to_dict())
        for name in stale:
            assert read_lock(lake.storage, name) is None  # taken over, then released
        check_recovered(lake, ref, rows_before)
    return stage.name, kind, len(points), total


@pytest.mark.parametrize("stage", list(STAGES))
def test_crash_local(stage: str, tmp_path: Path, record_property: Any) -> None:
    base, new = _sessions("local")
    swept = sweep(STAGES[stage], Lakes("local", tmp_path, None), base, new, "local")
    record_property("crash_points", swept)  # summed up by conftest


@pytest.mark.parametrize("stage", list(STAGES))
def test_crash_s3(
    stage: str, tmp_path: Path, moto_endpoint: str, s3_bucket: str, record_property: Any
) -> None:
    base, new = _sessions("s3")
    swept = sweep(STAGES[stage], Lakes("s3", tmp_path, moto_endpoint), base, new, "s3")
    record_property("crash_points", swept)

"""Two ``condvest run`` processes at once (docs/design.md §10: the EventBridge retry + a manual
run): one proceeds, the other exits 1 naming the holder and writes nothing; a lock left by a
SIGKILLed run is refused until it expires, then taken over (logged), and the lake ends as an
uninterrupted run leaves it. Local disk and the S3 server. Deterministic: the first run is held at a
storage write by the test-only pause hook (condvest.faults) while the second starts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import cli_proc
from condvest import faults
from condvest.core import layout
from condvest.state.lock import read_lock
from conftest import Lake, make_local_lake, make_s3_lake
from test_crash_suite import SIZE, _fetch, _sessions, view

pytestmark = pytest.mark.slow

ENV = {"CONDVEST_FETCH__SOURCE": "synthetic", "CONDVEST_LOCK__TTL_SECONDS": "10"}


def _env(lake: Lake, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    # The universe _seed landed: a run that saw far fewer symbols would rightly fail its
    # sessions (fetch.min_session_fraction).
    size = {"CONDVEST_FETCH__SYNTHETIC_SYMBOLS": str(SIZE[lake.kind][0])}
    return env | lake.env() | ENV | size | (extra or {})


def run_cli(lake: Lake, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli_proc.run(["run"], env=_env(lake, extra), timeout=300)


def _twin(lake: Lake, tmp_path: Path, name: str) -> Lake:
    if lake.kind == "local":
        return make_local_lake(tmp_path / name)
    return make_s3_lake(lake.endpoint_url or "", "condvest-test", name)


def _seed(lake: Lake) -> None:
    base, _ = _sessions("s3")  # small: 6 symbols (the lakes here use the s3 size)
    assert _fetch(lake, base[:10]).ok


def _reference(lake: Lake, tmp_path: Path) -> object:
    ref = _twin(lake, tmp_path, "reference")
    _seed(ref)
    done = run_cli(ref)
    assert done.returncode == 0, done.stderr
    return view(ref)


def _wait_for_pause(release: Path, proc: Any) -> None:
    """Until the first run waits before its 3rd write (the hook then creates
    ``<release>.paused``): its lock and run record are written, and the lake stays still."""
    deadline = time.monotonic() + 120
    while not Path(f"{release}.paused").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never reached its 3rd write"
        time.sleep(0.1)


def test_two_runs_at_once_one_proceeds(lake: Lake, tmp_path: Path) -> None:
    _seed(lake)
    release = tmp_path / "release"
    # Write 1 is the run lock, 2 its run record: the first run waits before its 3rd write.
    first = cli_proc.start(["run"], env=_env(lake, {faults.PAUSE_ENV: f"3:{release}"}))
    try:
        _wait_for_pause(release, first)
        holder = read_lock(lake.storage, "run")
        assert holder is not None and holder.pid == first.pid
        before = {o.key for o in lake.storage.list_objects("")}
        second = run_cli(lake)
        assert second.returncode == 1, second.stderr
        refusal = [line for line in second.stderr.splitlines() if "already running" in line]
        assert refusal, second.stderr
        assert holder.run_id in refusal[0] and f"pid {first.pid}" in refusal[0]
        assert {o.key for o in lake.storage.list_objects("")} == before  # wrote nothing
    finally:
        release.touch()
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert read_lock(lake.storage, "run") is None


def test_lock_of_a_run_killed_on_this_machine_is_taken_over_at_once(
    lake: Lake, tmp_path: Path
) -> None:
    ref = _reference(lake, tmp_path)
    _seed(lake)
    killed = run_cli(lake, {faults.WRITES_ENV: "4"})  # lock, run record, then mid-fetch
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    holder = read_lock(lake.storage, "run")
    assert holder is not None and holder.expires > datetime.now(UTC)
    # The lease has not expired, but its holder provably died on this machine (same boot, PID
    # namespace, no process with its PID and start time): the next cron run goes ahead.
    later = run_cli(lake)
    assert later.returncode == 0, later.stderr
    gone = f"took over the run lock of run {holder.run_id}: its process (pid {holder.pid} "
    assert gone in later.stderr, later.stderr
    locks = lake.storage.list_objects(layout.LOCKS_PREFIX)
    assert not [o for o in locks if not layout.is_temp_key(o.key)]  # all released
    assert view(lake) == ref


def test_lock_of_a_run_killed_elsewhere_is_taken_over_after_expiry(
    lake: Lake, tmp_path: Path
) -> None:
    ref = _reference(lake, tmp_path)
    _seed(lake)
    killed = run_cli(lake, {faults.WRITES_ENV: "4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # As if the killed run had been on another machine (an AWS Batch node): its death cannot be
    # seen from here, so only the lease's expiry frees its locks.
    for obj in lake.storage.list_objects(layout.LOCKS_PREFIX):
        if not layout.is_temp_key(obj.key):
            record = lake.storage.read_json(obj.key)
            lake.storage.write_json(obj.key, {**record, "host": "batch-node-7"})
    holder = read_lock(lake.storage, "run")
    assert holder is not None and holder.host == "batch-node-7"
    early = run_cli(lake)
    assert early.returncode == 1 and "run is already running" in early.stderr, early.stderr
    assert holder.run_id in early.stderr
    # lock.ttl_seconds=10: wait for the dead run's lease to expire, as the next cron run would.
    time.sleep(max(0.0, (holder.expires - datetime.now(UTC)).total_seconds()) + 0.5)
    later = run_cli(lake)
    assert later.returncode == 0, later.stderr
    assert f"took over the expired run lock of run {holder.run_id}" in later.stderr
    locks = lake.storage.list_objects(layout.LOCKS_PREFIX)
    assert not [o for o in locks if not layout.is_temp_key(o.key)]  # all released
    assert view(lake) == ref

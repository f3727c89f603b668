"""State primitives on local disk and on the S3 server: the stage lock (threads and two real
processes), run records, the fetch log, watermarks, the manifest and the checkpoints."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.errors import LockHeldError, StorageError
from condvest.state import (
    ManifestRow,
    RunRecord,
    SessionEntry,
    StageLock,
    advance_watermark,
    landed_sessions,
    last_runs,
    read_checkpoint,
    read_manifest,
    read_session,
    read_watermark,
    record_session,
    update_manifest,
    write_checkpoint,
    write_run_record,
)
from condvest.state.lock import read_lock
from condvest.storage import parquet_bytes
from conftest import Lake, at

T0 = at("2025-06-02T12:00:00")


def _clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``n`` threads released together; exceptions are returned."""
    barrier = threading.Barrier(n)

    def start(i: int) -> Any:
        barrier.wait()
        try:
            return work(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


# -- the stage lock -----------------------------------------------------------------------------
def test_lock_refuses_a_second_runner_and_names_the_holder(lake: Lake) -> None:
    st = lake.storage
    first = StageLock(st, "consolidate", run_id="run-one", ttl_s=600, clock=_clock(T0))
    first.acquire()
    held = read_lock(st, "consolidate")
    assert held is not None and held.run_id == "run-one" and held.pid == os.getpid()
    assert held.expires == T0 + timedelta(seconds=600)
    before = st.read_bytes(layout.lock("consolidate"))

    second = StageLock(st, "consolidate", run_id="run-two", clock=_clock(T0 + timedelta(minutes=9)))
    with pytest.raises(LockHeldError, match="run run-one") as info:
        second.acquire()
    assert "consolidate is already running" in str(info.value)
    assert held.expires_at in str(info.value)  # says when it would expire
    assert st.read_bytes(layout.lock("consolidate")) == before  # the holder's lock is untouched
    assert second.took_over is None

    # another stage has its own lock
    with StageLock(st, "resample", run_id="run-two", clock=_clock(T0)):
        pass

    first.release()
    assert st.stat(layout.lock("consolidate")) is None
    with StageLock(st, "consolidate", run_id="run-two", clock=_clock(T0)) as again:
        assert again.took_over is None
        holder = read_lock(st, "consolidate")
        assert holder is not None and holder.run_id == "run-two"
    assert st.stat(layout.lock("consolidate")) is None  # released on exit


def test_lock_released_on_error_inside_with(lake: Lake) -> None:
    st = lake.storage
    with (
        pytest.raises(RuntimeError),
        StageLock(st, "fetch", run_id="r1", clock=_clock(T0)),
    ):
        raise RuntimeError("boom")
    assert st.stat(layout.lock("fetch")) is None


def test_expired_lock_is_taken_over(lake: Lake) -> None:
    st = lake.storage
    StageLock(st, "fetch", run_id="crashed", ttl_s=60, clock=_clock(T0)).acquire()
    # not expired yet: refused
    with pytest.raises(LockHeldError, match="crashed"):
        StageLock(st, "fetch", run_id="early", clock=_clock(T0 + timedelta(seconds=59))).acquire()
    late = StageLock(st, "fetch", run_id="late", ttl_s=60, clock=_clock(T0 + timedelta(seconds=61)))
    late.acquire()
    assert late.took_over is not None and late.took_over.run_id == "crashed"
    holder = read_lock(st, "fetch")
    assert holder is not None and holder.run_id == "late"
    assert holder.expires == T0 + timedelta(seconds=121)


def test_concurrent_takeovers_of_one_expired_lock_have_one_winner(lake: Lake) -> None:
    st = lake.storage
    later = T0 + timedelta(hours=2)
    for round_ in range(3):
        name = f"stage{round_}"
        StageLock(st, name, run_id="dead", ttl_s=60, clock=_clock(T0)).acquire()
        locks = [StageLock(st, name, run_id=f"taker-{i}", clock=_clock(later)) for i in range(6)]
        results = _race(len(locks), lambda i, locks=locks: locks[i].acquire())
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        losers = [r for r in results if r is not None]
        assert all(isinstance(r, LockHeldError) for r in losers), losers
        assert all(f"taker-{winners[0]}" in str(r) for r in losers)
        holder = read_lock(st, name)
        assert holder is not None and holder.run_id == f"taker-{winners[0]}"
        assert locks[winners[0]].took_over is not None
        assert locks[winners[0]].took_over.run_id == "dead"


def test_renew_extends_and_fails_after_a_takeover(lake: Lake) -> None:
    st = lake.storage
    now = [T0]
    mine = StageLock(st, "vacuum", run_id="mine", ttl_s=60, clock=lambda: now[0])
    mine.acquire()
    now[0] = T0 + timedelta(seconds=50)
    mine.renew()
    holder = read_lock(st, "vacuum")
    assert holder is not None and holder.expires == T0 + timedelta(seconds=110)
    # a runner that thinks the lock expired (it did not renew in time) takes it over
    theirs = StageLock(st, "vacuum", run_id="theirs", clock=_clock(T0 + timedelta(seconds=111)))
    theirs.acquire()
    assert theirs.took_over is not None and theirs.took_over.run_id == "mine"
    with pytest.raises(LockHeldError, match="lost the vacuum lock"):
        mine.renew()
    mine.release()  # must not delete the new holder's lock
    holder = read_lock(st, "vacuum")
    assert holder is not None and holder.run_id == "theirs"


def test_lock_recognises_its_own_landed_write(lake: Lake) -> None:
    """A conditional PUT that landed but whose answer was lost is retried by the S3 client and
    refused (412). The record then carries our run id: it is ours, not another run's."""
    st = lake.storage
    key = layout.lock("fetch")
    StageLock(st, "fetch", run_id="r1", ttl_s=60, clock=_clock(T0)).acquire()
    retried = StageLock(st, "fetch", run_id="r1", ttl_s=60, clock=_clock(T0))
    retried.acquire()  # was: LockHeldError "fetch is already running (run r1 ...)"
    assert retried.took_over is None
    # a renew whose write landed (expiry moved) but was reported refused
    body = st.read_json(key)
    body["expires_at"] = (T0 + timedelta(seconds=90)).isoformat()
    st.write_json(key, body)
    retried.renew()  # was: LockHeldError "lost the fetch lock"
    retried.renew()
    holder = read_lock(st, "fetch")
    assert holder is not None and holder.run_id == "r1"
    # a real takeover is still noticed
    later = _clock(T0 + timedelta(hours=1))
    StageLock(st, "fetch", run_id="r2", clock=later).acquire()
    with pytest.raises(LockHeldError, match="lost the fetch lock"):
        retried.renew()


def test_unreadable_lock_is_taken_over(lake: Lake) -> None:
    st = lake.storage
    st.write_bytes(layout.lock("fetch"), b"{half a lock")
    with StageLock(st, "fetch", run_id="r1", clock=_clock(T0)):
        holder = read_lock(st, "fetch")
        assert holder is not None and holder.run_id == "r1"


# -- the lock across two real processes ---------------------------------------------------------
_LOCK_SCRIPT = """
import json, os, sys, time
from datetime import UTC, datetime, timedelta
from condvest.errors import LockHeldError
from condvest.settings import load_settings
from condvest.state import StageLock
from condvest.storage import open_storage

mode, run_id, skew_s, flag = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
settings = load_settings()
storage = open_storage(settings.lake.uri, settings)
clock = lambda: datetime.now(UTC) + timedelta(seconds=skew_s)
lock = StageLock(storage, "consolidate", run_id=run_id, ttl_s=3600, clock=clock)
try:
    lock.acquire()
except LockHeldError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
    sys.exit(3)
print(json.dumps({"ok": True, "took_over": lock.took_over.run_id if lock.took_over else None}))
sys.stdout.flush()
if mode == "hold":
    open(flag, "w").close()
    deadline = time.monotonic() + 120  # never outlive a failed test by long
    while time.monotonic() < deadline:
        time.sleep(0.05)
"""


def _lock_process(lake: Lake, mode: str, run_id: str, flag: Path, skew_s: float = 0) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(lake.env())
    return subprocess.Popen(
        [sys.executable, "-c", _LOCK_SCRIPT, mode, run_id, str(skew_s), str(flag)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: Any) -> tuple[int, dict[str, Any]]:
    out, err = proc.communicate(timeout=120)
    lines = out.strip().splitlines()
    assert lines, f"no output (exit {proc.returncode}): {err}"
    return proc.returncode, json.loads(lines[-1])


def test_lock_between_two_processes(lake: Lake, tmp_path: Path) -> None:
    ready = tmp_path / "holder-ready"
    holder = _lock_process(lake, "hold", "proc-one", ready)
    try:
        for _ in range(1200):
            if ready.exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), f"holder never took the lock: {holder.communicate()}"

        code, body = _finish(_lock_process(lake, "try", "proc-two", tmp_path / "x"))
        assert code == 3 and body["ok"] is False
        assert "run proc-one" in body["error"] and f"pid {holder.pid}" in body["error"]

        os.kill(holder.pid, signal.SIGKILL)  # a crash: no release
        holder.wait(timeout=30)
        assert holder.returncode == -signal.SIGKILL
        stale = read_lock(lake.storage, "consolidate")
        assert stale is not None and stale.run_id == "proc-one"

        # The lease runs for an hour, but its holder provably died on this machine: the next
        # runner takes the lock over at once instead of waiting for the expiry.
        code, body = _finish(_lock_process(lake, "try", "proc-three", tmp_path / "x"))
        assert code == 0 and body == {"ok": True, "took_over": "proc-one"}
        now = read_lock(lake.storage, "consolidate")
        assert now is not None and now.run_id == "proc-three"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _holder_record(**changes: Any) -> dict[str, Any]:
    """A lock record naming this test's parent process (alive), as the holder wrote it."""
    from condvest.state import lock as lock_module

    parent = os.getppid()
    body = {
        "name": "fetch",
        "run_id": "holder",
        "host": socket.gethostname(),
        "pid": parent,
        "acquired_at": T0.isoformat(),
        "expires_at": (T0 + timedelta(hours=1)).isoformat(),
        "boot_id": lock_module._read_text(lock_module.BOOT_ID),
        "pid_ns": lock_module._pid_namespace(),
        "started": lock_module._start_time(parent),
    }
    return {**body, **changes}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("case", "changes", "taken"),
    [
        ("holder alive", {}, False),
        ("pid reused by another process", {"started": "1"}, True),
        ("no such pid", {"pid": 2**22 + 7, "started": "5"}, True),
        ("another machine", {"host": "elsewhere", "started": "1"}, False),
        ("another boot", {"boot_id": "0000-other-boot", "started": "1"}, False),
        ("another container (PID namespace)", {"pid_ns": "pid:[1]", "started": "1"}, False),
        ("record of an older version", {"boot_id": None, "started": "1"}, False),
    ],
)
def test_a_dead_holder_on_this_machine_is_taken_over_before_expiry(
    local_lake: Lake, case: str, changes: dict[str, Any], taken: bool
) -> None:
    st = local_lake.storage
    body = _holder_record(**changes)
    body = {k: v for k, v in body.items() if v is not None}
    st.write_json(layout.lock("fetch"), body)
    runner = StageLock(st, "fetch", run_id="next", clock=_clock(T0 + timedelta(minutes=5)))
    if not taken:
        with pytest.raises(LockHeldError, match="run holder"):
            runner.acquire()
        holder = read_lock(st, "fetch")
        assert holder is not None and holder.run_id == "holder", case
        return
    runner.acquire()
    assert runner.took_over is not None and runner.took_over.run_id == "holder", case
    holder = read_lock(st, "fetch")
    assert holder is not None and holder.run_id == "next"
    assert holder.pid == os.getpid() and holder.started and holder.boot_id


# -- run records --------------------------------------------------------------------------------
def test_run_records_round_trip(lake: Lake) -> None:
    st = lake.storage
    assert last_runs(st) == {s: None for s in ("fetch", "consolidate", "resample", "vacuum", "run")}
    first = RunRecord(stage="consolidate", run_id="r1", started_at=T0.isoformat())
    write_run_record(st, first)
    assert last_runs(st)["consolidate"] == first
    done = first.finished(
        "success", T0 + timedelta(minutes=3), {"symbols": 12, "rows": 3400, "nested": {"a": 1}}
    )
    write_run_record(st, done)
    second = RunRecord(stage="consolidate", run_id="r2", started_at=(T0 + timedelta(1)).isoformat())
    failed = second.finished("failed", T0 + timedelta(days=1, minutes=1), {}, "disk full")
    write_run_record(st, failed)
    runs = last_runs(st)
    assert runs["consolidate"] == failed
    assert runs["fetch"] is None
    assert runs["consolidate"] is not None and runs["consolidate"].error == "disk full"
    # one record per run stays beside latest.json; the key has no ':' (S3 / Windows friendly)
    keys = [o.key for o in st.list_objects(f"{layout.RUNS_PREFIX}consolidate/")]
    assert layout.run_latest("consolidate") in keys
    assert done.key in keys and failed.key in keys and len(keys) == 3
    assert all(":" not in k for k in keys)
    assert RunRecord.from_json(st.read_json(done.key)) == done


# -- fetch log ----------------------------------------------------------------------------------
def test_fetch_log_round_trip(lake: Lake) -> None:
    st = lake.storage
    assert landed_sessions(st) == set()
    assert read_session(st, date(2025, 1, 2)) is None
    entries = [
        SessionEntry(
            session=date(2025, 1, 2),
            status="landed",
            rows=3,
            run_id="r1",
            fetched_at="2025-01-02T22:00:00+00:00",
            source="polygon",
            symbols=["AAPL", "BRK.A", "INF"],
            quarantined=1,
        ),
        SessionEntry(date(2025, 1, 3), "empty", 0, "r1", "2025-01-03T22:00:00+00:00", "polygon"),
    ]
    for entry in entries:
        record_session(st, entry)
    # strays in the log directory are not sessions
    st.write_bytes(f"{layout.FETCH_LOG_PREFIX}notes.txt", b"x")
    st.write_bytes(f"{layout.FETCH_LOG_PREFIX}session=garbage.json", b"{}")
    st.write_bytes(f"{layout.FETCH_LOG_PREFIX}.tmp-abc-session=2025-01-06.json", b"{}")
    assert landed_sessions(st) == {date(2025, 1, 2), date(2025, 1, 3)}
    assert read_session(st, date(2025, 1, 2)) == entries[0]
    assert read_session(st, date(2025, 1, 3)) == entries[1]
    assert read_session(st, date(2025, 1, 6)) is None


# -- watermarks ---------------------------------------------------------------------------------
def test_watermark_is_monotonic(lake: Lake) -> None:
    st = lake.storage
    key = layout.watermark("ohlcv_daily")
    assert read_watermark(st) is None
    assert advance_watermark(st, date(2025, 1, 6), run_id="r1") == date(2025, 1, 6)
    stored = st.stat(key)
    # a bounded backfill of older sessions must not move it backwards, nor rewrite it
    assert advance_watermark(st, date(2024, 12, 2), run_id="backfill") == date(2025, 1, 6)
    assert advance_watermark(st, date(2025, 1, 6), run_id="again") == date(2025, 1, 6)
    after = st.stat(key)
    assert stored is not None and after is not None and after.version == stored.version
    assert read_watermark(st) == date(2025, 1, 6)
    assert advance_watermark(st, date(2025, 1, 7), run_id="r2") == date(2025, 1, 7)
    assert read_watermark(st) == date(2025, 1, 7)
    body = st.read_json(key)
    assert [h["value"] for h in body["history"]] == ["2025-01-06", "2025-01-07"]
    assert [h["run_id"] for h in body["history"]] == ["r1", "r2"]
    # watermarks are independent by name
    assert read_watermark(st, "meta") is None
    assert advance_watermark(st, date(2020, 1, 2), run_id="m", name="meta") == date(2020, 1, 2)
    assert read_watermark(st) == date(2025, 1, 7)


def test_concurrent_watermark_advances_end_at_the_max(lake: Lake) -> None:
    st = lake.storage
    days = [date(2025, 3, 3) + timedelta(days=i) for i in (4, 0, 7, 2, 6, 1)]
    results = _race(len(days), lambda i: advance_watermark(st, days[i], run_id=f"r{i}"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert read_watermark(st) == max(days)
    for i, result in enumerate(results):
        assert result >= days[i]  # each caller is told a value at least its own


def test_unreadable_watermark_is_a_clear_storage_error(lake: Lake) -> None:
    st = lake.storage
    key = layout.watermark("ohlcv_daily")
    for content, reason in (
        (b"not json at all", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"2025-01-02"', "not a JSON object"),
        (b'{"current": "yesterday"}', "unreadable date 'yesterday'"),
    ):
        st.write_bytes(key, content)
        for call in (
            lambda: read_watermark(st),
            lambda: advance_watermark(st, date(2025, 1, 2), run_id="r1"),
        ):
            with pytest.raises(StorageError, match="watermark ohlcv_daily") as info:
                call()
            assert reason in str(info.value) and key in str(info.value)
            assert "delete it" in str(info.value)  # the fix
        assert st.read_bytes(key) == content  # nothing overwritten


# -- consolidation manifest ---------------------------------------------------------------------
def _row(symbol: str, day: date, rows: int) -> ManifestRow:
    return ManifestRow(symbol, day, rows, datetime(2025, 6, 2, 12, tzinfo=UTC), date(2020, 1, 2))


def test_manifest_updates_from_concurrent_shards_lose_nothing(lake: Lake) -> None:
    st = lake.storage
    assert read_manifest(st) == ({}, None)
    update_manifest(st, {})
    assert st.stat(layout.CONSOLIDATION_MANIFEST) is None  # nothing to write, nothing written
    shards = 4
    shard_symbols = [[f"S{k}X{i}" for i in range(5)] for k in range(shards)]

    def shard(k: int) -> None:
        for half in (shard_symbols[k][:2], shard_symbols[k][2:]):
            update_manifest(st, {s: _row(s, date(2025, 6, 2), 100 + k) for s in half})

    results = _race(shards, shard)
    assert results == [None] * shards
    rows, version = read_manifest(st)
    assert version is not None
    assert sorted(rows) == sorted(s for group in shard_symbols for s in group)
    assert rows["S2X4"] == _row("S2X4", date(2025, 6, 2), 102)

    # a later update of one symbol replaces only that row
    update_manifest(st, {"S0X0": _row("S0X0", date(2025, 6, 3), 101)})
    rows, _ = read_manifest(st)
    assert rows["S0X0"].last_consolidated_date == date(2025, 6, 3)
    assert len(rows) == 20

    table = st.read_parquet(layout.CONSOLIDATION_MANIFEST)
    seed = {
        "symbol": pa.string(),
        "last_consolidated_date": pa.date32(),
        "row_count": pa.int64(),
        "last_updated": pa.timestamp("ms", tz="UTC"),
    }
    for name, kind in seed.items():
        assert table.schema.field(name).type == kind, name
    assert table.column("symbol").to_pylist() == sorted(table.column("symbol").to_pylist())


def test_manifest_reads_the_seed_systems_file(lake: Lake) -> None:
    """The original wrote timestamps (ns, naive) and no first_date column."""
    seed = pa.table(
        {
            "symbol": ["AAPL", "MSFT"],
            "last_consolidated_date": pa.array(
                [datetime(2025, 5, 30), datetime(2025, 5, 29)], pa.timestamp("ns")
            ),
            "row_count": pa.array([1250, 1249], pa.int64()),
            "last_updated": pa.array([datetime(2025, 5, 30, 23, 5)] * 2, pa.timestamp("ns")),
        }
    )
    lake.storage.write_bytes(layout.CONSOLIDATION_MANIFEST, parquet_bytes(seed))
    rows, _ = read_manifest(lake.storage)
    assert rows["AAPL"].last_consolidated_date == date(2025, 5, 30)
    assert rows["MSFT"].row_count == 1249 and rows["MSFT"].first_date is None
    update_manifest(lake.storage, {"NVDA": _row("NVDA", date(2025, 6, 2), 10)})
    rows, _ = read_manifest(lake.storage)
    assert sorted(rows) == ["AAPL", "MSFT", "NVDA"]
    assert rows["AAPL"].last_consolidated_date == date(2025, 5, 30)


def test_corrupt_manifest_is_an_error_not_an_empty_manifest(lake: Lake) -> None:
    from condvest.errors import CorruptFileError

    lake.storage.write_bytes(layout.CONSOLIDATION_MANIFEST, b"PAR1 but not really")
    with pytest.raises(CorruptFileError, match=r"consolidation_manifest\.parquet"):
        read_manifest(lake.storage)
    with pytest.raises(CorruptFileError):
        update_manifest(lake.storage, {"AAPL": _row("AAPL", date(2025, 6, 2), 1)})
    assert lake.storage.read_bytes(layout.CONSOLIDATION_MANIFEST) == b"PAR1 but not really"


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoints_round_trip(lake: Lake) -> None:
    st = lake.storage
    assert read_checkpoint(st, 5) is None
    write_checkpoint(st, 5, {"last_session": "2025-06-02", "symbols": 5400, "rows": [1, 2]})
    write_checkpoint(st, 34, {"last_session": "2025-05-30"})
    assert read_checkpoint(st, 5) == {"last_session": "2025-06-02", "symbols": 5400, "rows": [1, 2]}
    assert read_checkpoint(st, 34) == {"last_session": "2025-05-30"}
    write_checkpoint(st, 5, {"last_session": "2025-06-03"})
    assert read_checkpoint(st, 5) == {"last_session": "2025-06-03"}
    assert st.stat(layout.silver_checkpoint(3)) is None


def test_failed_parts_only_until_covered_and_only_in_the_latest_split() -> None:
    from condvest.state.runs import failed_parts

    def rec(scope: str | None, outcome: str, hour: int) -> RunRecord:
        started = (T0 + timedelta(hours=hour)).isoformat()
        return RunRecord(
            stage="consolidate", run_id=f"r{hour}", started_at=started, scope=scope
        ).finished(outcome, T0 + timedelta(hours=hour, minutes=5), {})  # type: ignore[arg-type]

    s0_failed, s1_ok = rec("shard-0-of-2", "failed", 1), rec("shard-1-of-2", "success", 2)
    assert failed_parts(s1_ok, [s0_failed, s1_ok]) == [s0_failed]
    whole_ok = rec(None, "success", 3)
    assert failed_parts(whole_ok, [s0_failed, s1_ok]) == []  # a later whole run covers it
    whole_failed = rec(None, "failed", 3)
    assert failed_parts(whole_failed, [s0_failed, s1_ok]) == [s0_failed]
    earlier_whole = rec(None, "success", 0)
    assert failed_parts(earlier_whole, [s0_failed, s1_ok]) == [s0_failed]
    # re-split into 4: the 2-way failure is history once the 4-way shards run
    four = [rec(f"shard-{k}-of-4", "success", 4 + k) for k in range(4)]
    assert failed_parts(four[-1], [s0_failed, s1_ok, *four]) == []
    assert failed_parts(None, []) == []

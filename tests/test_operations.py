"""Operations under stress (issue 13 item 11): vacuum on a full disk (a real tmpfs), a whole and
a sharded consolidate at once, the disk-full error naming the session, and a failed session
saying so on stderr under ``--output json``."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import cli_proc
from condvest.core import layout
from condvest.errors import LockHeldError
from condvest.jobs.bronze import read_file
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.state.lock import StageLock
from conftest import Lake, make_local_lake
from polygon_server import KEY, FakePolygon, agg

SYNTHETIC = {"CONDVEST_FETCH__SOURCE": "synthetic", "CONDVEST_FETCH__SYNTHETIC_SYMBOLS": "4"}


def _env(lake: Lake, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    return env | lake.env() | SYNTHETIC | (extra or {})


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs: a disk that really fills (ENOSPC), not a simulated one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> int:
    """Write zeros to ``path`` until the disk is full; returns the bytes written."""
    written = 0
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
                written += 65536
        except OSError:
            pass
    return written


def _bronze(lake: Lake) -> list[tuple[str, Any]]:
    rows = []
    for obj in lake.storage.list_objects(layout.BRONZE_OHLCV + "/"):
        if obj.key.endswith(".parquet") and not layout.is_temp_key(obj.key):
            rows += [(r["symbol"], r["date"]) for r in read_file(lake.storage, obj.key).to_pylist()]
    return sorted(rows)


def test_vacuum_runs_on_a_full_disk(small_disk: Path) -> None:
    lake = make_local_lake(small_disk / "lake")
    fetched = cli_proc.run(
        ["fetch", "--start", "2025-03-03", "--end", "2025-03-14"], env=_env(lake)
    )
    assert fetched.returncode == 0, fetched.stderr
    before = _bronze(lake)
    # A crashed write's temporary (condvest's own name), old enough to be vacuum's, fills the disk.
    crashed = small_disk / "lake" / "bronze/raw_ohlcv/symbol=ZZZ/.tmp-0123456789ab-data.parquet"
    crashed.parent.mkdir(parents=True)
    assert _fill(crashed) > 1_000_000
    old = time.time() - 3 * 86400
    os.utime(crashed, (old, old))
    # Full: another condvest command cannot even take its lock.
    blocked = cli_proc.run(["consolidate"], env=_env(lake))
    assert blocked.returncode == 1 and "disk full" in blocked.stderr
    done = cli_proc.run(["-o", "json", "vacuum"], env=_env(lake))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["temp_files_deleted"] == 1 and result["temp_bytes_freed"] > 1_000_000
    assert "before taking the lock" in done.stderr
    assert not crashed.exists()
    assert _bronze(lake) == before  # nothing of the lake lost
    assert cli_proc.run(["consolidate"], env=_env(lake)).returncode == 0  # room again


def test_full_disk_without_temporaries_says_what_to_do(small_disk: Path) -> None:
    lake = make_local_lake(small_disk / "lake")
    assert cli_proc.run(["fetch", "--date", "2025-03-14"], env=_env(lake)).returncode == 0
    _fill(small_disk / "user-file.bin")  # not condvest's: vacuum never touches it
    done = cli_proc.run(["vacuum"], env=_env(lake))
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no crashed temporaries" in lines[0] and "by hand" in lines[0]
    assert (small_disk / "user-file.bin").exists()


def _pending_lake(tmp_path: Path) -> Lake:
    lake = make_local_lake(tmp_path / "lake")
    assert cli_proc.run(["fetch", "--date", "2025-03-14"], env=_env(lake)).returncode == 0
    return lake


@pytest.mark.parametrize("held, runs", [(None, (0, 2)), ((0, 2), None)], ids=["full-held", "shard"])
def test_whole_and_sharded_consolidate_exclude_each_other(
    tmp_path: Path, held: tuple[int, int] | None, runs: tuple[int, int] | None
) -> None:
    lake = _pending_lake(tmp_path)
    name = "consolidate" if held is None else f"consolidate-shard-{held[0]}-of-{held[1]}"
    ctx = lake.context()
    holder = StageLock(ctx.storage, name, run_id="other-run", ttl_s=600)
    holder.acquire()
    try:
        before = {o.key for o in lake.storage.list_objects("")}
        options = ConsolidateOptions(shard=runs) if runs else ConsolidateOptions()
        with pytest.raises(LockHeldError, match="cannot run beside it"):
            run_consolidate(ctx, plan_consolidate(ctx, options))
        after = {o.key for o in lake.storage.list_objects("")}
        assert after == before  # its own lock was released; nothing else written
    finally:
        holder.release()
    assert run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions())).ok


def test_two_shards_still_run_side_by_side(tmp_path: Path) -> None:
    lake = _pending_lake(tmp_path)
    ctx = lake.context()
    other = StageLock(ctx.storage, "consolidate-shard-1-of-2", run_id="other-run", ttl_s=600)
    other.acquire()
    try:
        assert run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(shard=(0, 2)))).ok
    finally:
        other.release()


def test_failed_session_says_so_on_stderr_in_json_mode(
    tmp_path: Path, polygon: FakePolygon
) -> None:
    day = date(2025, 3, 14)
    polygon.grouped[day] = [agg("AAPL", day, t=1)]  # every row rejected
    lake = make_local_lake(tmp_path / "lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")} | lake.env()
    env |= {
        "POLYGON_API_KEY": KEY,
        "CONDVEST_POLYGON__BASE_URL": polygon.url,
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "0",
    }
    out = cli_proc.run(["-o", "json", "fetch", "--date", str(day)], env=env)
    assert out.returncode == 1
    assert json.loads(out.stdout)["failed"]  # stdout stays one JSON document
    assert f"{day} failed" in out.stderr and "accepted" in out.stderr


def test_corrupt_manifest_names_its_repair_and_full_mode_rebuilds_it(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    env = _env(lake)
    assert cli_proc.run(["fetch", "--date", "2025-03-14"], env=env).returncode == 0
    assert cli_proc.run(["consolidate"], env=env).returncode == 0
    good = lake.storage.read_bytes(layout.CONSOLIDATION_MANIFEST)
    lake.storage.write_bytes(layout.CONSOLIDATION_MANIFEST, b"not parquet")
    incremental = cli_proc.run(["consolidate"], env=env)
    assert incremental.returncode == 1
    assert "condvest consolidate --mode full" in incremental.stderr
    status = cli_proc.run(["-o", "json", "status", "--check"], env=env)
    assert status.returncode == 1
    assert any("--mode full" in p for p in json.loads(status.stdout)["problems"])
    rebuilt = cli_proc.run(["consolidate", "--mode", "full"], env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    from condvest.state.manifest import _decode

    where = layout.CONSOLIDATION_MANIFEST
    before = _decode(good, where)
    after = _decode(lake.storage.read_bytes(where), where)
    assert {s: (r.row_count, r.first_date, r.last_consolidated_date) for s, r in after.items()} == {
        s: (r.row_count, r.first_date, r.last_consolidated_date) for s, r in before.items()
    }
    healed = json.loads(cli_proc.run(["-o", "json", "status"], env=env).stdout)
    assert "manifest_error" not in healed["bronze"]
    assert not [p for p in healed["problems"] if "manifest" in p or "consolidate" in p]


def test_corrupt_fetch_log_entry_names_its_repair(tmp_path: Path) -> None:
    from condvest.errors import CorruptFileError
    from condvest.state.fetchlog import read_session

    lake = make_local_lake(tmp_path / "lake")
    env = _env(lake)
    assert cli_proc.run(["fetch", "--date", "2025-03-14"], env=env).returncode == 0
    day = date(2025, 3, 14)
    lake.storage.write_bytes(layout.fetch_log_entry(day), b"{not json")
    with pytest.raises(CorruptFileError) as err:
        read_session(lake.storage, day)
    assert "condvest fetch --date 2025-03-14 --force" in str(err.value)
    repaired = cli_proc.run(["fetch", "--date", "2025-03-14", "--force"], env=env)
    assert repaired.returncode == 0, repaired.stderr
    entry = read_session(lake.storage, day)
    assert entry is not None and entry.status == "landed" and entry.rows == 4


def test_disk_full_during_fetch_names_the_session(small_disk: Path, tmp_path: Path) -> None:
    from condvest import faults

    lake = make_local_lake(small_disk / "lake")
    env = _env(lake)
    assert cli_proc.run(["fetch", "--date", "2025-03-12"], env=env).returncode == 0
    release = tmp_path / "release"
    # Writes 1 and 2 are the lock and the run record: the disk fills before the first date file.
    paused = env | {faults.PAUSE_ENV: f"3:{release}"}
    proc = cli_proc.start(["fetch", "--start", "2025-03-13", "--end", "2025-03-14"], env=paused)
    deadline = time.monotonic() + 60
    while not Path(f"{release}.paused").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    filler = small_disk / "filler.bin"
    _fill(filler)
    release.touch()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "2025-03-13 failed" in err and "disk full" in err
    filler.unlink()
    # Nothing of it counts as landed; the next run (with room again) lands both sessions.
    args = ["-o", "json", "fetch", "--start", "2025-03-13", "--end", "2025-03-14"]
    again = cli_proc.run(args, env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sessions"] == ["2025-03-13", "2025-03-14"]

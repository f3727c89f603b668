"""vacuum (docs/design.md §8) on local disk and the S3 server: only verified, old date files go;
never the only copy of a row (property test); stale temporary files; the retention floor; the
cleanup manifest; dry run; the CLI."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli_proc
from condvest.core import layout
from condvest.errors import UsageError
from condvest.jobs.base import run_job
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.jobs.vacuum.job import VACUUM, VacuumOptions, VacuumResult, plan_vacuum, run_vacuum
from condvest.settings import ConsolidateMode
from conftest import Lake, at, make_local_lake
from consolidate_helpers import T0, all_rows, date_files, history, land

NOW = at("2026-03-02T12:00:00")
OLD = [date(2026, 1, d) for d in (5, 6, 7)]
NEW = date(2026, 2, 27)


def vacuum(lake: Lake, **options: Any) -> VacuumResult:
    """A vacuum through the runner; a dry run's preview with the result's attributes."""
    ctx = lake.context(now=options.pop("now", NOW))
    if options.pop("dry_run", False):
        dry = run_job(ctx, VACUUM, VacuumOptions(**options), dry_run=True)
        return SimpleNamespace(**dry.to_dict())  # type: ignore[return-value]
    return run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(**options)))


def consolidate_all(lake: Lake) -> None:
    ctx = lake.context(now=NOW)
    opts = ConsolidateOptions(skip_cleanup=True)
    assert run_consolidate(ctx, plan_consolidate(ctx, opts)).ok


def test_deletes_verified_old_files_only(lake: Lake) -> None:
    for day in [*OLD, NEW]:
        land(lake.storage, "AAPL", day)
    land(lake.storage, "NEWCO", OLD[0])
    consolidate_all(lake)
    land(lake.storage, "NEWCO", OLD[1])  # landed after the merge: the only copy of its row
    land(lake.storage, "FRESH", OLD[0])  # never consolidated: no data.parquet at all
    # A re-landed correction not yet consolidated: differs from data.parquet, so it is pending.
    land(lake.storage, "AAPL", OLD[2], close=42.0, fetched=T0 + timedelta(days=3))
    rows_before = all_rows(lake.storage)
    dry = vacuum(lake, retention_days=30, dry_run=True)
    assert dry.dry_run and dry.files_deleted == 3 and dry.files_kept_pending == 3
    assert len(dry.files) == 3 and all("symbol=" in k for k in dry.files)
    assert date_files(lake.storage, "AAPL") == [*OLD, NEW]
    assert not lake.storage.exists(layout.CLEANUP_MANIFEST)
    result = vacuum(lake, retention_days=30)
    assert result.ok and result.files_deleted == 3 and result.bytes_freed > 0
    assert result.per_symbol["AAPL"]["deleted"] == 2 and result.per_symbol["AAPL"]["kept"] == 1
    assert result.per_symbol["NEWCO"]["deleted"] == 1 and result.per_symbol["NEWCO"]["kept"] == 1
    assert result.per_symbol["FRESH"] == {"deleted": 0, "bytes": 0, "kept": 1}
    assert date_files(lake.storage, "AAPL") == [OLD[2], NEW]
    assert date_files(lake.storage, "NEWCO") == [OLD[1]]
    assert date_files(lake.storage, "FRESH") == [OLD[0]]
    assert all_rows(lake.storage) == rows_before
    manifest = lake.storage.read_json(layout.CLEANUP_MANIFEST)
    assert manifest["total_files_deleted"] == 3 and manifest["symbols_cleaned"] == 2
    again = vacuum(lake, retention_days=30)
    assert again.files_deleted == 0
    totals = lake.storage.read_json(layout.CLEANUP_MANIFEST)
    assert totals["total_files_deleted"] == 3 and totals["runs"] == 2
    assert totals["total_bytes_freed"] == result.bytes_freed


def test_older_landed_row_is_superseded(lake: Lake) -> None:
    land(lake.storage, "KO", OLD[0], close=2.0, fetched=T0 + timedelta(days=5))
    consolidate_all(lake)
    # An older fetch of the same day landed later (a stale retry): data.parquet's row is newer.
    land(lake.storage, "KO", OLD[0], close=1.0, fetched=T0)
    assert vacuum(lake, retention_days=30, symbols=["KO"]).files_deleted == 1
    assert all_rows(lake.storage)[("KO", OLD[0])]["close"] == 2.0


def test_correction_landed_after_planning_is_kept(lake: Lake) -> None:
    """A correction re-landed over an old date file after vacuum verified the old one (the plan
    is made before the lock is taken) is pending again: it stays, counted as kept."""
    for day in OLD:
        land(lake.storage, "AAPL", day)
    consolidate_all(lake)
    ctx = lake.context(now=NOW)
    plan = plan_vacuum(ctx, VacuumOptions(retention_days=30))
    assert sum(len(s.delete) for s in plan.symbols) == 3
    land(lake.storage, "AAPL", OLD[1], close=42.0, fetched=T0 + timedelta(days=3))
    result = run_vacuum(ctx, plan)
    assert result.ok and result.files_deleted == 2 and result.files_kept_pending == 1
    assert result.per_symbol["AAPL"] == {
        "deleted": 2,
        "bytes": result.bytes_freed,
        "kept": 1,
    }
    assert date_files(lake.storage, "AAPL") == [OLD[1]]
    consolidate_all(lake)  # the correction reaches data.parquet
    assert all_rows(lake.storage)[("AAPL", OLD[1])]["close"] == 42.0
    assert lake.storage.read_json(layout.CLEANUP_MANIFEST)["total_files_deleted"] == 2


def test_interrupted_delete_is_restored_not_lost(local_lake: Lake) -> None:
    """A local conditional delete moves the file to a temporary "grave" name before it checks
    the version; a crash right there leaves the grave. vacuum puts it back when the key is free
    (and only drops it when something newer took the key)."""
    lake = local_lake
    land(lake.storage, "G", OLD[0], close=7.0)
    land(lake.storage, "H", OLD[0], close=8.0)
    g_key, h_key = layout.date_file("G", OLD[0]), layout.date_file("H", OLD[0])
    g_grave = layout.grave_key(g_key, "0123456789ab")
    h_grave = layout.grave_key(h_key, "ba9876543210")
    assert layout.grave_origin(g_grave) == g_key and layout.grave_origin(g_key) is None
    lake.storage.write_bytes(g_grave, lake.storage.read_bytes(g_key))
    lake.storage.delete(g_key)  # the crash: the only copy is under the grave name
    lake.storage.write_bytes(h_grave, b"an older version")  # H's key holds a newer file
    h_before = lake.storage.read_bytes(h_key)
    for grave in (g_grave, h_grave):
        os.utime(lake.storage.local_path(grave), (0, 0))  # past the temp grace period
    result = vacuum(lake, retention_days=30)
    assert result.ok and result.temp_files_deleted == 2
    assert not lake.storage.exists(g_grave) and not lake.storage.exists(h_grave)
    assert date_files(lake.storage, "G") == [OLD[0]]
    rows = all_rows(lake.storage)
    assert rows[("G", OLD[0])]["close"] == 7.0 and rows[("H", OLD[0])]["close"] == 8.0
    assert lake.storage.read_bytes(h_key) == h_before


def test_retention_floor_needs_force(lake: Lake) -> None:
    with pytest.raises(UsageError) as err:
        vacuum(lake, retention_days=2)
    assert "2 days" in str(err.value) and "minimum of 7" in str(err.value)
    assert "--force" in str(err.value)
    assert vacuum(lake, retention_days=2, force=True).ok


def test_stale_temp_files_go_fresh_ones_stay(lake: Lake) -> None:
    land(lake.storage, "T", NEW)
    stale = layout.temp_key(layout.data_file("T"), "deadbeef0123")
    lake.storage.write_bytes(stale, b"half a write")
    grace = lake.settings.vacuum.temp_grace_hours
    early = vacuum(lake, retention_days=30, now=at("2000-01-01T00:00:00"), dry_run=True)
    assert early.temp_files_deleted == 0
    mtime = lake.storage.stat(stale)
    assert mtime is not None
    later = mtime.mtime + timedelta(hours=grace + 1)
    result = vacuum(lake, retention_days=30, now=later)
    assert result.temp_files_deleted == 1 and result.temp_bytes_freed == len(b"half a write")
    assert not lake.storage.exists(stale)
    assert date_files(lake.storage, "T") == [NEW]


def test_corrupt_data_file_keeps_files_and_fails(lake: Lake) -> None:
    land(lake.storage, "BAD", OLD[0])
    lake.storage.write_bytes(layout.data_file("BAD"), b"not parquet")
    result = vacuum(lake, retention_days=30)
    assert not result.ok and result.failures[0]["symbol"] == "BAD"
    assert date_files(lake.storage, "BAD") == [OLD[0]]


def test_cli(lake: Lake) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(lake.env())
    base = ["--output", "json", "vacuum"]
    low = cli_proc.run([*base, "--retention-days", "1"], env=env)
    assert low.returncode == 2 and "pass --force" in low.stderr
    ok = cli_proc.run([*base, "--dry-run", "--symbols", "AAPL"], env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["dry_run"] is True


# -- property: vacuum never deletes the only copy of a row ----------------------------------
_day = st.sampled_from([date(2026, 1, d) for d in range(5, 10)] + [date(2026, 2, 26)])
_event = st.tuples(
    st.sampled_from(["A", "B"]),
    _day,
    st.floats(1, 100, allow_nan=False),
    st.integers(0, 3),  # fetched_at offset (days)
    st.sampled_from(["land", "consolidate"]),
)


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_event, min_size=1, max_size=12), retention=st.sampled_from([0, 30]))
def test_vacuum_never_deletes_the_only_copy(
    tmp_path_factory: Any, events: list[Any], retention: int
) -> None:
    lake = make_local_lake(tmp_path_factory.mktemp("prop") / "lake")
    for symbol, day, close, offset, action in events:
        if action == "land":
            land(lake.storage, symbol, day, close=close, fetched=T0 + timedelta(days=offset))
        else:
            ctx = lake.context(now=NOW)
            run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(skip_cleanup=True)))
    before = all_rows(lake.storage)
    result = vacuum(lake, retention_days=retention, force=True)
    assert result.ok
    assert all_rows(lake.storage) == before
    # and consolidating what is left still yields every row
    ctx = lake.context(now=NOW)
    full = ConsolidateOptions(mode=ConsolidateMode.FULL, skip_cleanup=True)
    assert run_consolidate(ctx, plan_consolidate(ctx, full)).ok
    merged: dict[Any, Any] = {}
    for s in ("A", "B"):
        if lake.storage.exists(layout.data_file(s)):
            merged.update({(r["symbol"], r["date"]): r["close"] for r in history(lake.storage, s)})
    assert merged == {k: v["close"] for k, v in before.items()}

"""consolidate (docs/design.md §6) on local disk and the S3 server: selection, corrections, late
files, cleanup only after a verified merge, failures that keep history, shards, dry run, the CLI."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

import cli_proc
from condvest.core import layout
from condvest.core.retention import parse_shard, shard_of
from condvest.errors import StorageError, UsageError
from condvest.jobs.base import run_job
from condvest.jobs.consolidate.job import (
    CONSOLIDATE,
    ConsolidateOptions,
    ConsolidateResult,
    plan_consolidate,
    resolve_shard,
    run_consolidate,
)
from condvest.settings import ConsolidateMode
from condvest.state.manifest import read_manifest
from condvest.storage import Storage
from conftest import Lake, at
from consolidate_helpers import T0, closes, date_files, history, land, rows

NOW = at("2026-01-20T23:00:00")
DAYS = [date(2026, 1, d) for d in (5, 6, 7, 8, 9)]


def consolidate(lake: Lake, **options: Any) -> ConsolidateResult:
    ctx = lake.context(now=options.pop("now", NOW))
    storage = options.pop("storage", None)
    if storage is not None:
        ctx.storage = storage
    if options.pop("dry_run", False):  # through the runner: the preview, as attributes
        dry = run_job(ctx, CONSOLIDATE, ConsolidateOptions(**options), dry_run=True)
        return SimpleNamespace(**dry.to_dict())  # type: ignore[return-value]
    return run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(**options)))


def settle(lake: Lake) -> None:
    """S3 modification times have one-second resolution: a re-landing in the same second as the
    merged file is indistinguishable by time (documented; --mode full picks it up)."""
    if lake.kind == "s3":
        time.sleep(1.1)


def test_merges_then_second_run_does_nothing(lake: Lake) -> None:
    for symbol in ("AAPL", "INF"):
        for day in DAYS:
            land(lake.storage, symbol, day, close=float(day.day))
    first = consolidate(lake)
    assert first.ok and first.selection == "fetch-log"
    assert (first.symbols_done, first.symbols_changed, first.rows_added) == (2, 2, 10)
    assert closes(lake.storage, "INF") == {d: float(d.day) for d in DAYS}
    manifest, _ = read_manifest(lake.storage)
    assert manifest["AAPL"].row_count == 5
    assert manifest["AAPL"].last_consolidated_date == DAYS[-1]
    assert manifest["AAPL"].first_date == DAYS[0]
    second = consolidate(lake)
    assert second.ok and second.symbols_planned == 0 and second.files_planned == 0
    assert read_manifest(lake.storage)[0] == manifest


def test_relanded_correction_replaces_the_row(lake: Lake) -> None:
    for day in DAYS:
        land(lake.storage, "MSFT", day, close=10.0)
    consolidate(lake)
    before = read_manifest(lake.storage)[0]["MSFT"]
    settle(lake)
    land(lake.storage, "MSFT", DAYS[1], close=99.0, fetched=T0 + timedelta(days=1))
    result = consolidate(lake)
    assert result.ok and result.symbols_planned == 1 and result.rows_replaced == 1
    assert closes(lake.storage, "MSFT")[DAYS[1]] == 99.0
    assert len(history(lake.storage, "MSFT")) == 5
    after = read_manifest(lake.storage)[0]["MSFT"]
    assert after.last_updated is not None and before.last_updated is not None
    assert after.last_updated > before.last_updated
    assert consolidate(lake).symbols_planned == 0


def test_late_file_older_than_manifest_date_still_merges(lake: Lake) -> None:
    for day in DAYS[2:]:
        land(lake.storage, "KO", day)
    consolidate(lake)
    settle(lake)
    land(lake.storage, "KO", DAYS[0], close=5.0)
    result = consolidate(lake)
    assert result.ok and result.rows_added == 1
    assert sorted(closes(lake.storage, "KO")) == [DAYS[0], *DAYS[2:]]
    assert read_manifest(lake.storage)[0]["KO"].first_date == DAYS[0]


def test_cleanup_deletes_only_old_merged_files(lake: Lake) -> None:
    old = [date(2025, 11, 3), date(2025, 11, 4)]
    for day in [*old, *DAYS]:
        land(lake.storage, "IBM", day)
    skipped = consolidate(lake, retention_days=30, skip_cleanup=True)
    assert skipped.files_deleted == 0 and date_files(lake.storage, "IBM") == [*old, *DAYS]
    settle(lake)
    land(lake.storage, "IBM", DAYS[-1], close=11.0, fetched=T0 + timedelta(hours=1))
    result = consolidate(lake, retention_days=30)
    assert result.ok and result.files_deleted == 2 and result.bytes_deleted > 0
    assert date_files(lake.storage, "IBM") == DAYS
    assert len(history(lake.storage, "IBM")) == 7


def test_cleanup_keeps_a_correction_landed_after_verification(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch may re-land an old date (a correction) while consolidate cleans up: if it lands
    between the check that the old file is in data.parquet and the delete, the correction is
    kept (its version is not the one verified) and merged by the next run."""
    from condvest.jobs.consolidate import job

    old = [date(2025, 11, 3), date(2025, 11, 4)]
    for day in old:
        land(lake.storage, "IBM", day)
    verified = job.superseded_files

    def then_a_correction_lands(storage: Storage, symbol: str, files: Any) -> Any:
        out = verified(storage, symbol, files)
        assert [f.day for f in out] == old
        settle(lake)
        land(lake.storage, "IBM", old[0], close=99.0, fetched=T0 + timedelta(days=30))
        return out

    monkeypatch.setattr(job, "superseded_files", then_a_correction_lands)
    result = consolidate(lake, retention_days=30)
    assert result.ok and result.files_deleted == 1
    assert date_files(lake.storage, "IBM") == [old[0]]
    monkeypatch.setattr(job, "superseded_files", verified)
    again = consolidate(lake, retention_days=30)
    assert again.ok and again.files_deleted == 1
    assert date_files(lake.storage, "IBM") == []
    assert closes(lake.storage, "IBM") == {old[0]: 99.0, old[1]: 10.0}


def test_corrupt_data_file_fails_the_symbol_and_keeps_everything(lake: Lake) -> None:
    land(lake.storage, "GOOD", DAYS[0])
    land(lake.storage, "BAD", DAYS[0], close=1.0)
    land(lake.storage, "BAD", date(2025, 1, 2), close=1.0)
    garbage = b"PAR1 this is not parquet"
    lake.storage.write_bytes(layout.data_file("BAD"), garbage)
    result = consolidate(lake, retention_days=0)
    assert not result.ok and result.exit_code == 1
    assert [f["symbol"] for f in result.failures] == ["BAD"]
    assert "not a readable parquet" in result.failures[0]["reason"]
    assert lake.storage.read_bytes(layout.data_file("BAD")) == garbage
    assert date_files(lake.storage, "BAD") == [date(2025, 1, 2), DAYS[0]]
    manifest = read_manifest(lake.storage)[0]
    assert "BAD" not in manifest and "GOOD" in manifest


class FlakyStorage(Storage):
    """The real storage, except that the first read of one key raises (a transient S3 error)."""

    def __init__(self, inner: Storage, key: str) -> None:
        self.inner, self.key, self.failed = inner, key, False
        self.uri = inner.uri

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        if key == self.key and not self.failed:
            self.failed = True
            raise StorageError(f"cannot read {key}: connection reset (injected)")
        return self.inner.read_versioned(key)

    def list_objects(self, prefix: str) -> Any:
        return self.inner.list_objects(prefix)

    def list_dirs(self, prefix: str) -> Any:
        return self.inner.list_dirs(prefix)

    def stat(self, key: str) -> Any:
        return self.inner.stat(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.inner.write_bytes(key, data)

    def create(self, key: str, data: bytes) -> bool:
        return self.inner.create(key, data)

    def replace(self, key: str, data: bytes, version: str) -> bool:
        return self.inner.replace(key, data, version)

    def delete_many(self, keys: Any) -> int:
        return self.inner.delete_many(keys)

    def delete_unchanged(self, objects: Any) -> list[str]:
        return self.inner.delete_unchanged(objects)

    def url(self, key: str) -> str:
        return self.inner.url(key)


def test_transient_read_error_leaves_history_untouched(lake: Lake) -> None:
    lake.storage.write_parquet(
        layout.data_file("HIST"), rows("HIST", [date(2020, 1, 2), date(2020, 1, 3)])
    )
    land(lake.storage, "HIST", DAYS[0])
    before = lake.storage.read_bytes(layout.data_file("HIST"))
    flaky = FlakyStorage(lake.storage, layout.data_file("HIST"))
    failed = consolidate(lake, storage=flaky, retention_days=0)
    assert not failed.ok and failed.failures[0]["symbol"] == "HIST"
    assert lake.storage.read_bytes(layout.data_file("HIST")) == before
    assert date_files(lake.storage, "HIST") == [DAYS[0]]
    retried = consolidate(lake, retention_days=0)
    assert retried.ok and retried.rows_added == 1
    assert sorted(closes(lake.storage, "HIST")) == [date(2020, 1, 2), date(2020, 1, 3), DAYS[0]]


def test_legacy_files_merge_into_canonical_history(lake: Lake) -> None:
    legacy = pa.table(
        {
            "symbol": ["OLD", "OLD"],
            "timestamp": pa.array([1577923200000, 1578009600000], pa.timestamp("ms")),
            "interval": ["1d", "1d"],
            "open": pa.array([Decimal("10.25"), Decimal("11.50")], pa.decimal128(10, 2)),
            "high": pa.array([Decimal("12.00"), Decimal("12.50")], pa.decimal128(10, 2)),
            "low": pa.array([Decimal("9.75"), Decimal("11.00")], pa.decimal128(10, 2)),
            "close": pa.array([Decimal("11.00"), Decimal("12.00")], pa.decimal128(10, 2)),
            "volume": [100, 200],
            "__index_level_0__": [0, 1],
        }
    )
    lake.storage.write_parquet(layout.data_file("OLD"), legacy)
    legacy_day = legacy.slice(1, 1).set_column(
        1, "timestamp", pa.array([1578096000000], pa.timestamp("ms"))
    )
    lake.storage.write_parquet(layout.date_file("OLD", date(2020, 1, 4)), legacy_day)
    land(lake.storage, "OLD", DAYS[0], close=20.0)
    result = consolidate(lake, mode=ConsolidateMode.FULL, retention_days=10_000)
    assert result.ok, result.failures
    got = history(lake.storage, "OLD")
    assert [r["date"] for r in got] == [
        date(2020, 1, 2),
        date(2020, 1, 3),
        date(2020, 1, 4),
        DAYS[0],
    ]
    assert got[0]["open"] == 10.25 and got[1]["close"] == 12.0 and got[-1]["close"] == 20.0
    assert lake.storage.read_parquet(layout.data_file("OLD")).schema.names == list(
        rows("X", []).schema.names
    )


def test_incremental_uses_fetch_log_and_full_lists_everything(lake: Lake) -> None:
    land(lake.storage, "LOGGED", DAYS[0])
    land(lake.storage, "UNLOGGED", DAYS[0], log=False)
    incremental = consolidate(lake)
    assert incremental.selection == "fetch-log" and incremental.symbols_done == 1
    assert not lake.storage.exists(layout.data_file("UNLOGGED"))
    full = consolidate(lake, mode=ConsolidateMode.FULL)
    assert full.selection == "listing" and full.ok
    assert closes(lake.storage, "UNLOGGED") == {DAYS[0]: 10.0}
    only = consolidate(lake, symbols=["LOGGED"])
    assert only.selection == "symbols" and only.symbols_planned == 0


def test_without_fetch_log_it_lists(lake: Lake) -> None:
    land(lake.storage, "A", DAYS[0], log=False)
    result = consolidate(lake)
    assert result.selection == "listing" and result.symbols_done == 1


def test_dry_run_plans_and_changes_nothing(lake: Lake) -> None:
    for day in DAYS[:3]:
        land(lake.storage, "DRY", day)
    result = consolidate(lake, dry_run=True)
    assert result.dry_run and result.ok
    assert (result.symbols_planned, result.files_planned) == (1, 3) and result.bytes_planned > 0
    assert result.plan[0]["symbol"] == "DRY" and result.plan[0]["rows"] == 3
    assert not lake.storage.exists(layout.data_file("DRY"))
    assert read_manifest(lake.storage)[0] == {}
    assert not lake.storage.list_objects(layout.RUNS_PREFIX)


def test_two_shards_at_once_complete_the_manifest(lake: Lake) -> None:
    symbols = [f"S{i}" for i in range(16)]
    for symbol in symbols:
        for day in DAYS[:2]:
            land(lake.storage, symbol, day)
    results: dict[int, ConsolidateResult] = {}

    def shard(k: int) -> None:
        results[k] = consolidate(lake, shard=(k, 2), workers=2)

    threads = [threading.Thread(target=shard, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results.values())
    assert sum(r.symbols_done for r in results.values()) == 16
    assert {r.shard for r in results.values()} == {"0/2", "1/2"}
    manifest = read_manifest(lake.storage)[0]
    assert sorted(manifest) == sorted(symbols)
    assert results[0].symbols_done == sum(1 for s in symbols if shard_of(s, 2) == 0)


def test_shard_parsing_and_environment() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x/2", "1", "-1/3", "0/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert resolve_shard(None, None, {}) is None
    child = {"AWS_BATCH_JOB_ARRAY_INDEX": "2"}
    assert resolve_shard(None, 3, child) == (2, 3)
    assert resolve_shard((0, 5), None, child) == (0, 5)
    assert resolve_shard((1, 3), 3, child) == (1, 3)
    # a plain job (no array index) with the array's count consolidates everything
    assert resolve_shard(None, 4, {}) is None
    # the reserved size variable is never read, whatever it says
    assert resolve_shard(None, None, {"AWS_BATCH_JOB_ARRAY_SIZE": "3"}) is None
    assert resolve_shard(None, 3, {**child, "AWS_BATCH_JOB_ARRAY_SIZE": "9"}) == (2, 3)
    with pytest.raises(UsageError, match="no shard count"):
        resolve_shard(None, None, child)
    with pytest.raises(UsageError, match="more children than shards"):
        resolve_shard(None, 2, child)
    with pytest.raises(UsageError, match="not a shard number"):
        resolve_shard(None, 4, {"AWS_BATCH_JOB_ARRAY_INDEX": "x"})
    with pytest.raises(UsageError, match="between 0 and 3"):
        resolve_shard(None, 4, {"AWS_BATCH_JOB_ARRAY_INDEX": "-1"})
    with pytest.raises(UsageError, match="disagree"):
        resolve_shard((0, 4), 3, {})
    with pytest.raises(UsageError, match="at least 1"):
        resolve_shard(None, 0, child)
    assert len({shard_of(f"SYM{i}", 4) for i in range(100)}) == 4


def test_shard_count_from_the_setting(local_lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """consolidate.shards (CONDVEST_CONSOLIDATE__SHARDS) gives the count, the array index the
    shard; without an index the run is whole; an explicit --shard beats the setting."""
    ctx = local_lake.context(now=NOW, consolidate={"shards": 2})
    assert plan_consolidate(ctx, ConsolidateOptions()).shard is None
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    assert plan_consolidate(ctx, ConsolidateOptions()).shard == (1, 2)
    assert plan_consolidate(ctx, ConsolidateOptions(shard=(0, 3))).shard == (0, 3)
    assert plan_consolidate(ctx, ConsolidateOptions(shards=4)).shard == (1, 4)
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "2")
    with pytest.raises(UsageError, match=r"consolidate\.shards 2"):
        plan_consolidate(ctx, ConsolidateOptions())


def test_out_of_time_stops_cleanly(lake: Lake) -> None:
    land(lake.storage, "LATE", DAYS[0])
    ctx = lake.context(now=NOW)
    plan = plan_consolidate(ctx, ConsolidateOptions())
    ctx.deadline = time.monotonic() + 1  # inside the safety margin already
    result = run_consolidate(ctx, plan)
    assert result.partial and result.symbols_done == 0 and result.ok
    assert not lake.storage.exists(layout.data_file("LATE"))
    assert date_files(lake.storage, "LATE") == [DAYS[0]]


def test_many_batches_are_all_recorded_and_cleaned(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches overlap (the next one merges while the previous one is recorded): every merged
    symbol still ends up in the manifest, cleanup runs only for recorded symbols, and a failed
    symbol in the middle keeps its files."""
    from condvest.jobs.consolidate import job

    monkeypatch.setattr(job, "_MANIFEST_BATCH", 2)
    names = [f"B{i}" for i in range(7)]
    for symbol in names:
        for day in DAYS[:2]:
            land(lake.storage, symbol, day)
    lake.storage.write_bytes(layout.data_file("B3"), b"junk")
    result = consolidate(lake, retention_days=0)
    assert not result.ok and [f["symbol"] for f in result.failures] == ["B3"]
    assert result.symbols_done == 6 and result.files_deleted == 12
    manifest, _ = read_manifest(lake.storage)
    assert sorted(manifest) == [n for n in names if n != "B3"]
    assert all(manifest[n].row_count == 2 for n in manifest)
    assert date_files(lake.storage, "B3") == DAYS[:2]
    assert all(date_files(lake.storage, n) == [] for n in manifest)


def test_a_deadline_between_batches_leaves_nothing_unrecorded(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deadline passes while the second batch is merging: the run stops with partial, every
    data.parquet it swapped in is in the manifest, and the next run does the rest."""
    from condvest.jobs.consolidate import job

    monkeypatch.setattr(job, "_MANIFEST_BATCH", 2)
    names = [f"D{i}" for i in range(6)]
    for symbol in names:
        land(lake.storage, symbol, DAYS[0])
    merge = job._merge_symbol
    calls = 0

    def counted(ctx: Any, plan: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            ctx.deadline = time.monotonic()  # out of time from now on
        return merge(ctx, plan)

    monkeypatch.setattr(job, "_merge_symbol", counted)
    ctx = lake.context(now=NOW, consolidate={"workers": 1})
    first = run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions()))
    assert first.partial and first.ok and 2 <= first.symbols_done < len(names)
    manifest, _ = read_manifest(lake.storage)
    merged = [n for n in names if lake.storage.exists(layout.data_file(n))]
    assert sorted(manifest) == merged and len(merged) == first.symbols_done
    monkeypatch.setattr(job, "_merge_symbol", merge)
    second = consolidate(lake)
    assert second.ok and not second.partial
    assert second.symbols_done == len(names) - first.symbols_done
    assert sorted(read_manifest(lake.storage)[0]) == names


def test_bad_options(lake: Lake) -> None:
    ctx = lake.context(now=NOW)
    with pytest.raises(UsageError, match="--workers 0"):
        plan_consolidate(ctx, ConsolidateOptions(workers=0))
    with pytest.raises(UsageError, match="-3"):
        plan_consolidate(ctx, ConsolidateOptions(retention_days=-3))


def _cli(lake: Lake, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(lake.env())
    return cli_proc.run(["--output", "json", *args], env=env)


def test_cli_exit_codes(lake: Lake) -> None:
    land(lake.storage, "CLI", DAYS[0])
    land(lake.storage, "BROKEN", DAYS[0])
    lake.storage.write_bytes(layout.data_file("BROKEN"), b"junk")
    bad = _cli(lake, "consolidate", "--shard", "3/2")
    assert bad.returncode == 2 and "--shard 3/2" in bad.stderr
    dry = _cli(lake, "consolidate", "--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["symbols_planned"] == 2
    out = _cli(lake, "consolidate", "--workers", "2", "--retention-days", "5000")
    assert out.returncode == 1, out.stderr
    body = json.loads(out.stdout)
    assert body["failures"][0]["symbol"] == "BROKEN" and body["symbols_done"] == 1
    assert closes(lake.storage, "CLI") == {DAYS[0]: 10.0}


def test_new_session_is_found_despite_a_host_clock_manifest(lake: Lake) -> None:
    """A manifest written by another tool (the seed job) with a host-clock last_updated that is
    later than the storage's times: a newly landed session is still found."""
    from datetime import UTC, datetime

    from condvest.state.manifest import ManifestRow, update_manifest

    lake.storage.write_parquet(layout.data_file("SEED"), rows("SEED", DAYS[:2]))
    future = datetime.now(UTC) + timedelta(days=1)
    update_manifest(lake.storage, {"SEED": ManifestRow("SEED", DAYS[1], 2, future, DAYS[0])})
    land(lake.storage, "SEED", DAYS[2])
    result = consolidate(lake)
    assert result.ok and result.selection == "fetch-log" and result.rows_added == 1
    assert sorted(closes(lake.storage, "SEED")) == DAYS[:3]


def test_cleanup_journal_is_finished_by_each_shard(lake: Lake) -> None:
    """A run killed after its manifest update leaves a journal; shards finish their share and
    hand the rest on, until no journal is left and every old merged file is gone."""
    symbols = [f"J{i}" for i in range(6)]
    old = date(2025, 11, 3)
    for symbol in symbols:
        land(lake.storage, symbol, old)
    assert consolidate(lake, skip_cleanup=True).ok  # merged, nothing deleted
    lake.storage.write_json(layout.cleanup_journal("crashed"), {"symbols": symbols})
    first = consolidate(lake, shard=(0, 2), retention_days=30)
    mine = [s for s in symbols if shard_of(s, 2) == 0]
    assert first.ok and first.files_deleted == len(mine)
    left = [o.key for o in lake.storage.list_objects(layout.CLEANUP_JOURNAL_PREFIX)]
    assert len(left) == 1 and sorted(lake.storage.read_json(left[0])["symbols"]) == sorted(
        set(symbols) - set(mine)
    )
    second = consolidate(lake, shard=(1, 2), retention_days=30)
    assert second.ok and second.files_deleted == len(symbols) - len(mine)
    assert not lake.storage.list_objects(layout.CLEANUP_JOURNAL_PREFIX)
    assert all(date_files(lake.storage, s) == [] for s in symbols)
    assert consolidate(lake, retention_days=30).symbols_planned == 0


def test_no_cleanup_when_the_manifest_cannot_be_recorded(lake: Lake) -> None:
    old = date(2025, 11, 3)
    land(lake.storage, "MAN", old)
    ctx = lake.context(now=NOW)
    plan = plan_consolidate(ctx, ConsolidateOptions(retention_days=30))
    lake.storage.write_bytes(layout.CONSOLIDATION_MANIFEST, b"not parquet")
    result = run_consolidate(ctx, plan)
    assert not result.ok and "manifest" in result.failures[0]["reason"]
    assert result.files_deleted == 0 and date_files(lake.storage, "MAN") == [old]
    assert closes(lake.storage, "MAN") == {old: 10.0}

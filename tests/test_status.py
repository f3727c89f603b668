"""``condvest status`` on a lake with data (local disk and S3, in-process with a fixed clock) and
``status --check`` exit codes (subprocess, real clock)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from condvest.cli.output import OutputFormat, render
from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.core.schema import BRONZE_SCHEMA
from condvest.errors import StorageError
from condvest.jobs.status.job import check_failed, run_status
from condvest.state import (
    ManifestRow,
    RunRecord,
    SessionEntry,
    StageLock,
    advance_watermark,
    record_session,
    update_manifest,
    write_checkpoint,
    write_run_record,
)
from condvest.storage import Storage
from conftest import Lake, at, make_local_lake, make_s3_lake
from test_cli import run_cli

NOW = at("2026-11-25T22:00:00")  # after Wednesday's close + 15 minutes
D = date.fromisoformat


def bronze_rows(symbol: str, days: list[date]) -> pa.Table:
    n = len(days)
    return pa.table(
        {
            "symbol": [symbol] * n,
            "date": days,
            "open": [10.0] * n,
            "high": [11.0] * n,
            "low": [9.0] * n,
            "close": [10.5] * n,
            "volume": [1000.0] * n,
            "vwap": [10.2] * n,
            "transactions": [5] * n,
            "fetched_at": [datetime(2026, 11, 25, 22, tzinfo=UTC)] * n,
            "source": ["test"] * n,
        },
        schema=BRONZE_SCHEMA,
    )


def land(storage: Storage, symbols: list[str], day: date, run_id: str = "r-land") -> None:
    """What fetch does for one session: date files, then the fetch-log entry."""
    for symbol in symbols:
        storage.write_parquet(layout.date_file(symbol, day), bronze_rows(symbol, [day]))
    record_session(
        storage,
        SessionEntry(
            session=day,
            status="landed",
            rows=len(symbols),
            run_id=run_id,
            fetched_at=datetime.now(UTC).isoformat(),
            source="test",
            symbols=symbols,
        ),
    )


def record_run(storage: Storage, stage: str, outcome: str, error: str | None = None) -> None:
    started = datetime.now(UTC)
    record = RunRecord(stage=stage, run_id=f"{stage}-1", started_at=started.isoformat())
    write_run_record(storage, record.finished(outcome, started, {"rows": 1}, error))  # type: ignore[arg-type]


def build_lake_with_data(lake: Lake) -> None:
    storage = lake.storage
    # Sessions 11-18 .. 11-25; the fetch log lacks 11-20 (a gap status must report).
    for day in (D("2026-11-18"), D("2026-11-19"), D("2026-11-23"), D("2026-11-24")):
        record_session(
            storage,
            SessionEntry(day, "landed", 1, "r0", "2026-11-25T00:00:00+00:00", "test", ["AAPL"]),
        )
    # AAPL: consolidated through 11-24 (5 rows), its merged date files kept, 11-25 pending.
    history = [D(x) for x in ("2026-11-18", "2026-11-19", "2026-11-20", "2026-11-23")]
    history.append(D("2026-11-24"))
    storage.write_parquet(layout.data_file("AAPL"), bronze_rows("AAPL", history))
    for day in history[-2:]:
        storage.write_parquet(layout.date_file("AAPL", day), bronze_rows("AAPL", [day]))
    update_manifest(
        storage,
        {
            "AAPL": ManifestRow(
                "AAPL",
                D("2026-11-24"),
                5,
                datetime.now(UTC) + timedelta(minutes=1),  # merged after its files landed
                D("2026-11-18"),
            )
        },
    )
    land(storage, ["AAPL", "BRK.A", "INF"], D("2026-11-25"))
    storage.write_parquet(
        layout.date_file("BRK.A", D("2026-11-24")), bronze_rows("BRK.A", [D("2026-11-24")])
    )
    advance_watermark(storage, D("2026-11-25"), run_id="r-land")
    # Debris: a crashed write's temp file, a stray file that is not a date file.
    storage.write_bytes(layout.temp_key(layout.data_file("INF"), "abc123"), b"partial")
    storage.write_bytes(layout.symbol_prefix("AAPL") + "date=2026-13-01.parquet", b"junk")
    # Runs: fetch succeeded, consolidate failed.
    record_run(storage, "fetch", "success")
    record_run(storage, "consolidate", "failed", "disk full")
    # Quarantine: a readable file with 2 rows and an unreadable one.
    reasons = pa.table({"symbol": ["BAD", "BAD"], "reason": ["high < low", "price <= 0"]})
    storage.write_parquet(layout.quarantine_file(D("2026-11-25"), "r-land"), reasons)
    storage.write_bytes(layout.quarantine_file(D("2026-11-24"), "r-x"), b"not parquet")
    # Silver: one month of 5-day bars with its checkpoint; a 7d directory not configured.
    storage.write_bytes(layout.silver_file(5, 2026, 11), b"bars")
    write_checkpoint(storage, 5, {"through": "2026-11-20"})
    storage.write_bytes(layout.silver_file(7, 2026, 10), b"bars")
    # A stale fetch lock left by a crashed run.
    StageLock(
        storage, "fetch", run_id="crashed", ttl_s=60, clock=lambda: NOW - timedelta(hours=2)
    ).acquire()


def test_status_with_data(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    build_lake_with_data(lake)
    result = run_status(lake.context(now=NOW))
    body = result.to_dict()
    assert body["lake"] == lake.storage.uri
    assert body["latest_completed_session"] == "2026-11-25"
    assert body["latest_landed_session"] == "2026-11-25"
    assert body["watermark"] == "2026-11-25"
    assert body["stale"] is False
    bronze = body["bronze"]
    assert bronze["symbols"] == 3
    assert bronze["consolidated_symbols"] == 1
    assert bronze["data_files"] == 1
    assert bronze["date_files"] == 6  # AAPL 3, BRK.A 2, INF 1 (the stray file is not one)
    assert bronze["pending_date_files"] == 4  # AAPL 11-25, BRK.A 2, INF 1
    assert bronze["pending_symbols"] == 3
    assert bronze["rows"] == 5 + 4
    assert bronze["first_date"] == "2026-11-18"
    assert bronze["last_date"] == "2026-11-25"
    assert bronze["temp_files"] == 1
    assert bronze["bytes"] > 0
    assert body["missing_sessions"] == {
        "count": 1,
        "since": "2026-11-18",
        "sessions": ["2026-11-20"],
        "reasons": {},
    }
    assert body["runs"]["fetch"]["outcome"] == "success"
    assert body["runs"]["consolidate"]["outcome"] == "failed"
    assert body["runs"]["consolidate"]["error"] == "disk full"
    assert body["runs"]["resample"]["outcome"] is None
    assert set(body["runs"]) == {"fetch", "consolidate", "resample", "vacuum", "run"}
    assert body["quarantine"] == {"files": 2, "rows": 2, "unreadable_files": 1}
    assert body["silver"]["5d"] == {
        "months": 1,
        "first_month": "2026-11",
        "last_month": "2026-11",
        "bytes": 4,
        "through": "2026-11-20",
        "configured": True,
        "lag_sessions": 3,  # 11-23, 11-24, 11-25: the sessions bronze holds after 11-20
    }
    assert body["silver"]["7d"]["configured"] is False
    assert body["silver"]["7d"]["months"] == 1
    assert body["silver"]["34d"]["months"] == 0
    assert [lock["stage"] for lock in body["locks"]] == ["fetch"]
    assert body["locks"][0]["expired"] is True
    assert body["healthy"] is False
    problems = " | ".join(body["problems"])
    assert "1 session(s) missing from the fetch log, e.g. 2026-11-20" in problems
    assert "the last consolidate run failed (consolidate-1): disk full" in problems
    assert "stale fetch lock of run crashed" in problems
    assert "1 temporary file(s)" in problems
    # 5d was built through 11-20; bronze holds 11-25 (7d is not configured: not reported)
    assert "silver 5d is only through 2026-11-20 while bronze holds 2026-11-25" in problems
    assert "7d" not in problems and body["silver_stale"] is True
    assert check_failed(result)  # the failed consolidate run
    json.dumps(body)  # JSON-ready as is

    render(body, OutputFormat.TEXT, title="condvest status")
    text = capsys.readouterr().out
    for line in ("missing_sessions", "bronze", "runs", "quarantine", "silver"):
        assert line in text.splitlines()
    assert "2026-11-20" in text
    assert "disk full" in text


def test_status_before_the_close_wants_the_previous_session(lake: Lake) -> None:
    land(lake.storage, ["AAPL"], D("2026-11-24"))
    before_close = run_status(lake.context(now=at("2026-11-25T20:00:00")))
    assert before_close.latest_completed_session == "2026-11-24"
    assert not before_close.stale and before_close.healthy
    assert not check_failed(before_close)
    after_close = run_status(lake.context(now=NOW))
    assert after_close.stale
    assert check_failed(after_close)
    assert after_close.problems == [
        "latest landed session 2026-11-24 is behind the latest completed session 2026-11-25",
        "1 session(s) missing from the fetch log, e.g. 2026-11-25",
    ]


def test_healthy_and_check_come_from_one_problem_list(lake: Lake) -> None:
    """Every problem has a kind and says whether it fails --check: healthy is "no problem",
    --check fails on any failing one, and the JSON carries the list beside the messages."""
    land(lake.storage, ["AAPL"], D("2026-11-24"))
    lake.storage.write_bytes("bronze/raw_ohlcv/symbol=AAPL/.tmp-0123456789ab-x.parquet", b"")
    quiet = run_status(lake.context(now=at("2026-11-25T20:00:00")))
    kinds = [(p.kind, p.fails_check) for p in quiet.problem_list]
    assert kinds == [("temp-files", False)]
    assert not quiet.healthy and not check_failed(quiet)  # shown, but not a failed check
    late = run_status(lake.context(now=NOW))
    assert ("stale", True) in [(p.kind, p.fails_check) for p in late.problem_list]
    assert check_failed(late) and late.problems == [p.message for p in late.problem_list]
    body = late.to_dict()
    assert body["problem_list"][0] == {
        "kind": "stale",
        "message": body["problems"][0],
        "fails_check": True,
    }


def test_status_on_an_absent_lake(lake: Lake) -> None:
    result = run_status(lake.context(now=NOW))
    assert result.stale and not result.healthy
    assert result.problems == ["the lake holds no data yet: run condvest fetch"]
    assert result.bronze["symbols"] == 0
    assert result.quarantine == {"files": 0, "rows": 0, "unreadable_files": 0}
    assert check_failed(result)


def test_status_on_a_missing_bucket(moto_endpoint: str, s3_bucket: str) -> None:
    """A missing bucket is a broken lake URI, not an empty lake (nor a missing prefix)."""
    lake = make_s3_lake(moto_endpoint, "no-such-bucket")
    with pytest.raises(StorageError) as info:
        run_status(lake.context(now=NOW))
    assert str(info.value) == "bucket 'no-such-bucket' does not exist (create it or fix --lake)"
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        lake.storage.read_json_versioned(layout.watermark("ohlcv_daily"))


# -- status --check in a subprocess (the real clock) ------------------------------------------
def fresh_lake(root: Path) -> Lake:
    """A lake holding the latest completed session (and the next one, in case its close passes
    while the test runs)."""
    lake = make_local_lake(root)
    now = datetime.now(UTC)
    cal = get_calendar()
    latest = cal.latest_completed_session(now, 15)
    soon = cal.latest_completed_session(now + timedelta(minutes=10), 15)
    for day in sorted({latest, soon}):
        land(lake.storage, ["AAPL", "MSFT"], day)
    record_run(lake.storage, "fetch", "success")
    return lake


def check(lake: Lake, cwd: Path) -> tuple[int, dict[str, object]]:
    out = run_cli("--output", "json", "--lake", lake.uri, "status", "--check", cwd=cwd)
    assert "Traceback" not in out.stderr
    return out.returncode, json.loads(out.stdout)


def test_check_fresh_lake_exits_0(tmp_path: Path) -> None:
    code, body = check(fresh_lake(tmp_path / "lake"), tmp_path)
    assert code == 0, body["problems"]
    assert body["stale"] is False
    assert body["healthy"] is True


def test_check_stale_lake_exits_1(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    cal = get_calendar()
    latest = cal.latest_completed_session(datetime.now(UTC), 15)
    previous = cal.previous_session(latest)
    assert previous is not None
    land(lake.storage, ["AAPL"], previous)
    code, body = check(lake, tmp_path)
    assert code == 1
    assert body["stale"] is True
    empty_code, empty = check(make_local_lake(tmp_path / "empty"), tmp_path)
    assert empty_code == 1 and empty["stale"] is True


def test_check_failed_last_run_exits_1(tmp_path: Path) -> None:
    lake = fresh_lake(tmp_path / "lake")
    record_run(lake.storage, "resample", "failed", "out of memory")
    code, body = check(lake, tmp_path)
    assert code == 1
    assert body["stale"] is False
    assert body["runs"]["resample"]["outcome"] == "failed"  # type: ignore[index]
    # Without --check the same lake exits 0: status itself worked.
    plain = run_cli("--lake", lake.uri, "-q", "status", cwd=tmp_path)
    assert plain.returncode == 0


def test_temp_files_outside_bronze_ohlcv_are_reported(local_lake: Lake) -> None:
    """A process killed while writing a silver month file or a fetch-log entry leaves a temp file
    there (found by the crash suite); status reports it and vacuum removes it."""
    from condvest.jobs.vacuum.job import VacuumOptions, plan_vacuum, run_vacuum

    storage = local_lake.storage
    for key in (layout.silver_file(3, 2026, 11), layout.fetch_log_entry(date(2026, 11, 25))):
        storage.write_bytes(layout.temp_key(key, "dead0001beef"), b"half a write")
    status = run_status(local_lake.context(now=at("2026-11-26T12:00")))
    assert status.bronze["temp_files"] == 0 and status.bronze["temp_files_elsewhere"] == 2
    assert any("2 temporary file(s)" in p for p in status.problems)
    ctx = local_lake.context(vacuum={"temp_grace_hours": 0})
    assert run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions())).temp_files_deleted == 2
    assert run_status(ctx).bronze["temp_files_elsewhere"] == 0


def test_a_failed_shard_is_not_hidden_by_another_shards_success(tmp_path: Path) -> None:
    """consolidate as an AWS Batch array job: each shard records its own last run. When shard
    0/2 fails and shard 1/2 finishes after it, the stage's latest.json says success; status
    still reports the failed shard (and --check exits 1) until a later whole run succeeds."""
    from condvest.core.retention import shard_of
    from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate

    lake = fresh_lake(tmp_path / "lake")
    symbols = ["AAPL", "MSFT", "IBM", "KO", "XOM", "GE"]
    bad = next(s for s in symbols if shard_of(s, 2) == 0)
    assert any(shard_of(s, 2) == 1 for s in symbols)
    lake.storage.write_bytes(layout.data_file(bad), b"not parquet")
    land(lake.storage, symbols, get_calendar().latest_completed_session(datetime.now(UTC), 15))

    def consolidate(shard: tuple[int, int] | None) -> bool:
        ctx = lake.context()
        plan = plan_consolidate(ctx, ConsolidateOptions(shard=shard, skip_cleanup=True))
        return run_consolidate(ctx, plan).ok

    assert not consolidate((0, 2))
    assert consolidate((1, 2))
    status = run_status(lake.context())
    runs = status.runs["consolidate"]
    assert runs["outcome"] == "success"  # latest.json: shard 1/2, which finished last
    assert runs["parts"]["shard-0-of-2"]["outcome"] == "failed"
    assert runs["failed_parts"] == ["shard-0-of-2"]
    assert any("consolidate run of shard-0-of-2 failed" in p and bad in p for p in status.problems)
    assert check_failed(status)
    assert [lock["stage"] for lock in status.locks] == []  # both shards released theirs
    text = run_cli("--lake", lake.uri, "status", "--check", cwd=tmp_path)
    assert text.returncode == 1
    assert "shard-0-of-2 failed (" in text.stdout and "shard-1-of-2 success (" in text.stdout
    assert "{'" not in text.stdout  # one line per shard, not a dict in a cell

    lake.storage.delete(layout.data_file(bad))  # the operator fixes the file...
    assert consolidate(None)  # ...and re-runs the whole stage
    status = run_status(lake.context())
    assert status.runs["consolidate"]["failed_parts"] == []
    assert not any("consolidate" in p for p in status.problems), status.problems
    assert not check_failed(status)


def test_status_shows_a_shard_lock(local_lake: Lake) -> None:
    StageLock(local_lake.storage, "consolidate-shard-2-of-4", run_id="r-shard", ttl_s=600).acquire()
    status = run_status(local_lake.context())
    assert [(lock["stage"], lock["run_id"]) for lock in status.locks] == [
        ("consolidate-shard-2-of-4", "r-shard")
    ]


def test_a_failed_runs_record_says_what_failed() -> None:
    """The run record's error (what status shows) names what failed, not just "failed"."""
    from condvest.jobs.base import Failure
    from condvest.jobs.consolidate.job import ConsolidateResult
    from condvest.jobs.fetch import FetchResult
    from condvest.jobs.resample.job import ResampleResult

    base = {"run_id": "r", "dry_run": False, "ok": False, "duration_s": 1.0}
    failures = [{"symbol": f"S{i}", "reason": "unreadable"} for i in range(5)]
    consolidate = ConsolidateResult(stage="consolidate", failures=failures, **base)
    assert consolidate.failure_summary() == (
        "5 failed: S0: unreadable; S1: unreadable; S2: unreadable (+2 more)"
    )
    fetch = FetchResult(stage="fetch", failed={"2026-11-25": "HTTP 503 after 5 attempts"}, **base)
    assert fetch.failure_summary() == "1 failed: 2026-11-25: HTTP 503 after 5 attempts"
    resample = ResampleResult(stage="resample", failed_intervals=[3, 21], **base)
    assert resample.failure_summary() == "2 failed: 3d; 21d"
    errors = {"3d": {"error": "month unreadable"}}
    resample = ResampleResult(stage="resample", failed_intervals=[3], intervals=errors, **base)
    assert resample.failure_summary() == "1 failed: 3d: month unreadable"
    # One shape for every stage: (what, why), from which each summary above is derived.
    assert fetch.failure_list() == (Failure("2026-11-25", "HTTP 503 after 5 attempts"),)
    assert consolidate.failure_list()[0] == Failure("S0", "unreadable")
    db = ConsolidateResult(stage="consolidate", database_error="cannot connect", **base)
    assert db.failure_list() == (Failure("", "PostgreSQL: cannot connect"),)
    assert db.failure_summary() == "PostgreSQL: cannot connect"
    long = ConsolidateResult(
        stage="consolidate", failures=[{"symbol": "X", "reason": "y" * 900}], **base
    )
    assert len(long.failure_summary()) == 500


def test_silver_behind_bronze_fails_the_check_until_resample_runs(tmp_path: Path) -> None:
    """resample stopped running (disabled, or failing before it records a run): bronze is
    fresh, silver is not. status says so and --check exits 1; a resample clears it. A lake whose
    silver was never built is not reported (bronze-only lakes are fine)."""
    from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample

    lake = fresh_lake(tmp_path / "lake")
    assert not check_failed(run_status(lake.context()))  # no silver built: nothing to say
    cal = get_calendar()
    latest = D(str(run_status(lake.context()).latest_landed_session))
    previous = cal.previous_session(latest)
    assert previous is not None
    write_checkpoint(lake.storage, 3, {"through": previous.isoformat()})
    status = run_status(lake.context())
    assert status.silver_stale and check_failed(status)
    assert any(p.startswith("silver 3d is only through") for p in status.problems)
    ctx = lake.context()
    assert run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True))).ok
    after = run_status(lake.context())
    assert not after.silver_stale and not check_failed(after), after.problems

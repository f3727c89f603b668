"""Lake → PostgreSQL: the sync heals divergence (local disk and S3 lakes), every stage's run is
mirrored into job_runs without a database failure hiding the job's outcome, and status shows the
database beside the lake."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import cli_proc
from condvest.core import layout
from condvest.errors import CondvestError, UsageError
from condvest.jobs.base import JobResult, run_stage
from condvest.jobs.fetch.dbsync import plan_db_sync, run_db_sync, sync_if_behind
from condvest.jobs.status.job import check_failed, run_status
from condvest.sinks.pg_schema import latest_version
from condvest.sinks.postgres import PostgresSink
from condvest.state.fetchlog import SessionEntry, advance_watermark, record_session
from condvest.state.runs import last_runs
from conftest import Lake, at
from pg_helpers import bronze, pg_settings

pytestmark = pytest.mark.postgres

D1, D2, D3, D4, D5, D6 = (date(2026, 1, d) for d in (2, 5, 6, 7, 8, 9))
NOW = at("2026-01-10T12:00:00")
SYMBOLS = ["AAA", "BBB", "INF"]


@pytest.fixture
def sink(pg_schema: tuple[str, str]) -> Iterator[PostgresSink]:
    dsn, schema = pg_schema
    with PostgresSink.from_settings(pg_settings(dsn, schema)) as opened:
        yield opened


def land(lake: Lake, day: date, symbols: Sequence[str], *, listed: Sequence[str] = ()) -> pa.Table:
    """Write one session as fetch does: a date file per symbol, then its fetch-log entry."""
    table = bronze(symbols, [day], close=10.0 + day.day)
    for symbol in symbols:
        one = table.filter(pc.equal(table.column("symbol"), symbol))
        lake.storage.write_parquet(layout.date_file(symbol, day), one)
    names = list(listed or symbols)
    record_session(
        lake.storage,
        SessionEntry(day, "landed", len(names), "run", NOW.isoformat(), "test", names),
    )
    advance_watermark(lake.storage, day, run_id="run")
    return table


def db_rows(sink: PostgresSink) -> set[tuple[str, date, float]]:
    import psycopg

    with psycopg.connect(sink._resolve().conninfo) as conn:
        rows = conn.execute(f'select symbol, date, close from "{sink.schema}".raw_ohlcv').fetchall()
    return {(r[0], r[1], r[2]) for r in rows}


def test_sync_heals_lake_db_divergence(lake: Lake, sink: PostgresSink) -> None:
    tables = [land(lake, day, SYMBOLS) for day in (D1, D2, D3, D4)]
    # AAA was consolidated through D3 and its older date files vacuumed: rows come from
    # data.parquet for D1/D2 and from date files for the rest.
    history = pa.concat_tables([t.filter(pc.equal(t.column("symbol"), "AAA")) for t in tables[:3]])
    lake.storage.write_parquet(layout.data_file("AAA"), history)
    lake.storage.delete_many([layout.date_file("AAA", D1), layout.date_file("AAA", D2)])
    # The database took D1, then its writes failed while the lake went on.
    sink.upsert_session(D1, tables[0], run_id="run")
    ctx = lake.context(now=NOW)

    plan = plan_db_sync(ctx, sink)
    assert plan.sessions == (D2, D3, D4)
    assert plan.data_files == 1  # AAA's data.parquet, for D2 only

    result = run_db_sync(ctx, sink, plan=plan)
    assert result.ok, result
    assert (result.sessions, result.rows_read, result.rows_changed) == (3, 9, 9)
    assert (result.watermark_before, result.watermark_after) == ("2026-01-02", "2026-01-07")
    lake_rows = {(r["symbol"], r["date"], r["close"]) for t in tables for r in t.to_pylist()}
    assert db_rows(sink) == lake_rows
    assert sink.watermark() == D4

    again = run_db_sync(ctx, sink)
    assert (again.sessions, again.rows_changed, again.ok) == (0, 0, True)

    # A range re-sync repairs a row that drifted, without moving the watermark.
    sink.upsert_rows(bronze(["BBB"], [D2], close=99.0))
    repaired = run_db_sync(ctx, sink, start=D2, end=D2)
    assert (repaired.rows_changed, repaired.watermark_after) == (1, "2026-01-07")
    assert db_rows(sink) == lake_rows


def test_sync_if_behind_only_runs_when_the_database_lags(lake: Lake, sink: PostgresSink) -> None:
    ctx = lake.context(now=NOW)
    assert sync_if_behind(ctx, sink) is None  # empty lake
    land(lake, D1, SYMBOLS)
    healed = sync_if_behind(ctx, sink)
    assert healed is not None and healed.ok and healed.watermark_after == "2026-01-02"
    assert sync_if_behind(ctx, sink) is None
    assert len(db_rows(sink)) == 3


def test_sync_never_advances_past_a_row_the_lake_lacks(lake: Lake, sink: PostgresSink) -> None:
    land(lake, D1, SYMBOLS)
    land(lake, D2, SYMBOLS, listed=[*SYMBOLS, "CCC"])  # CCC's file is gone
    land(lake, D3, SYMBOLS)
    result = run_db_sync(lake.context(now=NOW), sink)
    assert not result.ok
    assert (result.missing_rows, result.missing_examples) == (1, ["CCC 2026-01-05"])
    assert result.watermark_after == "2026-01-02"
    assert sink.watermark() == D1
    assert len(db_rows(sink)) == 9  # every row the lake has is still synced


def test_run_stage_records_the_run_in_job_runs(
    local_lake: Lake, pg_schema: tuple[str, str]
) -> None:
    dsn, schema = pg_schema
    ctx = local_lake.context(now=NOW, postgres={"dsn": dsn, "schema_name": schema})

    def body() -> JobResult:
        return JobResult(stage="fetch", run_id=ctx.run_id, dry_run=False, ok=True, duration_s=0.1)

    run_stage(ctx, "fetch", body)

    def failing() -> JobResult:
        raise CondvestError("upstream broke")

    with pytest.raises(CondvestError):
        run_stage(ctx, "consolidate", failing)
    ctx.close()
    ctx.close()  # twice is fine; the next use reconnects
    assert ctx.sink() is not None
    ctx.close()
    with PostgresSink.from_settings(pg_settings(dsn, schema)) as sink:
        runs = sink.last_runs()
    assert runs["fetch"]["outcome"] == "success" and runs["fetch"]["run_id"] == ctx.run_id
    assert runs["consolidate"]["outcome"] == "failed"
    assert runs["consolidate"]["error"] == "upstream broke"


def test_an_unwritable_database_fails_the_run_but_keeps_its_work(local_lake: Lake) -> None:
    """A configured database that cannot be reached fails the run (issue 14 item 5) — also one
    whose job did nothing — while the job's body still ran and its lake record says why."""
    password = "pw-not-shown-42"
    ctx = local_lake.context(
        now=NOW, postgres={"dsn": f"postgresql://postgres:{password}@127.0.0.1:1/test"}
    )
    ran: list[bool] = []

    def body() -> JobResult:
        ran.append(True)
        return JobResult(stage="fetch", run_id=ctx.run_id, dry_run=False, ok=True, duration_s=0.0)

    result = run_stage(ctx, "fetch", body)
    assert ran == [True]
    assert not result.ok and result.exit_code == 1
    assert result.database_error is not None
    assert result.database_error.startswith("cannot connect to PostgreSQL postgres@127.0.0.1:1/")
    assert result.to_dict()["database_error"] == result.database_error
    record = last_runs(local_lake.storage)["fetch"]
    assert record is not None and record.outcome == "failed"
    assert record.error is not None and record.error.startswith("PostgreSQL: cannot connect")
    assert "refused" in record.counts["database_error"]
    assert password not in json.dumps(record.counts) + record.error
    # Without PostgreSQL, the key is absent from the result.
    plain = local_lake.context(now=NOW)
    assert "database_error" not in run_stage(plain, "fetch", lambda: JobResult(
        stage="fetch", run_id=plain.run_id, dry_run=False, ok=True, duration_s=0.0
    )).to_dict()  # fmt: skip


def test_status_shows_the_database_beside_the_lake(local_lake: Lake, sink: PostgresSink) -> None:
    land(local_lake, D1, SYMBOLS)
    land(local_lake, D2, SYMBOLS)
    sink.upsert_session(D1, bronze(SYMBOLS, [D1], close=10.0 + D1.day), run_id="r")
    overrides = {
        "postgres": {"dsn": "postgresql://postgres@127.0.0.1:5432/test", "schema_name": sink.schema}
    }
    result = run_status(local_lake.context(now=NOW, **overrides))
    db = result.database
    assert db["enabled"] and db["watermark"] == "2026-01-02" and db["rows"] == 3
    assert db["behind_lake"] is True
    assert any("--sync-db" in p for p in result.problems)
    assert check_failed(result)
    run_db_sync(local_lake.context(now=NOW), sink)
    healed = run_status(local_lake.context(now=NOW, **overrides))
    assert healed.database["behind_lake"] is False
    assert healed.database["watermark"] == "2026-01-05"


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    full.update(env)
    return cli_proc.run(args, env=full, cwd=cwd)


def test_status_init_db_cli(tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    env = {
        "CONDVEST_POSTGRES__DSN": dsn,
        "CONDVEST_POSTGRES__SCHEMA_NAME": schema,
        "CONDVEST_LAKE__URI": str(tmp_path / "lake"),
    }
    # Plain status only reads: it reports the missing tables and creates nothing.
    plain = _cli(["--output", "json", "status"], env, tmp_path)
    assert plain.returncode == 0, plain.stderr
    body = json.loads(plain.stdout)
    assert body["database"]["schema_version"] == 0
    assert any("--init-db" in p for p in body["problems"])
    with PostgresSink.from_settings(pg_settings(dsn, schema)) as probe:
        assert probe.freshness().schema_version == 0
    out = _cli(["--output", "json", "status", "--init-db"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    db = json.loads(out.stdout)["database"]
    assert (db["schema_version_before"], db["schema_version"]) == (0, latest_version())
    off = _cli(["status", "--init-db"], {"CONDVEST_LAKE__URI": str(tmp_path / "lake")}, tmp_path)
    assert off.returncode == 2
    assert off.stderr.strip().count("\n") == 0 and "PostgreSQL" in off.stderr
    secret = "cli-pw-77x"
    bad = _cli(
        ["status", "--init-db"],
        {
            "CONDVEST_POSTGRES__DSN": f"postgresql://postgres:{secret}@127.0.0.1:1/test",
            "CONDVEST_LAKE__URI": str(tmp_path / "lake"),
        },
        tmp_path,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "refused" in bad.stderr
    assert secret not in bad.stderr + bad.stdout


def test_sync_reports_an_unreadable_file_and_stops_the_watermark_before_it(
    local_lake: Lake, sink: PostgresSink
) -> None:
    land(local_lake, D1, SYMBOLS)
    land(local_lake, D2, SYMBOLS)
    local_lake.storage.write_bytes(layout.date_file("BBB", D2), b"not parquet")
    result = run_db_sync(local_lake.context(now=NOW), sink)
    assert not result.ok and len(result.errors) == 1 and "BBB" in result.errors[0]
    assert result.watermark_after == "2026-01-02"
    assert ("AAA", D2, 15.0) in db_rows(sink)  # the readable rows still went in


def test_sync_out_of_time_stops_cleanly_without_moving_the_watermark(
    local_lake: Lake, sink: PostgresSink
) -> None:
    import time

    land(local_lake, D1, SYMBOLS)
    ctx = local_lake.context(now=NOW)
    ctx.deadline = time.monotonic()  # the Lambda's time is already up
    result = run_db_sync(ctx, sink)
    assert result.partial and result.watermark_after is None
    assert sink.watermark() is None


def test_init_db_is_its_own_call_and_status_init_db_its_alias(
    local_lake: Lake, pg_schema: tuple[str, str]
) -> None:
    """Lake.init_db() creates the tables (status stays read-only); status(init_db=True) runs it
    first and shows the upgrade where status --init-db always did."""
    from condvest.lake import Lake as PublicLake

    dsn, schema = pg_schema
    ctx = local_lake.context(now=NOW, postgres={"dsn": dsn, "schema_name": schema})
    with PublicLake(ctx) as lake:
        assert lake.status().database["schema_version"] == 0  # status created nothing
        made = lake.init_db()
        assert made.ok and (made.schema_version_before, made.schema_version) == (
            0,
            latest_version(),
        )
        assert made.to_dict()["stage"] == "init-db" and made.schema == schema
        again = lake.status(init_db=True).database
        assert (again["schema_version_before"], again["schema_version"]) == (latest_version(),) * 2
        assert list(again).index("schema_version_before") == list(again).index("target") + 1
    off = PublicLake(local_lake.context(now=NOW))
    with pytest.raises(UsageError, match="--init-db needs PostgreSQL"):
        off.init_db()
    off.close()

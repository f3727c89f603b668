"""``condvest fetch`` as a process: a run killed mid-session and re-run, host time zones, the
API key never printed, --dry-run, the offline synthetic demo, and the validation rules."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import cli_proc
from condvest.core import layout
from condvest.core.validate import validate_rows
from condvest.jobs.bronze import read_file
from condvest.sources.base import RAW_SCHEMA
from condvest.state.fetchlog import read_session
from condvest.state.lock import read_lock
from conftest import Lake, make_local_lake
from polygon_server import KEY, FakePolygon, Scripted, agg

DAY = date(2025, 1, 2)  # winter: the 16:00 New York close is 21:00 UTC, the next day in Tokyo


def cli(
    lake: Lake,
    polygon: FakePolygon | None,
    *args: str,
    env: dict[str, str] | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    full.update(lake.env())
    if polygon is not None:
        full.update(
            {
                "POLYGON_API_KEY": KEY,
                "CONDVEST_POLYGON__BASE_URL": polygon.url,
                "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "0",
                "CONDVEST_POLYGON__BACKOFF_BASE_S": "0.01",
                "CONDVEST_POLYGON__BACKOFF_MAX_S": "0.02",
                "CONDVEST_POLYGON__MAX_RETRIES": "2",
            }
        )
    full.update(env or {})
    return cli_proc.run(args, env=full, fresh=fresh)


@pytest.mark.slow
def test_killed_mid_session_then_rerun(tmp_path: Path, polygon: FakePolygon) -> None:
    lake = make_local_lake(tmp_path / "lake")
    symbols = [f"S{i:02d}" for i in range(12)]
    polygon.grouped[DAY] = [agg(s, DAY, 10.0 + i) for i, s in enumerate(symbols)]
    args = ("fetch", "--date", str(DAY))
    ttl = {"CONDVEST_LOCK__TTL_SECONDS": "10"}
    env = {"CONDVEST_TEST_KILL_AFTER_WRITES": "6", "CONDVEST_FETCH__WRITE_CONCURRENCY": "1"}
    killed = cli(lake, polygon, *args, env=env | ttl)
    assert killed.returncode == -9, killed.stderr
    # The generic hook (condvest.faults) kills just before the Nth storage mutation lands: on
    # local disk its bytes are already under a temporary name, which the next run leaves to
    # vacuum (status reports it).
    listed = [o.key for o in lake.storage.list_objects("bronze/raw_ohlcv/")]
    written = [k for k in listed if not layout.is_temp_key(k)]
    temps = [k for k in listed if layout.is_temp_key(k)]
    assert 0 < len(written) < len(symbols) and len(temps) == 1
    assert read_session(lake.storage, DAY) is None  # never recorded half a session
    # The dead run's lease has not expired, but its process provably died on this machine:
    # the re-run takes the stage lock over at once (tests/test_concurrency.py: the expiry path).
    holder = read_lock(lake.storage, "fetch")
    assert holder is not None and holder.pid != os.getpid()
    assert holder.expires > datetime.now(UTC)
    rerun = cli(lake, polygon, *args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"took over the fetch lock of run {holder.run_id}" in rerun.stderr
    keys = [o.key for o in lake.storage.list_objects("bronze/raw_ohlcv/")]
    done = [k for k in keys if not layout.is_temp_key(k)]
    assert sorted(done) == sorted(layout.date_file(s, DAY) for s in symbols)
    assert [k for k in keys if layout.is_temp_key(k)] == temps
    entry = read_session(lake.storage, DAY)
    assert entry is not None and entry.symbols == symbols and entry.rows == 12
    for s in symbols:
        assert read_file(lake.storage, layout.date_file(s, DAY)).num_rows == 1


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_host_time_zone_never_changes_dates(
    tmp_path: Path, polygon: FakePolygon, zone: str
) -> None:
    lake = make_local_lake(tmp_path / zone.replace("/", "_"))
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.ranges["AAPL"] = [agg(None, DAY), agg(None, date(2025, 1, 3))]
    # a fresh interpreter (tests/cli_proc.py): TZ is in force from start-up, import time included
    out = cli(lake, polygon, "fetch", "--date", str(DAY), env={"TZ": zone}, fresh=True)
    assert out.returncode == 0, out.stderr
    assert lake.storage.exists(layout.date_file("AAPL", DAY))
    hist = cli(
        lake,
        polygon,
        "fetch",
        "--history",
        "--symbols",
        "AAPL",
        "--start",
        str(DAY),
        "--end",
        "2025-01-03",
        env={"TZ": zone},
        fresh=True,
    )
    assert hist.returncode == 0, hist.stderr
    data = read_file(lake.storage, layout.data_file("AAPL"))
    assert data.column("date").to_pylist() == [DAY, date(2025, 1, 3)]


@pytest.mark.slow
def test_api_key_never_printed(tmp_path: Path, polygon: FakePolygon) -> None:
    lake = make_local_lake(tmp_path / "lake")
    polygon.page_size = 1  # next_url carries apiKey=<key>, as Polygon's may
    polygon.ranges["AAPL"] = [agg(None, DAY), agg(None, date(2025, 1, 3))]
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.fail("/v2/aggs/grouped/", Scripted(500, f"echo apiKey={KEY}"))
    runs = [
        cli(lake, polygon, "-v", "fetch", "--date", str(DAY)),
        cli(
            lake,
            polygon,
            "-v",
            "--output",
            "json",
            "fetch",
            "--history",
            "--symbols",
            "AAPL",
            "--start",
            str(DAY),
            "--end",
            "2025-01-03",
        ),
        cli(lake, polygon, "-v", "fetch", "--dry-run"),
    ]
    polygon.fail("/v2/aggs/grouped/", *[Scripted(503, KEY)] * 6)
    runs.append(cli(lake, polygon, "-v", "fetch", "--date", "2025-01-03"))
    runs.append(cli(lake, polygon, "fetch", "--date", "2025-01-06"))
    bad_key = cli(
        lake,
        polygon,
        "fetch",
        "--date",
        "2025-01-06",
        "--force",
        env={"POLYGON_API_KEY": "bad-" + KEY},
    )
    runs.append(bad_key)
    assert [r.returncode for r in runs[:2]] == [0, 0]
    assert runs[3].returncode == 1 and "HTTP 503" in runs[3].stderr
    assert runs[4].returncode == 1 and "HTTP 503" in runs[4].stderr
    assert bad_key.returncode == 2 and "API key" in bad_key.stderr
    assert bad_key.stderr.startswith("error: Polygon refused the API key (HTTP 401)")
    assert bad_key.stderr.count("\n") == 1  # one clear line, no traceback without -v
    for run in runs:
        assert KEY not in run.stdout + run.stderr
    assert any("retry" in r.stderr for r in runs)  # the logs were really captured


def test_dry_run_prints_plan_and_changes_nothing(tmp_path: Path, polygon: FakePolygon) -> None:
    lake = make_local_lake(tmp_path / "lake")
    out = cli(
        lake,
        polygon,
        "--output",
        "json",
        "fetch",
        "--start",
        "2025-01-02",
        "--end",
        "2025-01-10",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["dry_run"] is True and plan["mode"] == "daily"
    assert plan["sessions"] == [
        "2025-01-02",
        "2025-01-03",
        "2025-01-06",
        "2025-01-07",
        "2025-01-08",
        "2025-01-10",
    ]  # 2025-01-09: national mourning
    assert plan["requests"] == 8 and "estimated_s" in plan  # 6 sessions + splits + dividends
    assert polygon.seen == [] and not (tmp_path / "lake").exists()


def test_no_key_is_a_clear_usage_error(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    out = cli(lake, None, "fetch", env={"POLYGON_API_KEY": ""})
    assert out.returncode == 2
    assert out.stderr.startswith("error: no Polygon API key") and "synthetic" in out.stderr


@pytest.mark.slow
def test_synthetic_demo_is_deterministic_and_valid(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        lake = make_local_lake(tmp_path / name)
        out = cli(
            lake,
            None,
            "--output",
            "json",
            "fetch",
            "--source",
            "synthetic",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-31",
        )
        assert out.returncode == 0, out.stderr
        body = json.loads(out.stdout)
        assert body["source"] == "synthetic" and body["rows"] == 50 * 21
        assert body["quarantined"] == 0
        runs.append(
            read_file(lake.storage, layout.date_file("AB", date(2024, 1, 2)))
            if lake.storage.exists(layout.date_file("AB", date(2024, 1, 2)))
            else read_file(lake.storage, lake.storage.list_objects("bronze/raw_ohlcv/")[0].key)
        )
        status = cli(lake, None, "--output", "json", "status")
        assert status.returncode == 0
        assert json.loads(status.stdout)["bronze"]["symbols"] == 50
    assert runs[0].drop_columns(["fetched_at"]).equals(runs[1].drop_columns(["fetched_at"]))


def test_synthetic_split_is_restated(tmp_path: Path) -> None:
    from condvest.core.calendar import get_calendar
    from condvest.sources.synthetic import SyntheticSource

    cal = get_calendar()
    source = SyntheticSource(cal, symbols=50, seed=42)
    split = next(iter(source.splits(date(2005, 1, 1), date(2025, 12, 31)).splits))
    before = cal.sessions_between(date(2000, 1, 1), split.execution_date)[-3:-1]
    lake = make_local_lake(tmp_path / "lake")
    first = cli(
        lake,
        None,
        "fetch",
        "--source",
        "synthetic",
        "--start",
        str(before[0]),
        "--end",
        str(before[-1]),
    )
    assert first.returncode == 0, first.stderr
    old = read_file(lake.storage, layout.date_file(split.symbol, before[0]))
    out = cli(
        lake,
        None,
        "--output",
        "json",
        "fetch",
        "--source",
        "synthetic",
        "--date",
        str(split.execution_date),
    )
    assert out.returncode == 0, out.stderr
    assert split.symbol in json.loads(out.stdout)["restated"]
    data = read_file(lake.storage, layout.data_file(split.symbol))
    new = data.filter(pa.compute.equal(data.column("date"), before[0]))
    assert new["close"][0].as_py() == pytest.approx(old["close"][0].as_py() / split.ratio, 1e-3)
    assert not lake.storage.exists(layout.date_file(split.symbol, before[0]))


def _raw(**cols: list[object]) -> pa.Table:
    n = len(next(iter(cols.values())))
    base: dict[str, list[object]] = {
        "symbol": ["A"] * n,
        "date": [DAY] * n,
        "open": [10.0] * n,
        "high": [11.0] * n,
        "low": [9.0] * n,
        "close": [10.5] * n,
        "volume": [100.0] * n,
        "vwap": [None] * n,
        "transactions": [None] * n,
        "fetched_at": [datetime.now(UTC)] * n,
        "source": ["polygon"] * n,
    }
    base.update(cols)
    return pa.table(base, schema=RAW_SCHEMA)


def test_validation_rules() -> None:
    table = _raw(
        symbol=["A", "B", "C", "D", "E", "F", "G", "G", "a/b", "H"],
        open=[10.0, 0.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, None],
        high=[11.0, 11.0, 10.2, 11.0, 11.0, 11.0, 11.0, 11.0, 11.0, 11.0],
        low=[9.0, 9.0, 9.0, 10.6, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0],
        volume=[100.0, 100.0, 100.0, 100.0, -1.0, 0.5, 100.0, 101.0, 100.0, 100.0],
    )  # the two G rows differ: which is right is unknowable (an exact copy would be kept once)
    good, bad = validate_rows(table)
    assert good.column("symbol").to_pylist() == ["A", "F"]
    reasons = {r["symbol"]: r["reason"] for r in bad.to_pylist()}
    assert reasons == {
        "B": "price not > 0",
        "C": "high below max(open, close)",
        "D": "low above min(open, close)",
        "E": "volume below 0",
        "G": "duplicate (symbol, date): 2 differing rows",
        "a/b": "malformed symbol",
        "H": "missing price",
    }
    assert json.loads(bad.to_pylist()[0]["raw"])["open"] == 0.0


# -- the synthetic source serves any requested symbol (issue 14 item 3) ------------------------
def test_synthetic_serves_requested_symbols(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    day = "2025-01-02"
    out = cli(lake, None, "fetch", "--source", "synthetic", "--symbols", "AAPL,MSFT", "--date", day)
    assert out.returncode == 0, out.stderr
    text = out.stdout.splitlines()
    assert "failed" not in [line.strip() for line in text]  # no lone heading (item 2)
    assert any(line.split()[:2] == ["rows", "2"] for line in text), out.stdout
    first = read_file(lake.storage, layout.date_file("AAPL", DAY))
    assert first.column("source").to_pylist() == ["synthetic"]
    # Deterministic: seeded from the name, whatever else is asked for alongside.
    other = make_local_lake(tmp_path / "other")
    out = cli(other, None, "-o", "json", "fetch", "--source", "synthetic", "--symbols", "AAPL",
              "--date", day)  # fmt: skip
    assert json.loads(out.stdout)["symbols_missing"] == []
    again = read_file(other.storage, layout.date_file("AAPL", DAY))
    assert again.drop_columns(["fetched_at"]).equals(first.drop_columns(["fetched_at"]))
    history = cli(lake, None, "-o", "json", "fetch", "--source", "synthetic", "--history",
                  "--symbols", "AAPL,MSFT", "--start", "2024-12-02", "--end", day)  # fmt: skip
    assert history.returncode == 0, history.stderr
    body = json.loads(history.stdout)
    assert body["symbols"] == 2 and body["symbols_missing"] == [] and body["rows"] > 40


def test_synthetic_default_universe_is_unchanged_by_requested_symbols() -> None:
    from condvest.core.calendar import get_calendar
    from condvest.sources.synthetic import SyntheticSource, synthetic_universe

    cal = get_calendar()
    plain = SyntheticSource(cal, symbols=50, seed=42).grouped_daily(DAY).rows
    asked = SyntheticSource(cal, symbols=50, seed=42, requested=["AAPL", "../x"]).grouped_daily(DAY)
    assert set(asked.rows.column("symbol").to_pylist()) == {*synthetic_universe(50, 42), "AAPL"}
    own = asked.rows.filter(pa.compute.not_equal(asked.rows.column("symbol"), "AAPL"))
    assert own.drop_columns(["fetched_at"]).equals(plain.drop_columns(["fetched_at"]))

"""Progress of long loops (docs/progress.md): a live display on a terminal's stderr with stdout
left to the result; periodic JSON progress lines off a terminal whose counts grow and whose ETA
(from the configured request rate) matches the time the run really took; nothing with -q."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

from condvest.progress import Tracker, format_s
from conftest import make_local_lake
from polygon_server import FakePolygon, agg
from test_fetch_cli import cli

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _sessions(first: date, count: int) -> list[date]:
    from condvest.core.calendar import get_calendar

    return get_calendar().sessions_between(first, date(first.year + 1, 12, 31))[:count]


def _serve(polygon: FakePolygon, days: list[date]) -> None:
    for day in days:
        polygon.grouped[day] = [agg(f"S{i}", day, 10.0 + i) for i in range(5)]


def _progress_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "condvest.progress"]


def test_terminal_draws_a_display_on_stderr_and_stdout_is_only_the_result(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env |= {"PYTHONPATH": SRC, "TERM": "xterm-256color", "COLUMNS": "120"}
    args = ["--lake", str(tmp_path / "lake"), "-o", "json", "fetch", "--source", "synthetic"]
    args += ["--start", "2024-01-02", "--end", "2024-01-12"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "condvest", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    drawn = bytearray()

    def drain() -> None:  # a full pty buffer would block the child's writes
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            drawn.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    os.close(master)
    assert proc.returncode == 0, drawn.decode(errors="replace")
    result = json.loads(out)  # stdout: the result alone, one JSON document
    assert result["ok"] and len(result["sessions"]) == 9
    screen = drawn.decode(errors="replace")
    assert "fetch sessions" in screen and "9/9" in screen  # the display, finished
    assert "━" in screen and "\x1b[" in screen  # a drawn bar (terminal control sequences)
    assert "condvest.progress" not in screen  # not log lines


def test_off_a_terminal_periodic_lines_with_an_eta_of_the_paced_requests(
    tmp_path: Path, polygon: FakePolygon
) -> None:
    days = _sessions(date(2024, 3, 1), 20)
    _serve(polygon, days)
    lake = make_local_lake(tmp_path / "lake")
    env = {
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "300",  # one request per 0.2 s
        "CONDVEST_LOG__PROGRESS_INTERVAL_S": "0.4",
    }
    args = ("-o", "json", "fetch", "--start", str(days[0]), "--end", str(days[-1]))
    got = cli(lake, polygon, *args, env=env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["sessions_planned"] == len(days)
    lines = _progress_lines(got.stderr)
    periodic, final = lines[:-1], lines[-1]
    assert final["done"] == final["total"] == len(days) and "in" in final["message"]
    assert len(periodic) >= 5  # every 0.4 s of a ~3.8 s loop, never one per session
    assert len(periodic) < len(days)
    done = [line["done"] for line in periodic]
    assert done == sorted(done) and done[-1] > done[0]
    assert all(line["total"] == len(days) and line["stage"] == "fetch" for line in periodic)
    end = datetime.fromisoformat(final["ts"])
    checked = 0
    for line in periodic:
        left_s = (end - datetime.fromisoformat(line["ts"])).total_seconds()
        if left_s >= 1.0:
            assert abs(line["eta_s"] - left_s) <= 0.25 * left_s, (line, left_s)
            checked += 1
    assert checked >= 3


def test_quiet_prints_no_progress(tmp_path: Path, polygon: FakePolygon) -> None:
    days = _sessions(date(2024, 3, 1), 6)
    _serve(polygon, days)
    lake = make_local_lake(tmp_path / "lake")
    env = {
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "300",
        "CONDVEST_LOG__PROGRESS_INTERVAL_S": "0.2",
    }
    args = ("-q", "fetch", "--start", str(days[0]), "--end", str(days[-1]))
    got = cli(lake, polygon, *args, env=env)
    assert got.returncode == 0, got.stderr
    assert "progress" not in got.stderr and "ETA" not in got.stderr
    assert got.stderr.strip() == ""


def test_eta_uses_the_configured_rate_while_it_binds_and_the_observed_one_after() -> None:
    paced = Tracker("fetch", 10, "sessions", rate_per_s=1.0, backend="off")
    with paced:
        assert paced.eta_s() is not None and 9.5 < (paced.eta_s() or 0) <= 10.0
        paced.advance()  # done at once: faster than the pacing allows, so the pacing binds
        assert 8.5 < (paced.eta_s() or 0) <= 9.0
    unpaced = Tracker("consolidate", 4, "symbols", backend="off")
    assert unpaced.eta_s() is None  # nothing done, no pace: unknown
    assert format_s(None) == "?" and format_s(75) == "1m15s" and format_s(3720) == "1h02m"
    empty = Tracker("vacuum", 0, "files checked", backend="log", interval_s=0.01)
    with empty:  # nothing to do: no ticker, no line
        assert empty._thread is None


def test_dry_run_estimates_history_and_metadata_at_the_configured_rate(
    tmp_path: Path, polygon: FakePolygon
) -> None:
    from polygon_server import load_mock

    lake = make_local_lake(tmp_path / "lake")
    free = {"CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "5"}  # the free plan: one per 12 s
    symbols = ",".join(f"S{i}" for i in range(500))
    got = cli(
        lake,
        polygon,
        "-o",
        "json",
        "fetch",
        "--history",
        "--symbols",
        symbols,
        "--dry-run",
        env=free,
    )
    assert got.returncode == 0, got.stderr
    plan = json.loads(got.stdout)
    # a range and a dividends request per symbol
    assert plan["requests"] == 1000 and plan["estimated_s"] == 999 * 12.0
    assert plan["estimated"] == "3h19m"
    # metadata: the ticker list (one page here) and a details request per symbol due
    listed = load_mock("v3_reference_tickers.json")["results"]
    polygon.tickers = listed
    details = load_mock("v3_reference_tickers_AAPL.json")["results"]
    polygon.details = {t["ticker"]: details | {"ticker": t["ticker"]} for t in listed}
    assert cli(lake, polygon, "fetch", "--meta").returncode == 0
    asked = len(polygon.seen)
    args = ("-o", "json", "fetch", "--meta", "--dry-run")
    fresh = json.loads(cli(lake, polygon, *args, env=free).stdout)
    assert fresh["requests"] == 1 and fresh["estimated_s"] == 0.0  # nothing due yet
    forced = json.loads(cli(lake, polygon, *args, "--force", env=free).stdout)
    assert forced["requests"] == 1 + len(listed)
    assert forced["estimated_s"] == len(listed) * 12.0
    assert len(polygon.seen) == asked  # a plan asks nothing


def test_consolidate_counts_bytes_and_vacuum_counts_deletions(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Every tracker a stage opens ends at its total: consolidate's bytes merged equal its
    bytes_planned, vacuum's files deleted equal files_deleted."""
    from condvest.jobs.base import JobContext
    from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
    from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
    from condvest.jobs.vacuum.job import VacuumOptions, plan_vacuum, run_vacuum
    from conftest import at

    opened: list[Tracker] = []
    original = JobContext.progress

    def spy(self: JobContext, *args: Any, **kwargs: Any) -> Tracker:
        tracker = original(self, *args, **kwargs)
        opened.append(tracker)
        return tracker

    monkeypatch.setattr(JobContext, "progress", spy)
    lake = make_local_lake(tmp_path / "lake")
    now = at("2025-06-27T22:00:00Z")
    synthetic = {"fetch": {"source": "synthetic", "synthetic_symbols": 6}}
    ctx = lake.context(now=now, **synthetic)
    assert run_fetch(ctx, plan_fetch(ctx, FetchOptions(start=date(2025, 5, 1)))).ok
    opened.clear()
    ctx = lake.context(now=now, **synthetic, consolidate={"skip_cleanup": True})
    merged = run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions()))
    assert merged.ok and merged.bytes_planned > 0
    size = next(t for t in opened if t.unit == "bytes merged")
    assert size.total == size.done == merged.bytes_planned
    opened.clear()
    ctx = lake.context(now=now, **synthetic)
    swept = run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(retention_days=7)))
    assert swept.ok and swept.files_deleted > 0
    deleted = next(t for t in opened if t.unit == "files deleted")
    assert deleted.total == deleted.done == swept.files_deleted

"""``condvest report``: the health page of a synthetic lake (a gap, quarantined rows, runs of
several durations) is self-contained and has every section; an empty lake's page says so; bad
input is one line; and headless Chromium (Debian's ``chromium``) loads the page with no console
error and draws a screenshot that is not blank. CI installs chromium and sets
CONDVEST_REQUIRE_CHROMIUM=1, which turns the skip into a failure."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from condvest.core import layout
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.run import RunOptions, plan_run, run_run
from condvest.lake import Lake as OpenLake
from condvest.report import build_report
from condvest.state.fetchlog import read_session, record_session
from conftest import Lake, make_local_lake
from test_cli import one_error_line, run_cli

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
GAP = date(2026, 11, 10)
QUARANTINED = date(2026, 11, 12)
SECTIONS = ("problems", "freshness", "sessions", "quarantine", "durations", "silver")


class _Ticking:
    """A clock that moves 7 s each time it is read: runs get durations that are not 0."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=7)
        return self.now


def build_synthetic_lake(root: Path) -> Lake:
    """Sessions from September on, three pipeline runs, one session's entry gone (a gap) and
    one recording 3 quarantined rows, and a symbol named like markup."""
    lake = make_local_lake(root)
    fetch = {"source": "synthetic", "synthetic_symbols": 6}
    ctx = lake.context(fetch=fetch)
    ctx.clock = _Ticking(NOW - timedelta(days=3))
    plan = plan_fetch(ctx, FetchOptions(start=date(2026, 9, 1), end=date(2026, 11, 18)))
    assert run_fetch(ctx, plan).ok
    for hours in (48, 24, 0):
        ctx = lake.context(fetch=fetch)
        ctx.clock = _Ticking(NOW - timedelta(hours=hours))
        assert run_run(ctx, plan_run(ctx, RunOptions())).ok
    lake.storage.delete(layout.fetch_log_entry(GAP))
    entry = read_session(lake.storage, QUARANTINED)
    assert entry is not None
    record_session(lake.storage, dataclasses.replace(entry, quarantined=3))
    return lake


@pytest.fixture(scope="module")
def synthetic_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_synthetic_lake(tmp_path_factory.mktemp("report") / "lake")


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<script|<link|<iframe|<img|@import", page, re.I)
    # SVG clip paths are url(#id): references inside the page, never outside it
    assert not re.search(r"url\(\s*['\"]?(?!#)", page, re.I)


def test_report_of_a_synthetic_lake(synthetic_lake: Lake) -> None:
    report = OpenLake(synthetic_lake.context(now=NOW)).report(sessions=40)
    page = report.html
    assert_self_contained(page)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page, anchor
    assert page.count("<svg") == 3  # sessions, quarantine, durations
    summary = report.to_dict()
    assert summary["sessions_shown"] == 40 and summary["sessions_missing"] == 1
    assert not summary["empty_lake"] and summary["runs_shown"] >= 9
    # the gap is named, and the status problem about it is on the page
    assert f"1 missing: {GAP.isoformat()}" in page
    assert "missing from the fetch log" in page
    points = {p.session: p for p in report.sessions}
    assert points[GAP].state == "missing"
    assert points[QUARANTINED].quarantined == 3 and points[QUARANTINED].symbols == 6
    # durations come from the run records: the ticking clock made them > 0
    assert all(p.duration_s and p.duration_s > 0 for p in report.runs)
    assert {"fetch", "consolidate", "resample", "run"} <= {p.stage for p in report.runs}
    assert re.search(r"<td>\d+d</td>", page)


def test_every_string_from_the_lake_is_escaped(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "<b>lake&co</b>")
    ctx = lake.context(now=NOW)
    page = build_report(ctx).html
    assert "<b>lake" not in page
    assert "&lt;b&gt;lake&amp;co&lt;/b&gt;" in page


def test_empty_lake_page_says_so(tmp_path: Path) -> None:
    report = build_report(make_local_lake(tmp_path / "lake").context(now=NOW))
    assert report.empty and report.to_dict()["empty_lake"]
    assert_self_contained(report.html)
    assert "This lake holds no data yet" in report.html
    assert "No session has landed yet." in report.html
    assert "No finished run is recorded yet." in report.html
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in report.html


def test_cli_writes_the_page_and_refuses_to_overwrite(synthetic_lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = run_cli(
        "--lake", synthetic_lake.uri, "-o", "json", "report", "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert '"sessions_shown": 60' in done.stdout
    assert "<svg" in out.read_text()
    again = run_cli("--lake", synthetic_lake.uri, "report", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert one_error_line(again) == f"--out {out} exists (pass --force to overwrite it)"
    forced = run_cli(
        "--lake",
        synthetic_lake.uri,
        "report",
        "--out",
        str(out),
        "--force",
        "--sessions",
        "5",
        cwd=tmp_path,
    )
    assert forced.returncode == 0, forced.stderr


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("keep me")
    out = run_cli("--lake", str(target), "report", "--out", str(tmp_path / "r.html"), cwd=tmp_path)
    assert out.returncode in (1, 2)
    assert "is a file, not a directory" in one_error_line(out)
    assert not (tmp_path / "r.html").exists()
    zero = run_cli("--lake", str(tmp_path / "lake"), "report", "--sessions", "0", cwd=tmp_path)
    assert zero.returncode == 2
    assert one_error_line(zero) == "--sessions 0 must be at least 1"


# -- headless Chromium -------------------------------------------------------------------------
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CONDVEST_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{reason}; CONDVEST_REQUIRE_CHROMIUM=1 makes the browser test mandatory")
    pytest.skip(reason)


def _chromium_run(browser: str, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = page.parent / "chromium-profile"
    return subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def screenshot(page: Path, png: Path) -> subprocess.CompletedProcess[str]:
    done = _chromium_run(_chromium(), page, f"--screenshot={png}", "--window-size=1200,1600")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_chromium_renders_the_page(synthetic_lake: Lake, tmp_path: Path) -> None:
    from PIL import Image

    browser = _chromium()
    page = tmp_path / "report.html"
    page.write_text(OpenLake(synthetic_lake.context(now=NOW)).report().html)
    dom = _chromium_run(browser, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Symbols landed per session" in dom.stdout and "<svg" in dom.stdout
    assert console_lines(dom.stderr) == []
    assert "net::ERR" not in dom.stderr
    png = tmp_path / "report.png"
    shot = screenshot(page, png)
    assert console_lines(shot.stderr) == []
    with Image.open(png) as image:
        assert image.size == (1200, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"


def console_lines(stderr: str) -> list[str]:
    """Chromium logs page errors ("Uncaught …") as CONSOLE lines on stderr."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_browser_checks_can_fail(tmp_path: Path) -> None:
    """A script error is seen as a console line, and the colour count tells a blank page from a
    drawn one."""
    from PIL import Image

    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>no_such_fn()</script></body></html>")
    dom = _chromium_run(_chromium(), broken, "--dump-dom")
    assert any("no_such_fn" in line for line in console_lines(dom.stderr)), dom.stderr[-2000:]

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    png = tmp_path / "blank.png"
    screenshot(blank, png)
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) <= 2

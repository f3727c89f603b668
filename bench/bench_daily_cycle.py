"""Daily-cycle benchmark (prints a table; not a test).

    python bench/bench_daily_cycle.py [--template /tmp/condvest-bench-lake-daily] [--scale 1.0]
        [--s3-scale 0.1] [--skip-s3]

1. Builds (once) a seed-scale template lake with bench/make_lake.py: consolidated (the last 5
   sessions as merged, not yet vacuumed date files), ending one session before the latest
   completed one; no silver.
2. Local disk, on a hard-linked copy of the template (every lake write is write-temp + rename,
   so the template is never changed): the full rebuild of silver (`condvest resample --full`),
   then one new session end to end: `condvest run --vacuum` against a Polygon stand-in on
   127.0.0.1 (tests/polygon_server.py) serving a grouped-daily response for every symbol, with
   `CONDVEST_POLYGON__REQUESTS_PER_MINUTE=0`. Per-stage wall times come from the run's result.
3. The same new session on a second copy, one process per stage, for each stage's peak RSS.
4. The moto S3 server (in this process, on 127.0.0.1) at --s3-scale: build, full rebuild, run.
Peak RSS is each child's own (wait4 rusage).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import run_child  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from polygon_server import KEY, FakePolygon, agg  # noqa: E402

STAGES = ("fetch", "consolidate", "resample", "vacuum")


NAN = float("nan")


def _measured(child: Any) -> tuple[float, float, float]:
    return child.wall_s, child.cpu_s, child.peak_mb


def sessions() -> tuple[date, date]:
    from condvest.core.calendar import get_calendar

    cal = get_calendar()
    latest = cal.latest_completed_session(datetime.now(UTC))
    previous = cal.previous_session(latest)
    assert previous is not None
    return latest, previous


def symbols_of(uri: str, endpoint: str | None) -> list[str]:
    from condvest.core import layout
    from condvest.settings import load_settings
    from condvest.storage import open_storage

    overrides: dict[str, Any] = {"lake": {"uri": uri}}
    if endpoint:
        overrides["s3"] = {"endpoint_url": endpoint}
    storage = open_storage(uri, load_settings(overrides=overrides))
    dirs = storage.list_dirs(layout.BRONZE_OHLCV + "/")
    return sorted(d.removeprefix("symbol=") for d in dirs)


def polygon_for(day: date, symbols: list[str]) -> FakePolygon:
    server = FakePolygon().start()
    server.grouped[day] = [agg(s, day, 10.0 + (i % 400) / 4) for i, s in enumerate(symbols)]
    return server


def env_for(uri: str, polygon: FakePolygon, endpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env |= {
        "CONDVEST_LAKE__URI": uri,
        "CONDVEST_POLYGON__API_KEY": KEY,
        "CONDVEST_POLYGON__BASE_URL": polygon.url,
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "0",
    }
    if endpoint:
        env |= {"CONDVEST_S3__ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing"}
        env |= {"AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    return env


# Yesterday's resample: the full rebuild runs with the clock two hours after the previous
# session's close, so its checkpoint covers the lake before the new session — as in production,
# where the daily run follows yesterday's. (At the real clock the checkpoint would already claim
# the new session, and the daily run would rightly take the full-read path.)
FULL_AS_YESTERDAY = r"""
import json, sys
from datetime import timedelta
from condvest.jobs.base import JobContext
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.settings import load_settings
ctx = JobContext.from_settings(load_settings())
previous = ctx.calendar.previous_session(ctx.calendar.latest_completed_session(ctx.clock()))
at = ctx.calendar.session_close(previous) + timedelta(hours=2)
ctx.clock = lambda: at
result = run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True)))
assert result.ok, result.to_dict()
print(json.dumps(result.to_dict()))
"""

Row = tuple[str, str, float, float, float, str]
"""(where, what, wall s, CPU s, peak RSS MB, note); NaN CPU/RSS: a stage inside `run`"""


def daily_cycle(where: str, uri: str, env: dict[str, str]) -> list[Row]:
    """Full rebuild of silver, then `condvest run --vacuum` for the new session."""
    cli = [sys.executable, "-m", "condvest", "-o", "json", "-q"]
    rows: list[Row] = []
    full_cmd = [sys.executable, "-c", FULL_AS_YESTERDAY]
    child = run_child(full_cmd, "resample --full", env)
    full = json.loads(child.out)
    note = f"{full.get('rows_written', '?')} bars written"
    rows.append((where, "resample --full (6 intervals)", *_measured(child), note))
    run = run_child([*cli, "run", "--vacuum"], "run", env)
    result = json.loads(run.out)
    for line in result["stages"]:
        stage = line["stage"]
        body = result["results"][stage]
        rows.append((where, f"  run: {stage}", float(line["duration_s"]), NAN, NAN, brief(body)))
    rows.append((where, "condvest run --vacuum (total)", *_measured(run), f"ok={result['ok']}"))
    return rows


def brief(body: dict[str, Any]) -> str:
    keys = ("rows", "files", "symbols_changed", "files_merged", "rows_written", "months_written")
    keys += ("files_deleted", "files_kept_pending")
    return " ".join(f"{k}={body[k]}" for k in keys if isinstance(body.get(k), int))


def per_stage(where: str, uri: str, env: dict[str, str]) -> list[Row]:
    """The same new session, one process per stage: each stage's own peak RSS."""
    cli = [sys.executable, "-m", "condvest", "-o", "json", "-q"]
    rows: list[Row] = []
    for stage in STAGES:
        child = run_child([*cli, stage], stage, env)
        rows.append(
            (where, f"  {stage} (own process)", *_measured(child), brief(json.loads(child.out)))
        )
    return rows


def local_suite(template: Path, scale: float, latest: date, previous: date) -> list[Row]:
    py = sys.executable
    if not (template / "bronze").exists():
        args = [py, str(HERE / "make_lake.py"), str(template), "--scale", str(scale)]
        args += ["--date-files", "5", "--date-files-mode", "merged", "--end", str(previous)]
        built = run_child(args, "make_lake", dict(os.environ))
        print(f"built template {template} in {built.wall_s:.0f} s", flush=True)
    symbols = symbols_of(str(template), None)
    polygon = polygon_for(latest, symbols)
    rows: list[Row] = []
    try:
        for n, suite in enumerate((daily_cycle, per_stage)):
            work = template.with_name(template.name + f"-work{n}")
            shutil.rmtree(work, ignore_errors=True)
            subprocess.run(["cp", "-al", str(template), str(work)], check=True)
            if suite is per_stage:  # silver must exist before the daily resample
                env = env_for(str(work), polygon, None)
                run_child([py, "-c", FULL_AS_YESTERDAY], "full", env)
            rows += suite(
                f"local ({len(symbols)} sym)", str(work), env_for(str(work), polygon, None)
            )
            shutil.rmtree(work, ignore_errors=True)
    finally:
        polygon.stop()
    return rows


def s3_suite(scale: float, latest: date, previous: date) -> list[Row]:
    import boto3
    from moto.server import ThreadedMotoServer

    from conftest import serialise_moto_s3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialise_moto_s3()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    uri = "s3://bench/lake"
    try:
        args = [sys.executable, str(HERE / "make_lake.py"), uri, "--scale", str(scale)]
        args += ["--date-files", "5", "--date-files-mode", "merged", "--end", str(previous)]
        args += ["--endpoint-url", endpoint]
        built = run_child(args, "make_lake (s3)", dict(os.environ))
        print(f"built S3 lake at scale {scale} in {built.wall_s:.0f} s", flush=True)
        symbols = symbols_of(uri, endpoint)
        polygon = polygon_for(latest, symbols)
        try:
            env = env_for(uri, polygon, endpoint)
            return daily_cycle(f"moto S3 ({len(symbols)} sym)", uri, env)
        finally:
            polygon.stop()
    finally:
        server.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--template", default="/tmp/condvest-bench-lake-daily")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--s3-scale", type=float, default=0.1)
    p.add_argument("--skip-s3", action="store_true")
    a = p.parse_args()
    latest, previous = sessions()
    print(f"new session {latest} on a lake ending {previous}", flush=True)
    rows = local_suite(Path(a.template), a.scale, latest, previous)
    if not a.skip_s3:
        rows += s3_suite(a.s3_scale, latest, previous)
    print(f"\ncpus {os.cpu_count()}; load average {os.getloadavg()}")
    head = f"| {'where':<22} | {'what':<32} | {'wall s':>7} | {'CPU s':>6} | {'peak RSS MB':>11} |"
    print(head + " note |")
    print(f"|{'-' * 24}|{'-' * 34}|{'-' * 9}|{'-' * 8}|{'-' * 13}|------|")
    for where, what, wall, cpu, rss, note in rows:
        cpu_shown = "" if cpu != cpu else f"{cpu:.1f}"  # NaN: the stage ran inside `run`
        rss_shown = "" if rss != rss else f"{rss:.0f}"
        cells = f"| {where:<22} | {what:<32} | {wall:7.1f} | {cpu_shown:>6} | {rss_shown:>11} |"
        print(f"{cells} {note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

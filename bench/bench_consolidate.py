"""Benchmark incremental consolidation on the seed-scale lake (issue 4). Prints figures; not a test.

    python bench/bench_consolidate.py [--template DIR] [--scale 1] [--s3-scale 0.05] [--workers 10]
                                      [--baseline-src DIR] [--daily-repeat N] [--skip-20-days]

Cases, each on local disk and on the S3 protocol server (moto, 127.0.0.1; a smaller lake there):
* ``20 days``: the lake from bench/make_lake.py (20 pending date= files per symbol) consolidated;
* ``1 day``: then one more session is landed for every symbol (files + fetch-log entry) and
  consolidated incrementally (the daily case; target >= 300 symbols/s on local disk).
For each: wall time, symbols/s, peak RSS of the process doing it, and the "floor": a plain
parallel read + parquet decode of the same files (each symbol's data.parquet and its pending
date files) measured in the same run. Each phase runs in its own process so its peak RSS is its
own. The local lake is copied from ``--template`` (built once with make_lake.py if missing) as
hard links: every condvest write is a new file renamed into place and every delete an unlink,
so the template is never changed (and the copy takes seconds, not minutes).

``--baseline-src DIR`` (e.g. the ``src`` of ``git archive main``) also runs every consolidation
with that code (PYTHONPATH=DIR) on its own copy of the same lake, interleaved with this code's
run, and prints the ratio: a before/after comparison measured in one session. ``--daily-repeat N``
repeats the daily case N times, each on a fresh copy of the same lake (one new day landed).
The clock is pinned to the morning after the new day (``BENCH_NEW_DAY`` + 1 day, 03:00 UTC) so the
retention cut-off, and with it the work, does not depend on the day the benchmark runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
END = "2026-11-24"
NEW_DAY = date.fromisoformat(os.environ.get("BENCH_NEW_DAY", "2026-11-25"))
NOW = datetime(NEW_DAY.year, NEW_DAY.month, NEW_DAY.day, 3, tzinfo=UTC) + timedelta(days=1)


def _storage(uri: str, endpoint: str | None) -> Any:
    from condvest.settings import load_settings
    from condvest.storage import open_storage

    overrides: dict[str, Any] = {"lake": {"uri": uri}}
    if endpoint:
        overrides["s3"] = {"endpoint_url": endpoint}
    return open_storage(uri, load_settings(env={}, overrides=overrides)), overrides


def _decode(data: bytes) -> int:
    """The fastest plain parquet decode we know (what consolidation itself uses)."""
    return int(pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False).num_rows)


def phase_floor(uri: str, endpoint: str | None, workers: int) -> dict[str, Any]:
    """Read + decode what the consolidation will read: data.parquet and the pending files."""
    from condvest.core import layout
    from condvest.jobs.base import JobContext
    from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate

    storage, overrides = _storage(uri, endpoint)
    from condvest.settings import load_settings

    ctx = JobContext.from_settings(load_settings(env={}, overrides=overrides), clock=lambda: NOW)
    ctx.storage = storage
    plan = plan_consolidate(ctx, ConsolidateOptions(workers=workers))
    t0 = time.perf_counter()

    def read(symbol_plan: Any) -> int:
        keys = [layout.data_file(symbol_plan.symbol), *(f.key for f in symbol_plan.pending)]
        return sum(_decode(storage.read_bytes(k)) for k in keys)

    with ThreadPoolExecutor(workers) as pool:
        rows = sum(pool.map(read, plan.symbols))
    wall = time.perf_counter() - t0
    return {"symbols": len(plan.symbols), "rows": rows, "wall_s": wall}


def phase_consolidate(uri: str, endpoint: str | None, workers: int) -> dict[str, Any]:
    from condvest.jobs.base import JobContext
    from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
    from condvest.settings import load_settings

    storage, overrides = _storage(uri, endpoint)
    ctx = JobContext.from_settings(load_settings(env={}, overrides=overrides), clock=lambda: NOW)
    ctx.storage = storage
    t0 = time.perf_counter()
    plan = plan_consolidate(ctx, ConsolidateOptions(workers=workers))
    t_plan = time.perf_counter() - t0
    result = run_consolidate(ctx, plan)
    wall = time.perf_counter() - t0
    assert result.ok, result.failures
    return {
        "symbols": result.symbols_done,
        "rows_added": result.rows_added,
        "files_merged": result.files_merged,
        "plan_s": t_plan,
        "wall_s": wall,
        "selection": result.selection,
    }


def phase_land(uri: str, endpoint: str | None, workers: int) -> dict[str, Any]:
    """Land NEW_DAY for every symbol in the manifest (one date file each + the fetch-log entry)."""
    import pyarrow as pa

    from condvest.core import layout
    from condvest.core.schema import BRONZE_SCHEMA
    from condvest.state.fetchlog import SessionEntry, record_session
    from condvest.state.manifest import read_manifest

    storage, _ = _storage(uri, endpoint)
    symbols = sorted(read_manifest(storage)[0])
    fetched = datetime(NEW_DAY.year, NEW_DAY.month, NEW_DAY.day, 22, tzinfo=UTC)

    def one(symbol: str) -> None:
        row = pa.table(
            {
                "symbol": [symbol],
                "date": [NEW_DAY],
                "open": [10.0],
                "high": [11.0],
                "low": [9.0],
                "close": [10.5],
                "volume": [1e6],
                "vwap": [10.2],
                "transactions": [100],
                "fetched_at": [fetched],
                "source": ["bench"],
            },
            schema=BRONZE_SCHEMA,
        )
        storage.write_parquet(layout.date_file(symbol, NEW_DAY), row)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, symbols))
    entry = SessionEntry(
        NEW_DAY, "landed", len(symbols), "bench", fetched.isoformat(), "bench", symbols
    )
    record_session(storage, entry)
    return {"symbols": len(symbols), "wall_s": time.perf_counter() - t0}


PHASES = {"floor": phase_floor, "consolidate": phase_consolidate, "land": phase_land}


def run_phase(
    name: str, uri: str, endpoint: str | None, workers: int, src: str | None = None
) -> dict[str, Any]:
    """One phase in a child process; ``src`` puts another condvest checkout first on the path."""
    cmd = [sys.executable, __file__, "--phase", name, "--lake", uri, "--workers", str(workers)]
    if endpoint:
        cmd += ["--endpoint-url", endpoint]
    env = dict(os.environ, PYTHONPATH=src) if src else None
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def link_copy(src: str, dst: str) -> None:
    """A copy of a local lake made of hard links (safe: condvest never writes a file in place)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)


def _line(label: str, run: dict[str, Any], floor: dict[str, Any]) -> str:
    rate = run["symbols"] / run["wall_s"] if run["wall_s"] else 0.0
    return (
        f"{label:<28} {run['symbols']:>6} symbols  {run['files_merged']:>7} files  "
        f"wall {run['wall_s']:7.2f} s (plan {run['plan_s']:.2f} s)  {rate:7.1f} symbols/s  "
        f"peak RSS {run['peak_rss_mb']:6.0f} MB | floor read {floor['wall_s']:6.2f} s "
        f"({floor['peak_rss_mb']:.0f} MB)  ratio {run['wall_s'] / floor['wall_s']:.2f}x"
    )


def case(
    label: str,
    uri: str,
    endpoint: str | None,
    workers: int,
    baseline: tuple[str, str] | None = None,
    first: str = "this",
) -> None:
    """Floor, then the consolidation; with ``baseline`` (src, lake copy) the baseline code runs
    too, on its copy, before or after this code's run (``first``) to spread any drift."""
    floor = run_phase("floor", uri, endpoint, workers)
    runs: dict[str, dict[str, Any]] = {}
    order = ["this", "baseline"] if first == "this" else ["baseline", "this"]
    for who in order:
        if who == "this":
            runs["this"] = run_phase("consolidate", uri, endpoint, workers)
        elif baseline is not None:
            runs["baseline"] = run_phase("consolidate", baseline[1], endpoint, workers, baseline[0])
    print(_line(label, runs["this"], floor), flush=True)
    if "baseline" in runs:
        base = runs["baseline"]
        print(_line("  baseline code", base, floor), flush=True)
        print(f"  this / baseline: {base['wall_s'] / runs['this']['wall_s']:.2f}x faster")


def bench(
    uri: str,
    endpoint: str | None,
    workers: int,
    where: str,
    baseline_src: str | None = None,
    daily_repeat: int = 1,
    skip_20_days: bool = False,
) -> None:
    """The 20-day case, then one new day landed and the daily case (``daily_repeat`` times, on
    fresh copies of that lake; local only). With ``baseline_src`` a second copy of the lake
    goes through the same steps with the baseline code."""
    local = endpoint is None
    base_uri = uri.rstrip("/") + "-baseline" if baseline_src and local else None
    if base_uri:
        link_copy(uri, base_uri)
    baseline = (baseline_src, base_uri) if baseline_src and base_uri else None
    if skip_20_days:
        for lake in [uri, *([base_uri] if base_uri else [])]:
            run_phase("consolidate", lake, endpoint, workers, baseline_src if lake != uri else None)
    else:
        case(f"{where}: 20 days", uri, endpoint, workers, baseline)
    land = run_phase("land", uri, endpoint, workers)
    print(f"  (landed {NEW_DAY} for {land['symbols']} symbols in {land['wall_s']:.1f} s)")
    if base_uri:
        run_phase("land", base_uri, endpoint, workers)
    if daily_repeat <= 1 or not local:
        case(f"{where}: 1 day (daily)", uri, endpoint, workers, baseline, first="baseline")
        return
    # Repeats: this code's and the baseline's runs start from copies of one daily-ready lake.
    ready = uri.rstrip("/") + "-daily-ready"
    link_copy(uri, ready)
    for i in range(daily_repeat):
        link_copy(ready, uri)
        if base_uri:
            link_copy(ready, base_uri)
        first = "baseline" if i % 2 == 0 else "this"
        case(f"{where}: 1 day (daily) #{i + 1}", uri, endpoint, workers, baseline, first)


def make_lake(out: str, scale: float, endpoint: str | None = None) -> None:
    cmd = [sys.executable, str(HERE / "make_lake.py"), out, "--scale", str(scale), "--end", END]
    if endpoint:
        cmd += ["--endpoint-url", endpoint]
    subprocess.run(cmd, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--lake", help=argparse.SUPPRESS)
    p.add_argument("--endpoint-url", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=10, help="consolidate workers (default 10)")
    p.add_argument("--template", default="/tmp/condvest-bench/seed", help="local template lake")
    p.add_argument("--work", default="/tmp/condvest-bench/work", help="scratch copy")
    p.add_argument("--scale", type=float, default=1.0, help="local lake scale (1.0 = seed)")
    p.add_argument("--s3-scale", type=float, default=0.05, help="S3 lake scale (0 = skip S3)")
    p.add_argument("--skip-local", action="store_true", help="only the S3 part")
    p.add_argument(
        "--baseline-src",
        help="also run each consolidation with the condvest source in this directory (local)",
    )
    p.add_argument("--daily-repeat", type=int, default=1, help="run the daily case N times")
    p.add_argument(
        "--skip-20-days",
        action="store_true",
        help="consolidate the 20 days untimed (only the daily case is measured)",
    )
    args = p.parse_args()
    if args.phase:
        out = PHASES[args.phase](args.lake, args.endpoint_url, args.workers)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0
    print(
        f"condvest consolidate benchmark — {os.cpu_count()} CPUs, workers {args.workers}, "
        f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if not args.skip_local:
        if not Path(args.template, "bronze").is_dir():
            make_lake(args.template, args.scale)
        t0 = time.perf_counter()
        link_copy(args.template, args.work)
        print(f"  (copied the template lake in {time.perf_counter() - t0:.1f} s)")
        baseline_src = str(Path(args.baseline_src).resolve()) if args.baseline_src else None
        bench(
            args.work,
            None,
            args.workers,
            "local",
            baseline_src,
            args.daily_repeat,
            args.skip_20_days,
        )
    if args.s3_scale > 0:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        uri = "s3://bench/lake"
        make_lake(uri, args.s3_scale, endpoint)
        bench(uri, endpoint, args.workers, f"s3 (scale {args.s3_scale})")
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

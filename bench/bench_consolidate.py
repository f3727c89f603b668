"""Benchmark incremental consolidation on the seed-scale lake (issue 4). Prints figures; not a test.

    python bench/bench_consolidate.py [--template DIR] [--scale 1] [--s3-scale 0.05] [--workers 10]

Cases, each on local disk and on the S3 protocol server (moto, 127.0.0.1; a smaller lake there):
* ``20 days``: the lake from bench/make_lake.py (20 pending date= files per symbol) consolidated;
* ``1 day``: then one more session is landed for every symbol (files + fetch-log entry) and
  consolidated incrementally (the daily case; target >= 300 symbols/s on local disk).
For each: wall time, symbols/s, peak RSS of the process doing it, and the "floor": a plain
parallel read + parquet decode of the same files (each symbol's data.parquet and its pending
date files) measured in the same run. Each phase runs in its own process so its peak RSS is its
own. The local lake is copied from ``--template`` (built once with make_lake.py if missing).
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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
END = "2026-11-24"
NEW_DAY = date.fromisoformat(os.environ.get("BENCH_NEW_DAY", "2026-11-25"))


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
    from condvest.jobs.consolidate import ConsolidateOptions, plan_consolidate

    storage, overrides = _storage(uri, endpoint)
    from condvest.settings import load_settings

    ctx = JobContext.from_settings(load_settings(env={}, overrides=overrides))
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
    from condvest.jobs.consolidate import ConsolidateOptions, plan_consolidate, run_consolidate
    from condvest.settings import load_settings

    storage, overrides = _storage(uri, endpoint)
    ctx = JobContext.from_settings(load_settings(env={}, overrides=overrides))
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


def run_phase(name: str, uri: str, endpoint: str | None, workers: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--lake", uri, "--workers", str(workers)]
    if endpoint:
        cmd += ["--endpoint-url", endpoint]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def case(label: str, uri: str, endpoint: str | None, workers: int) -> None:
    floor = run_phase("floor", uri, endpoint, workers)
    run = run_phase("consolidate", uri, endpoint, workers)
    rate = run["symbols"] / run["wall_s"] if run["wall_s"] else 0.0
    print(
        f"{label:<28} {run['symbols']:>6} symbols  {run['files_merged']:>7} files  "
        f"wall {run['wall_s']:7.2f} s (plan {run['plan_s']:.2f} s)  {rate:7.1f} symbols/s  "
        f"peak RSS {run['peak_rss_mb']:6.0f} MB | floor read {floor['wall_s']:6.2f} s "
        f"({floor['peak_rss_mb']:.0f} MB)  ratio {run['wall_s'] / floor['wall_s']:.2f}x",
        flush=True,
    )


def bench(uri: str, endpoint: str | None, workers: int, where: str) -> None:
    case(f"{where}: 20 days", uri, endpoint, workers)
    land = run_phase("land", uri, endpoint, workers)
    print(f"  (landed {NEW_DAY} for {land['symbols']} symbols in {land['wall_s']:.1f} s)")
    case(f"{where}: 1 day (daily)", uri, endpoint, workers)


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
    args = p.parse_args()
    if args.phase:
        out = PHASES[args.phase](args.lake, args.endpoint_url, args.workers)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0
    print(f"condvest consolidate benchmark — {os.cpu_count()} CPUs, workers {args.workers}")
    if not args.skip_local:
        if not Path(args.template, "bronze").is_dir():
            make_lake(args.template, args.scale)
        shutil.rmtree(args.work, ignore_errors=True)
        t0 = time.perf_counter()
        shutil.copytree(args.template, args.work)
        print(f"  (copied the template lake in {time.perf_counter() - t0:.1f} s)")
        bench(args.work, None, args.workers, "local")
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

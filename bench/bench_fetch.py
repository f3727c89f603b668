"""Benchmark (prints figures; not a test): land one session of 5,400 symbols served by a local
HTTP stand-in for Polygon's grouped-daily endpoint, on local disk and on a moto S3 server.

    .venv/bin/python bench/bench_fetch.py [--symbols 5400] [--only local|s3]

Target (issue 3): <= 10 s on local disk on the 2-core machine (the original: 5-10 min with one
request per symbol)."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from condvest.jobs.base import JobContext
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.settings import load_settings
from condvest.storage import open_storage

DAY = date(2025, 3, 14)
KEY = "bench-key"


def grouped_rows(count: int) -> list[dict[str, Any]]:
    t = int(datetime(2025, 3, 14, 16, tzinfo=ZoneInfo("America/New_York")).timestamp() * 1000)
    rows = []
    for i in range(count):
        close = 10.0 + i % 500
        rows.append(
            {
                "T": f"S{i:05d}",
                "o": close * 0.99,
                "h": close * 1.02,
                "l": close * 0.97,
                "c": close,
                "v": 100000.0 + i,
                "vw": close,
                "t": t,
                "n": 100 + i,
            }
        )
    return rows


def serve(rows: list[dict[str, Any]]) -> str:
    """A real HTTP server on 127.0.0.1 in a thread; returns its base URL."""
    body = {"results": rows, "status": "OK", "resultsCount": len(rows), "adjusted": True}
    ready: dict[str, str] = {}
    loop = asyncio.new_event_loop()

    async def grouped(_: web.Request) -> web.Response:
        return web.json_response(body)

    async def splits(_: web.Request) -> web.Response:
        return web.json_response({"results": [], "status": "OK"})

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/v2/aggs/grouped/locale/us/market/stocks/{day}", grouped)
        app.router.add_get("/v3/reference/splits", splits)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    return ready["url"]


def run_once(uri: str, url: str, endpoint: str | None) -> None:
    overrides: dict[str, Any] = {
        "lake": {"uri": uri},
        "polygon": {"base_url": url, "api_key": KEY, "requests_per_minute": 0},
        "fetch": {"source": "polygon"},
    }
    if endpoint:
        overrides["s3"] = {"endpoint_url": endpoint}
    settings = load_settings(env={}, overrides=overrides)
    ctx = JobContext.from_settings(settings, clock=lambda: datetime(2025, 3, 14, 22, tzinfo=UTC))
    ctx.storage = open_storage(uri, settings)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = run_fetch(ctx, plan_fetch(ctx, FetchOptions(day=DAY)))
    wall = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.ok, result.to_dict()
    kind = "s3 (moto)" if endpoint else "local disk"
    print(
        f"{kind:>11}: {result.files:,} files, {result.rows:,} rows, {result.bytes / 1e6:.1f} MB "
        f"in {wall:.2f} s wall; peak RSS {rss_after / 1024:.0f} MiB "
        f"(+{(rss_after - rss_before) / 1024:.0f} MiB during the run), "
        f"{result.requests} requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=5400)
    parser.add_argument("--only", choices=["local", "s3"])
    args = parser.parse_args()
    url = serve(grouped_rows(args.symbols))
    print(f"one grouped-daily session, {args.symbols:,} symbols, cpu count {os.cpu_count()}")
    if args.only in (None, "local"):
        with tempfile.TemporaryDirectory() as tmp:
            run_once(os.path.join(tmp, "lake"), url, None)
    if args.only in (None, "s3"):
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        import boto3

        # moto in its own process: in-process it would share this process's GIL and measure
        # the S3 stand-in as much as the fetch.
        port = free_port()
        server = subprocess.Popen(
            [
                os.path.join(os.path.dirname(sys.executable), "moto_server"),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            for _ in range(100):
                try:
                    client.create_bucket(Bucket="bench")
                    break
                except Exception:  # not listening yet
                    time.sleep(0.1)
            run_once("s3://bench/lake", url, endpoint)
        finally:
            server.terminate()
            server.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


if __name__ == "__main__":
    main()

"""The daily cycle on S3 with real request latency (prints a table; not a test).

    python bench/bench_s3_latency.py [--scale 0.1] [--latency-ms 20] [--restated 5]
        [--set CONDVEST_CONSOLIDATE__WORKERS=32 ...]

moto on loopback answers in microseconds; S3 in-region in roughly 10-30 ms per request. Here every
request of the measured commands goes through bench/latency_proxy.py, which waits
``--latency-ms`` before forwarding each one to the moto server and counts them (GET, HEAD, PUT,
LIST, DELETE, POST) with the bytes they return.

1. A template lake in moto (bench/make_lake.py at ``--scale``: consolidated, the last 5 sessions
   as merged date files, ending one session before the latest completed one) and its silver
   (``resample --full`` as "yesterday's run"), built without the proxy.
2. Two days, each on two copies of the template (copied inside moto, no requests, then
   consolidated once without the proxy: the copy's new mtimes would otherwise make the
   template's merged date files look pending): a normal day,
   and a day on which the ``--restated`` symbols of longest history were restated (every older
   row halved, a newer fetched_at, the restated marker; bench_resample.restate_longest).
   On the first copy ``condvest run --vacuum`` (stage times from its result, requests for the
   whole run); on the second the four stages as their own processes, for requests per stage.
3. The day's request cost at us-east-1 list prices (PUT/LIST/POST $0.005, GET/HEAD $0.0004 per
   1,000; DELETE free) and the bytes GET returned against the size of bronze.
The Polygon stand-in (tests/polygon_server.py) serves the new session on 127.0.0.1, unthrottled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import moto_server, run_child  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from bench_daily_cycle import FULL_AS_YESTERDAY, STAGES, env_for, polygon_for, sessions  # noqa: E402
from latency_proxy import Counts, LatencyProxy  # noqa: E402

BUCKET = "bench"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", type=float, default=0.1)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--restated", type=int, default=5)
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for the children")
    a = p.parse_args()
    with moto_server(BUCKET) as direct:
        return _run(a, direct)


def _run(a: argparse.Namespace, direct: str) -> int:
    """The measurement against the moto server at ``direct``."""
    from bench_resample import restate_longest
    from condvest.core import layout
    from condvest.settings import load_settings
    from condvest.storage import open_storage
    from conftest import moto_copy_prefix

    host, port = direct.removeprefix("http://").rsplit(":", 1)
    proxy = LatencyProxy(host, int(port), latency_s=a.latency_ms / 1000).start()
    latest, previous = sessions()
    template = f"s3://{BUCKET}/template"
    extra = dict(item.split("=", 1) for item in a.set)

    def storage_of(uri: str) -> object:
        overrides = {"lake": {"uri": uri}, "s3": {"endpoint_url": direct}}
        return open_storage(uri, load_settings(overrides=overrides))

    args = [sys.executable, str(HERE / "make_lake.py"), template, "--scale", str(a.scale)]
    args += ["--date-files", "5", "--date-files-mode", "merged", "--end", str(previous)]
    built = run_child([*args, "--endpoint-url", direct], "make_lake (s3)", dict(os.environ))
    print(f"built the template at scale {a.scale} in {built.wall_s:.0f} s", flush=True)
    storage = storage_of(template)
    bronze_mb = sum(o.size for o in storage.list_objects(layout.BRONZE_OHLCV + "/")) / 1e6
    symbols = sorted(
        d.removeprefix("symbol=") for d in storage.list_dirs(layout.BRONZE_OHLCV + "/")
    )
    polygon = polygon_for(latest, symbols)
    full = run_child(
        [sys.executable, "-c", FULL_AS_YESTERDAY], "full", env_for(template, polygon, direct)
    )
    print(f"silver of the template: {full.wall_s:.0f} s", flush=True)
    cli = [sys.executable, "-m", "condvest", "-o", "json", "-q"]
    lines: list[tuple[str, str, float, Counts, str]] = []

    def measured(label: str, argv: list[str], env: dict[str, str]) -> tuple[float, Counts, str]:
        before = proxy.snapshot()
        child = run_child(argv, label, env)
        return child.wall_s, proxy.snapshot() - before, child.out

    try:
        for day in ("normal day", f"{a.restated} restated"):
            copies = []
            for suffix in ("run", "stages"):
                uri = f"s3://{BUCKET}/{day.split()[0]}-{suffix}"
                moto_copy_prefix(BUCKET, "template/", uri.split("/", 3)[3] + "/")
                # A copy inside moto gives every object a new LastModified, so the template's
                # merged date files would look newer than the manifest and be merged again (5
                # extra GETs per symbol that no real day has): settle the copy first, untimed.
                settle = env_for(uri, polygon, direct)
                run_child([*cli, "consolidate"], "consolidate the copy (untimed)", settle)
                if day != "normal day":
                    restate_longest(storage_of(uri), a.restated)  # type: ignore[arg-type]
                copies.append(env_for(uri, polygon, proxy.url) | extra)
            wall, counts, out = measured("run", [*cli, "run", "--vacuum"], copies[0])
            result = json.loads(out)
            times = " / ".join(
                f"{s['stage']} {float(s['duration_s']):.1f}" for s in result["stages"]
            )
            lines.append((day, "condvest run --vacuum", wall, counts, times))
            for stage in STAGES:
                wall, counts, _ = measured(stage, [*cli, stage], copies[1])
                lines.append((day, f"  {stage} (own process)", wall, counts, ""))
    finally:
        polygon.stop()
        proxy.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nS3 via latency proxy ({a.latency_ms:g} ms per request), {len(symbols)} symbols "
        f"(scale {a.scale}), bronze {bronze_mb:,.1f} MB; cpus {os.cpu_count()}; load {load}"
    )
    if extra:
        print("settings: " + " ".join(a.set))
    print(
        "| day | what | wall s | GET | HEAD | PUT | LIST | DELETE | POST | GET MB | "
        "GET MB / bronze | cost USD | stages in run |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for day, what, wall, c, note in lines:
        r = c.requests
        got = c.bytes_in.get("GET", 0) / 1e6
        cells = " | ".join(
            f"{r.get(k, 0):,}" for k in ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")
        )
        print(
            f"| {day} | {what} | {wall:.1f} | {cells} | {got:,.1f} | "
            f"{got / bronze_mb:.1%} | {c.cost_usd():.5f} | {note} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

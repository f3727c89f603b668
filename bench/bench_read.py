"""Reading the lake against a hand-written DuckDB query (issue 16; prints a table, not a test).

    python bench/bench_read.py [--lake /tmp/condvest-bench-lake-read] [--scale 1.0]
        [--s3-scale 0.1] [--reps 5] [--interval 5] [--cases abcde] [--skip-local] [--skip-s3]

A seed-scale lake (bench/make_lake.py: pending date files, so every read merges) on local disk
at ``--scale`` (built once into ``--lake``, then reused) and one in the moto S3 server at
``--s3-scale`` (built each run), each with its silver (``condvest resample --full``). Five cases,
each read through ``condvest.open_lake(...).daily(...)`` / ``.bars(...)``:

  (a) the symbol with the longest history, all of it;  (b) 100 symbols x the last year;
  (c) every symbol on one session (a year before the last);  (d) the whole lake;
  (e) ``--interval`` bars starting in the last year.

The baseline, measured in the same process: DuckDB ``read_parquet`` over exactly the files a
correct answer needs (each symbol's ``data.parquet`` and the ``date=`` files whose session is in
range; the silver month files of the year), listed beforehand and untimed, with the same date
filter and no deduplication (``hive_partitioning`` off). Files are given in (symbol, data file,
date files) order and DuckDB keeps insertion order, so (a)-(d) come back in condvest's (symbol,
date) order without a sort; (e) spans month files and needs ``ORDER BY symbol, start_date``. On
S3 DuckDB reads through the storage's own s3fs filesystem (``register_filesystem``: no httpfs).
Each case's row counts must agree. Printed: the first (cold) call, the median of ``--reps``
warm calls (condvest and baseline alternating), rows, condvest / baseline; for (d) also the peak
RSS of each in a child process (wait4). Quote the load average with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

from _common import moto_server, run_child  # noqa: E402  (bench/ is sys.path[0] as a script)

BUCKET = "bench"
INTERVAL_DEFAULT = 5


@dataclass(frozen=True)
class Case:
    name: str
    condvest: Callable[[], Any]
    files: list[str]
    where: str
    order: str = ""


@dataclass(frozen=True)
class Figures:
    case: str
    rows: int
    cold: tuple[float, float]
    warm: tuple[float, float]
    peak_mb: tuple[float, float] | None = None

    def row(self) -> str:
        (c0, b0), (c, b) = self.cold, self.warm
        peak = f"{self.peak_mb[0]:,.0f} / {self.peak_mb[1]:,.0f}" if self.peak_mb else ""
        return (
            f"| {self.case} | {self.rows:,} | {c * 1e3:,.1f} | {b * 1e3:,.1f} | {c / b:.2f} | "
            f"{c0 * 1e3:,.1f} | {b0 * 1e3:,.1f} | {peak} |"
        )


def child_env(endpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    if endpoint:
        env["CONDVEST_S3__ENDPOINT_URL"] = endpoint
    return env


def build(uri: str, scale: float, endpoint: str | None) -> None:
    """make_lake (pending date files) and silver (resample --full), each in a child."""
    args = [sys.executable, str(HERE / "make_lake.py"), uri, "--scale", str(scale)]
    args += ["--endpoint-url", endpoint] if endpoint else []
    made = run_child(args, "make_lake", child_env(endpoint))
    print(made.out.strip(), f"({made.wall_s:.0f} s)", flush=True)
    cli = [sys.executable, "-m", "condvest", "--lake", uri, "-q", "resample", "--full"]
    full = run_child(cli, "resample --full", child_env(endpoint))
    print(f"silver (resample --full): {full.figures()}", flush=True)


def layout_of(storage: Any) -> dict[str, list[str]]:
    """Bronze keys by symbol: data.parquet first, then the date files by session."""
    from condvest.core import layout

    out: dict[str, list[str]] = {}
    for obj in storage.list_objects(layout.BRONZE_OHLCV + "/"):
        symbol = layout.parse_symbol_dir(obj.key)
        name = obj.key.rsplit("/", 1)[-1]
        if symbol is None or layout.is_temp_key(obj.key):
            continue
        if name == layout.DATA_FILE or layout.parse_date_file(name) is not None:
            out.setdefault(symbol, []).append(obj.key)
    for keys in out.values():
        keys.sort(key=lambda k: (not k.endswith(layout.DATA_FILE), k))
    return out


def needed(keys: list[str], start: date | None, end: date | None) -> list[str]:
    """The data file and the date files whose session is in ``[start, end]``."""
    from condvest.core import layout

    out = []
    for key in keys:
        day = layout.parse_date_file(key)
        if day is None or ((start is None or day >= start) and (end is None or day <= end)):
            out.append(key)
    return out


def cases(lake: Any, storage: Any, interval: int) -> list[Case]:
    from condvest.core import layout

    bronze = layout_of(storage)
    symbols = sorted(bronze)
    sizes = {o.key: o.size for o in storage.list_objects(layout.BRONZE_OHLCV + "/")}
    longest = max(symbols, key=lambda s: sizes[layout.data_file(s)])
    end = lake.sessions()[-1]
    year = end - timedelta(days=365)
    session = lake.sessions(year, end)[0]
    hundred = symbols[:: max(1, len(symbols) // 100)][:100]
    months = []
    for obj in storage.list_objects(layout.silver_prefix(interval)):
        parsed = layout.parse_silver_file(obj.key)
        if parsed and parsed[0] == interval and (parsed[1], parsed[2]) >= (year.year, year.month):
            months.append(obj.key)

    def files(names: list[str], start: date | None, stop: date | None) -> list[str]:
        return [k for s in names for k in needed(bronze[s], start, stop)]

    span = f"date BETWEEN DATE '{year}' AND DATE '{end}'"
    return [
        Case(f"(a) {longest}, full history", lambda: lake.daily(longest), bronze[longest], ""),
        Case(
            f"(b) {len(hundred)} symbols x {year}..{end}",
            lambda: lake.daily(hundred, year, end),
            files(hundred, year, end),
            span,
        ),
        Case(
            f"(c) {len(symbols)} symbols on {session}",
            lambda: lake.daily(None, session, session),
            files(symbols, session, session),
            f"date = DATE '{session}'",
        ),
        Case("(d) whole lake", lambda: lake.daily(), files(symbols, None, None), ""),
        Case(
            f"(e) bars_{interval}d from {year}",
            lambda: lake.bars(interval, start=year, end=end),
            sorted(months),
            span.replace("date", "start_date"),
            " ORDER BY symbol, start_date",
        ),
    ]


def baseline(con: Any, storage: Any, case: Case) -> Callable[[], Any]:
    """The hand-written query of ``case`` (the file list a parameter, not SQL text to parse)."""
    where = f" WHERE {case.where}" if case.where else ""
    query = f"SELECT * FROM read_parquet($files, hive_partitioning = false){where}{case.order}"
    files = [storage.url(k) for k in case.files]
    return lambda: con.sql(query, params={"files": files}).to_arrow_table()


def connect(storage: Any) -> Any:
    import duckdb

    con = duckdb.connect(":memory:", config={"autoload_known_extensions": False})
    fs = getattr(storage, "fs", None)
    if fs is not None:  # s3fs: DuckDB reads through it, as condvest does
        con.register_filesystem(fs)
    return con


@dataclass(frozen=True)
class _Rows:
    items: list[str]

    @property
    def num_rows(self) -> int:
        return len(self.items)


def timed(work: Callable[[], Any]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = work().num_rows
    return time.perf_counter() - t0, rows


def measure(case: Case, storage: Any, con: Any, reps: int) -> Figures:
    theirs_query = baseline(con, storage, case)
    c0, rows = timed(case.condvest)
    b0, base_rows = timed(theirs_query)
    if rows != base_rows:
        sys.exit(f"{case.name}: condvest read {rows:,} rows, the baseline {base_rows:,}")
    ours, theirs = [], []
    for _ in range(reps):
        ours.append(timed(case.condvest)[0])
        theirs.append(timed(theirs_query)[0])
    warm = (statistics.median(ours), statistics.median(theirs))
    return Figures(case.name, rows, (c0, b0), warm)


PEAK_CONDVEST = """
import sys, condvest
print(condvest.open_lake(sys.argv[1]).daily().num_rows)
"""
PEAK_BASELINE = """
import sys
sys.path.insert(0, sys.argv[2])
import bench_read, condvest
from condvest.storage import open_storage
lake = condvest.open_lake(sys.argv[1])
storage = open_storage(sys.argv[1], lake.settings)
case = [c for c in bench_read.cases(lake, storage, 5) if c.name == "(d) whole lake"][0]
print(bench_read.baseline(bench_read.connect(storage), storage, case)().num_rows)
"""


def peaks(uri: str, endpoint: str | None) -> tuple[float, float]:
    """Peak RSS of the whole-lake read, condvest and baseline, each in a fresh child."""
    env = child_env(endpoint)
    ours = run_child([sys.executable, "-c", PEAK_CONDVEST, uri], "peak condvest", env)
    theirs = run_child([sys.executable, "-c", PEAK_BASELINE, uri, str(HERE)], "peak base", env)
    return ours.peak_mb, theirs.peak_mb


def run(label: str, uri: str, endpoint: str | None, reps: int, interval: int, which: str) -> None:
    import condvest
    from condvest.storage import open_storage

    overrides = {"s3": {"endpoint_url": endpoint}} if endpoint else {}
    lake = condvest.open_lake(uri, **overrides)
    storage = open_storage(uri, lake.settings)  # lists the files the baseline reads, untimed
    con = connect(storage)
    # First, while this process is small: a child's wait4 peak includes its parent's RSS at
    # the spawn (Linux keeps the old memory's high-water mark across exec).
    peak = peaks(uri, endpoint) if "d" in which else None
    results = []
    for case in cases(lake, storage, interval):
        if case.name[1] not in which:
            continue
        n = max(1, reps // 2) if case.name.startswith("(d)") else reps
        figures = measure(case, storage, con, n)
        if case.name.startswith("(d)"):
            figures = Figures(**{**figures.__dict__, "peak_mb": peak})
        print(figures.row(), flush=True)
        results.append(figures)
    listing = statistics.median(timed(lambda: _Rows(lake.symbols()))[0] for _ in range(3))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{label}: {uri}; reps {reps}; cpus {os.cpu_count()}; load {load}")
    print(
        f"(one listing of bronze, as (c) and (d) do it, untimed for the baseline: "
        f"{listing * 1e3:,.0f} ms)"
    )
    print(
        "| case | rows | condvest ms | baseline ms | ratio | cold condvest ms | "
        "cold baseline ms | peak MB condvest / baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for figures in results:
        print(figures.row())
    print(flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lake", default="/tmp/condvest-bench-lake-read")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--s3-scale", type=float, default=0.1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--interval", type=int, default=INTERVAL_DEFAULT)
    p.add_argument("--cases", default="abcde", help="which cases, e.g. abc")
    p.add_argument("--skip-local", action="store_true")
    p.add_argument("--skip-s3", action="store_true")
    a = p.parse_args()
    if not a.skip_local:
        built = Path(a.lake + ".built")  # beside the lake: nothing foreign inside it
        if not built.exists() or built.read_text().strip() != str(a.scale):
            build(a.lake, a.scale, None)
            built.write_text(str(a.scale))
        run(f"local disk, scale {a.scale}", a.lake, None, a.reps, a.interval, a.cases)
    if not a.skip_s3:
        with moto_server(BUCKET) as endpoint:
            uri = f"s3://{BUCKET}/read"
            build(uri, a.s3_scale, endpoint)
            run(f"moto S3, scale {a.s3_scale}", uri, endpoint, a.reps, a.interval, a.cases)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Resample benchmark (prints figures; not a test).

    python bench/bench_resample.py [--lake /tmp/condvest-bench-lake-resample] [--scale 1.0]

1. Builds (once) a seed-scale lake with bench/make_lake.py: consolidated (no pending date
   files), ending one session before the latest completed session.
2. Full rebuild of all six intervals (`resample --full`) in a child process, with the clock set
   two hours after the previous session's close: the checkpoint is "yesterday's run".
3. The I/O floor, in a child process: the same bronze read (same reader), then the same number
   of rows written into the same month partitions (silver-shaped rows, no bar computation).
4. One new session lands (a date file per symbol); the daily incremental `condvest resample`
   (real clock: through = the latest completed session) reads the new date files.
5. The same on a hard-linked copy of yesterday's lake, in `condvest run`'s order: consolidate,
   then the daily incremental resample (the new day is inside data.parquet; the data files come
   from the bronze tail index consolidate wrote). Before step 1 the lake is consolidated once
   in full, so every symbol has its index entry, as on a lake consolidate has run on.
6. A split day (issue 19 item 1), on another hard-linked copy, also in `run`'s order: the same new
   session lands, the 5 symbols of longest history are restated (every older row halved, a newer
   fetched_at, the restated marker) as fetch's split handling leaves them, consolidate runs,
   then resample. Printed beside step 5's run ("daily run without"), with the ratios (target
   <= 2x time and peak memory).
Wall time, CPU time and peak RSS (wait4 rusage of each child) are printed, with the full/floor
ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from _common import Child, run_child  # bench/ is sys.path[0] when run as a script
from condvest.storage import Storage

HERE = Path(__file__).resolve().parent
FLOOR_PREFIX = "bench_floor/"

FLOOR_CODE = r"""
import sys, json
import numpy as np, pyarrow as pa
from concurrent.futures import ThreadPoolExecutor
from condvest.core import layout
from condvest.core.schema import SILVER_SCHEMA
from condvest.jobs.bronze import list_bronze
from condvest.jobs.resample.reader import read_bronze
from condvest.storage import open_storage
from condvest.state.checkpoints import read_checkpoint
storage = open_storage(sys.argv[1])
src = read_bronze(storage, list_bronze(storage).with_files(), workers=4).table
n = src.num_rows
shaped = pa.table({
    "symbol": src.column("symbol"), "start_date": src.column("date"),
    "end_date": src.column("date"), "open": src.column("open"), "high": src.column("high"),
    "low": src.column("low"), "close": src.column("close"), "volume": src.column("volume"),
    "vwap": src.column("vwap"), "transactions": src.column("transactions"),
    "sessions": pa.array(np.ones(n, np.int32)), "complete": pa.array(np.ones(n, bool)),
}).cast(SILVER_SCHEMA)
jobs = []
for interval in (3, 5, 8, 13, 21, 34):
    months = read_checkpoint(storage, interval)["months"]
    offset = 0
    for label, (digest, _version) in sorted(months.items()):
        rows = int(digest.split(":")[1])
        key = "bench_floor/" + layout.silver_file(interval, int(label[:4]), int(label[4:]))
        jobs.append((key, offset % max(1, n - rows), rows))
        offset += rows
def write(job):
    key, start, rows = job
    storage.write_parquet(key, shaped.slice(start, rows))
    return rows
with ThreadPoolExecutor(8) as pool:
    total = sum(pool.map(write, jobs))
print(json.dumps({"rows_read": n, "rows_written": total, "files": len(jobs)}))
"""


FULL_CODE = r"""
import sys
from datetime import timedelta
from condvest.jobs.base import JobContext
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.settings import load_settings
settings = load_settings(overrides={"lake": {"uri": sys.argv[1]}})
ctx = JobContext.from_settings(settings)
previous = ctx.calendar.previous_session(ctx.calendar.latest_completed_session(ctx.clock()))
at = ctx.calendar.session_close(previous) + timedelta(hours=2)
ctx.clock = lambda: at
result = run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True)))
assert result.ok, result.to_dict()
print(result.through)
"""


DUCKDB_CODE = r"""
import sys, json
from datetime import timedelta
import duckdb, pyarrow as pa
from condvest.core.calendar import get_calendar
lake, out, through = sys.argv[1], sys.argv[2], sys.argv[3]
cal = get_calendar()
days = cal.all_sessions()
sessions = pa.table(
    {"day": pa.array(days, pa.date32()), "idx": pa.array(range(len(days)), pa.int64())}
)
latest = [d.isoformat() for d in days].index(through)
con = duckdb.connect(config={"memory_limit": "3GB"})
con.execute("SET enable_progress_bar = false")
con.register("sessions", sessions)
rows = con.execute(f'''
COPY (
  WITH daily AS (
    SELECT b.symbol, b.date, s.idx, b.open, b.high, b.low, b.close, b.volume, b.vwap,
           b.transactions
    FROM read_parquet('{lake}/bronze/raw_ohlcv/*/data.parquet', hive_partitioning=false) b
    JOIN sessions s ON s.day = b.date
  ), bars AS (
    SELECT iv.n, d.symbol, d.idx // iv.n AS bar,
           arg_min(d.open, d.date) AS open, max(d.high) AS high, min(d.low) AS low,
           arg_max(d.close, d.date) AS close, sum(d.volume) AS volume,
           sum(d.vwap * d.volume) FILTER (d.vwap IS NOT NULL)
             / nullif(sum(d.volume) FILTER (d.vwap IS NOT NULL), 0) AS vwap,
           sum(d.transactions) AS transactions, count(*)::INTEGER AS sessions
    FROM daily d CROSS JOIN (VALUES (3), (5), (8), (13), (21), (34)) iv(n)
    GROUP BY ALL
  )
  SELECT b.n, b.symbol, f.day AS start_date, l.day AS end_date, b.open, b.high, b.low,
         b.close, b.volume, b.vwap, b.transactions, b.sessions, true AS complete,
         year(f.day) AS year, month(f.day) AS month
  FROM bars b
  JOIN sessions f ON f.idx = b.bar * b.n
  JOIN sessions l ON l.idx = b.bar * b.n + b.n - 1
  WHERE b.bar * b.n + b.n - 1 <= {latest}
  ORDER BY b.n, b.symbol, start_date
) TO '{out}' (FORMAT parquet, PARTITION_BY (n, year, month), OVERWRITE_OR_IGNORE)
''').fetchone()[0]
print(json.dumps({"rows_written": rows}))
"""


def check_duckdb(lake: Path, out: Path) -> str:
    """The query's bars against silver: rows per interval, and 3 months of each compared
    row for row (sorted; floats to 1e-9 relative: the sums run in another order)."""
    import duckdb

    from condvest.state.checkpoints import read_checkpoint
    from condvest.storage import open_storage

    storage = open_storage(str(lake))
    con = duckdb.connect()
    notes = []
    for n in (3, 5, 8, 13, 21, 34):
        checkpoint = read_checkpoint(storage, n)
        assert checkpoint is not None
        query = f"SELECT count(*) FROM read_parquet('{out}/n={n}/*/*/*.parquet')"
        got = con.sql(query).fetchall()[0][0]
        labels = sorted(checkpoint["months"])
        cols = "symbol, start_date, end_date, open, high, low, close, volume, vwap, "
        cols += "transactions, sessions, complete"
        same = True
        for label in (labels[0], labels[len(labels) // 2], labels[-1]):
            year, month = int(label[:4]), int(label[4:])
            a = con.sql(
                f"SELECT {cols} FROM read_parquet('{out}/n={n}/year={year}/month={month}/"
                "*.parquet') ORDER BY symbol, start_date"
            ).fetchall()
            b = con.sql(
                f"SELECT {cols} FROM read_parquet('{lake}/silver/silver_{n}d/year={year:04d}/"
                f"month={month:02d}/*.parquet') ORDER BY symbol, start_date"
            ).fetchall()
            same &= len(a) == len(b) and all(
                x == y or (isinstance(x, float) and abs(x - y) <= 1e-9 * max(abs(x), 1.0))
                for ra, rb in zip(a, b, strict=True)
                for x, y in zip(ra, rb, strict=True)
            )
        bars = int(checkpoint["bars"])
        notes.append(f"{n}d {got}/{bars} bars, 3 months {'same' if same else 'DIFFER'}")
    return "; ".join(notes)


RESTATED = 5


def restate_longest(storage: Storage, n: int) -> list[str]:
    """Restate the ``n`` symbols of longest history (largest data.parquet) as a split would:
    every row's prices halved, a newer fetched_at, the restated marker."""
    from condvest.core import layout

    datas = [
        o
        for o in storage.list_objects(layout.BRONZE_OHLCV + "/")
        if o.key.endswith("/" + layout.DATA_FILE)
    ]
    longest = sorted(datas, key=lambda o: -o.size)[:n]
    stamp = pa.scalar(datetime.now(UTC), pa.timestamp("ms", tz="UTC"))
    symbols = []
    for obj in longest:
        table = storage.read_parquet(obj.key)
        for name in ("open", "high", "low", "close", "vwap"):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, table.schema.field(i), pc.multiply(table[name], 0.5))
        i = table.schema.get_field_index("fetched_at")
        fetched = pa.array([stamp.value] * table.num_rows, table.schema.field(i).type)
        table = table.set_column(i, table.schema.field(i), fetched)
        storage.write_parquet(obj.key, table)
        symbol = str(table.column("symbol")[0])
        storage.write_json(layout.restated_marker(symbol), {"symbol": symbol})
        symbols.append(symbol)
    return symbols


def print_full(a: argparse.Namespace, full: Child, floor: Child, query: Child, check: str) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"lake {a.lake} (scale {a.scale}); cpus {os.cpu_count()}; load {load}")
    print(f"full rebuild, 6 intervals : {full.figures()}")
    print(f"I/O floor (read + write)  : {floor.figures()}  {floor.out.strip()}")
    print(
        f"full / floor              : {full.wall_s / floor.wall_s:6.2f}x wall, "
        f"{full.cpu_s / floor.cpu_s:.2f}x cpu"
    )
    print(f"DuckDB same-bars query    : {query.figures()}  {query.out.strip()}")
    print(f"  its bars against silver : {check}")
    print(
        f"full / DuckDB query       : {full.wall_s / query.wall_s:6.2f}x wall, "
        f"{full.cpu_s / query.cpu_s:.2f}x cpu, {full.peak_mb / query.peak_mb:.2f}x peak memory "
        "(target <= 1.0x wall, peak no higher)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", default="/tmp/condvest-bench-lake-resample")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--skip-daily", action="store_true", help="only the full rebuild and baselines")
    a = p.parse_args()
    py = sys.executable
    from condvest.core import layout
    from condvest.core.calendar import get_calendar
    from condvest.storage import open_storage

    cal = get_calendar()
    latest = cal.latest_completed_session(datetime.now(UTC))
    previous = cal.previous_session(latest)
    assert previous is not None
    lake = Path(a.lake)
    if not (lake / "bronze").exists():
        args = [py, str(HERE / "make_lake.py"), str(lake), "--scale", str(a.scale)]
        args += ["--date-files", "0", "--end", previous.isoformat()]
        built = run_child(args, "make_lake")
        print(f"built lake in {built.wall_s:.1f} s: {built.out.strip()}")
    storage = open_storage(str(lake))
    for key in [o.key for o in storage.list_objects(layout.BRONZE_OHLCV + "/")]:
        if layout.parse_date_file(key) == latest:
            storage.delete(key)  # a previous run's "new session"
    cli = [py, "-m", "condvest", "--lake", str(lake), "-o", "json", "-q"]
    if not storage.exists(layout.BRONZE_TAILS):
        run_child([*cli, "consolidate", "--mode", "full"], "consolidate --mode full (tail index)")
    full = run_child([py, "-c", FULL_CODE, str(lake)], "full rebuild")
    assert full.out.strip() == previous.isoformat(), full.out
    floor = run_child([py, "-c", FLOOR_CODE, str(lake)], "I/O floor")
    storage.delete_many([o.key for o in storage.list_objects(FLOOR_PREFIX)])
    duck_out = lake.with_name(lake.name + "-duckdb-bars")
    shutil.rmtree(duck_out, ignore_errors=True)
    query = run_child(
        [py, "-c", DUCKDB_CODE, str(lake), str(duck_out), previous.isoformat()], "DuckDB query"
    )
    duck_check = check_duckdb(lake, duck_out)
    shutil.rmtree(duck_out)
    if a.skip_daily:
        print_full(a, full, floor, query, duck_check)
        return 0
    # Yesterday's lake, twice (hard links: every lake write is temp + rename, so the copies never
    # change each other): one new session lands in both (a date file per symbol, as fetch writes
    # it). In the first, resample runs right away (the date files are read); in the second,
    # consolidate runs first, the order of `condvest run` (data.parquet holds the new day).
    after = lake.with_name(lake.name + "-after-consolidate")
    split_day = lake.with_name(lake.name + "-restated")
    for copy in (after, split_day):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(lake, copy, copy_function=os.link)
    for target in (storage, open_storage(str(after)), open_storage(str(split_day))):
        for sym_dir in target.list_dirs(layout.BRONZE_OHLCV + "/"):
            symbol = sym_dir.removeprefix("symbol=")
            data = target.read_parquet(layout.data_file(symbol))
            row = data.slice(data.num_rows - 1, 1)
            row = row.set_column(1, row.schema.field("date"), pa.array([latest], pa.date32()))
            target.write_parquet(layout.date_file(symbol, latest), row)
    restated = restate_longest(open_storage(str(split_day)), RESTATED)
    inc = run_child([*cli, "resample"], "daily incremental")
    cli_split = [py, "-m", "condvest", "--lake", str(split_day), "-o", "json", "-q"]
    run_child([*cli_split, "consolidate"], "consolidate, restated symbols")
    inc_split = run_child([*cli_split, "resample"], "daily incremental, restated symbols")
    shutil.rmtree(split_day)
    cli_after = [py, "-m", "condvest", "--lake", str(after), "-o", "json", "-q"]
    cons = run_child([*cli_after, "consolidate"], "consolidate")
    inc_after = run_child([*cli_after, "resample"], "daily incremental after consolidate")
    shutil.rmtree(after)
    import json

    got, got_after = json.loads(inc.out), json.loads(inc_after.out)
    got_split = json.loads(inc_split.out)
    print_full(a, full, floor, query, duck_check)
    bronze = sum(o.size for o in storage.list_objects(layout.BRONZE_OHLCV + "/"))

    def read(got: dict[str, Any]) -> str:
        return (
            f"rows read {got['input_rows']}, files read {got['files_read']} "
            f"({got['data_files_from_index']} data files from the tail index instead), "
            f"bytes read {got['bytes_read'] / 1e6:.1f} MB ({got['bytes_read'] / bronze:.1%} of "
            "bronze)"
        )

    print(
        f"daily, date files unmerged: {inc.figures()}  "
        f"months written {got['months_written']}, rows {got['rows_written']}, {read(got)}"
    )
    print(f"  (consolidate first      : {cons.figures()})")
    start = run_child([py, "-c", "import condvest.cli.app"], "imports")
    print(f"  (process start + imports: {start.figures()}: part of every run above)")
    print(
        f"daily run without (+1 day, after consolidate): {inc_after.figures()}  "
        f"months written {got_after['months_written']}, rows {got_after['rows_written']}, "
        f"{read(got_after)}"
    )
    print(
        f"daily run with {RESTATED} restated (after consolidate): {inc_split.figures()}  "
        f"months written {got_split['months_written']}, rows {got_split['rows_written']}, "
        f"{read(got_split)}  ({', '.join(restated)})"
    )
    print(
        f"  restated / without      : {inc_split.wall_s / inc_after.wall_s:6.2f}x wall, "
        f"{inc_split.peak_mb / inc_after.peak_mb:.2f}x peak memory (target <= 2x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

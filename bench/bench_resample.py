"""Resample benchmark (prints figures; not a test).

    python bench/bench_resample.py [--lake /tmp/condvest-bench-lake-resample] [--scale 1.0]

1. Builds (once) a seed-scale lake with bench/make_lake.py: consolidated (no pending date
   files), ending one session before the latest completed session.
2. Full rebuild of all six intervals (`resample --full`) in a child process, with the clock set
   two hours after the previous session's close: the checkpoint is "yesterday's run".
3. The I/O floor, in a child process: the same bronze read (same reader), then the same number
   of rows written into the same month partitions (silver-shaped rows, no bar computation).
4. One new session lands (a date file per symbol); the daily incremental `condvest resample`
   (real clock: through = the latest completed session).
Wall time and peak RSS (wait4 rusage of each child) are printed, with the full/floor ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOR_PREFIX = "bench_floor/"

FLOOR_CODE = r"""
import sys, json
import numpy as np, pyarrow as pa
from concurrent.futures import ThreadPoolExecutor
from condvest.core import layout
from condvest.core.schema import SILVER_SCHEMA
from condvest.jobs.resample_input import list_bronze, read_bronze
from condvest.storage import open_storage
from condvest.state.checkpoints import read_checkpoint
storage = open_storage(sys.argv[1])
src = read_bronze(storage, list_bronze(storage), workers=4).table
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
from condvest.jobs.resample import ResampleOptions, plan_resample, run_resample
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


def run_child(args: list[str], label: str) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    usage = proc_rusage(proc.pid)
    if proc.returncode != 0:
        sys.exit(f"{label} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, usage, out


_RUSAGE: dict[int, float] = {}


def proc_rusage(pid: int) -> float:
    return _RUSAGE.get(pid, float("nan"))


def _wait4_popen() -> None:
    """Make Popen reap children with wait4 so each child's own peak RSS is kept."""

    def _try_wait(self: subprocess.Popen[str], wait_flags: int) -> tuple[int, int]:
        pid, status, usage = os.wait4(self.pid, wait_flags)
        if pid:
            _RUSAGE[pid] = usage.ru_maxrss / 1024
        return pid, status

    subprocess.Popen._try_wait = _try_wait  # type: ignore[attr-defined]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lake", default="/tmp/condvest-bench-lake-resample")
    p.add_argument("--scale", type=float, default=1.0)
    a = p.parse_args()
    _wait4_popen()
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
        wall, _rss, out = run_child(args, "make_lake")
        print(f"built lake in {wall:.1f} s: {out.strip()}")
    storage = open_storage(str(lake))
    for key in [o.key for o in storage.list_objects(layout.BRONZE_OHLCV + "/")]:
        if layout.parse_date_file(key) == latest:
            storage.delete(key)  # a previous run's "new session"
    cli = [py, "-m", "condvest", "--lake", str(lake), "-o", "json", "-q", "resample"]
    full_wall, full_rss, full_out = run_child([py, "-c", FULL_CODE, str(lake)], "full rebuild")
    assert full_out.strip() == previous.isoformat(), full_out
    floor_wall, floor_rss, floor_out = run_child([py, "-c", FLOOR_CODE, str(lake)], "I/O floor")
    storage.delete_many([o.key for o in storage.list_objects(FLOOR_PREFIX)])
    # One new session lands: a date file per symbol (as fetch would write it).
    import pyarrow as pa

    for sym_dir in storage.list_dirs(layout.BRONZE_OHLCV + "/"):
        symbol = sym_dir.removeprefix("symbol=")
        data = storage.read_parquet(layout.data_file(symbol))
        row = data.slice(data.num_rows - 1, 1)
        row = row.set_column(1, row.schema.field("date"), pa.array([latest], pa.date32()))
        storage.write_parquet(layout.date_file(symbol, latest), row)
    inc_wall, inc_rss, inc_out = run_child(cli, "daily incremental")
    import json

    inc = json.loads(inc_out)
    print(f"lake {lake} (scale {a.scale}); cpus {os.cpu_count()}; load {os.getloadavg()}")
    print(f"full rebuild, 6 intervals : {full_wall:6.1f} s  peak {full_rss:7.0f} MB")
    print(
        f"I/O floor (read + write)  : {floor_wall:6.1f} s  peak {floor_rss:7.0f} MB  "
        f"{floor_out.strip()}"
    )
    print(f"full / floor              : {full_wall / floor_wall:6.2f}x")
    print(
        f"daily incremental (+1 day): {inc_wall:6.1f} s  peak {inc_rss:7.0f} MB  "
        f"months written {inc['months_written']}, rows {inc['rows_written']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The daily incremental path (resample_tail): reads only rows from the cutoff, merges the
recomputed bars into their months, and falls back to the full read whenever older rows changed.
Each run is compared with what a full rebuild would write."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.jobs.resample.job import ResampleOptions, ResamplePlan, plan_resample, run_resample
from conftest import Lake, at
from resample_helpers import bars_by_key, bronze_row, read_silver, write_data, write_date

CAL = get_calendar()
HISTORY = CAL.sessions_between(date(2024, 4, 1), date(2024, 7, 9))
INTERVALS = (3, 5, 13)


def _now(day: date) -> datetime:
    return at(f"{day.isoformat()}T23:00:00+00:00")


def _run(lake: Lake, day: date) -> ResamplePlan:
    ctx = lake.context(now=_now(day))
    plan = plan_resample(ctx, ResampleOptions(intervals=INTERVALS))
    assert run_resample(ctx, plan).ok
    full = plan_resample(ctx, ResampleOptions(intervals=INTERVALS, full=True))
    for iplan in full.intervals:
        assert bars_by_key(read_silver(lake.storage, iplan.interval)) == bars_by_key(iplan.table)
    return plan


def _tail_used(plan: ResamplePlan) -> bool:
    return all(p.reason.startswith("bars from") for p in plan.intervals)


def _history(lake: Lake) -> None:
    for n, sym in enumerate(("A", "INF", "H")):
        write_data(lake.storage, sym, [bronze_row(sym, d, 10.0 + n) for d in HISTORY])


def test_daily_run_reads_only_the_tail_and_merges_months(lake: Lake) -> None:
    s = lake.storage
    _history(lake)
    first = _run(lake, HISTORY[-1])
    assert not _tail_used(first)  # no checkpoint yet: everything
    june = {n: s.stat(layout.silver_file(n, 2024, 6)).version for n in INTERVALS}
    # Three sessions land for A and INF (H halted: the clock alone must complete its bars).
    day = HISTORY[-1]
    for _ in range(3):
        day = CAL.next_session(day)  # type: ignore[assignment]
        for sym in ("A", "INF"):
            write_date(s, bronze_row(sym, day, 20.0, fetched_ms=5000))
        plan = _run(lake, day)
        assert _tail_used(plan)
        assert plan.input_rows < 3 * len(HISTORY) / 2  # only the tail was read
        assert all(m >= "202406" for p in plan.intervals for m in p.months_to_write)
    assert {n: s.stat(layout.silver_file(n, 2024, 6)).version for n in INTERVALS} == june
    bars = bars_by_key(read_silver(s, 3))
    assert bars[("H", date(2024, 7, 9))]["sessions"] == 1  # [07-09, 07-11]: H halted after 07-09
    # Consolidation rewrites data.parquet (same older rows): still the tail path.
    for sym in ("A", "INF"):
        rows = s.read_parquet(layout.data_file(sym)).to_pylist()
        for obj in s.list_objects(layout.symbol_prefix(sym)):
            if layout.parse_date_file(obj.key) is not None:
                rows += s.read_parquet(obj.key).to_pylist()
                s.delete(obj.key)
        write_data(s, sym, rows)
    day = CAL.next_session(day)  # type: ignore[assignment]
    write_date(s, bronze_row("A", day, 21.0, fetched_ms=6000))
    assert _tail_used(_run(lake, day))


@pytest.mark.parametrize("change", ["correction", "restatement", "vanished", "unmerged"])
def test_older_changes_read_only_the_changed_history(lake: Lake, change: str) -> None:
    """A restated or corrected symbol's whole history is read, the rest's tail; a vanished
    symbol still takes the full read."""
    s = lake.storage
    _history(lake)
    _run(lake, HISTORY[-1])
    day = CAL.next_session(HISTORY[-1])
    assert day is not None
    write_date(s, bronze_row("A", day, 20.0, fetched_ms=5000))
    if change == "correction":  # merged into data.parquet before resample saw the date file
        rows = [bronze_row("INF", d, 11.0) for d in HISTORY]
        rows[-10] = bronze_row("INF", HISTORY[-10], 99.0, fetched_ms=7000)
        write_data(s, "INF", rows)
    elif change == "restatement":
        write_data(s, "INF", [bronze_row("INF", d, 5.5, fetched_ms=7000) for d in HISTORY])
    elif change == "vanished":
        s.delete(layout.data_file("H"))
    else:  # a late date file not consolidated yet
        write_date(s, bronze_row("H", HISTORY[-20], 99.0, fetched_ms=7000))
    plan = _run(lake, day)
    if change == "vanished":
        assert not _tail_used(plan) and plan.intervals[0].mode == "incremental"
    else:
        assert _tail_used(plan)
        assert plan.full_history == ("H",) if change == "unmerged" else ("INF",)
    # The next day is back on the tail path (unless a date file is still to be merged).
    nxt = CAL.next_session(day)
    assert nxt is not None
    write_date(s, bronze_row("A", nxt, 20.0, fetched_ms=8000))
    assert _tail_used(_run(lake, nxt))


def test_a_new_symbol_joins_on_the_tail_path(lake: Lake) -> None:
    s = lake.storage
    _history(lake)
    _run(lake, HISTORY[-1])
    day = CAL.next_session(HISTORY[-1])
    assert day is not None
    write_date(s, bronze_row("NEW", day, 3.0, fetched_ms=5000))
    assert _tail_used(_run(lake, day))
    later = CAL.sessions_between(day, date(2024, 8, 30))
    plan = _run(lake, later[-1])
    assert _tail_used(plan)
    assert ("NEW", date(2024, 7, 9)) in bars_by_key(read_silver(s, 3))


def test_a_restatement_reads_one_history_and_rewrites_only_changed_months(lake: Lake) -> None:
    """A restated symbol: its whole history is read (no other symbol's older rows), and only the
    months holding its bars that changed are rewritten; the result equals a full rebuild."""
    s = lake.storage
    _history(lake)
    _run(lake, HISTORY[-1])
    day = CAL.next_session(HISTORY[-1])
    assert day is not None
    # INF restated from 2024-06-03 on (a split's adjustment of only some rows, for the test):
    # its April bars are unchanged (a 13-session bar from April ends before June), so the April
    # files, read because INF has bars there, must not be rewritten.
    split = date(2024, 6, 3)
    rows = [
        bronze_row("INF", d, 11.0 if d < split else 5.5, fetched_ms=7000 if d >= split else 0)
        for d in HISTORY
    ]
    write_data(s, "INF", rows)
    for sym in ("A", "INF", "H"):
        write_date(s, bronze_row(sym, day, 20.0, fetched_ms=8000))
    before = {
        (n, m): s.stat(layout.silver_file(n, 2024, m)).version for n in INTERVALS for m in (4, 6)
    }
    plan = _run(lake, day)
    assert _tail_used(plan) and plan.full_history == ("INF",)
    # INF's whole history + the other symbols' tail (a few sessions each) + the new day's files.
    assert len(HISTORY) < plan.input_rows < len(HISTORY) + 3 * 30
    after = {(n, m): s.stat(layout.silver_file(n, 2024, m)).version for n, m in before}
    assert all(after[n, 4] == before[n, 4] for n in INTERVALS)  # INF's April bars: unchanged
    assert all(after[n, 6] != before[n, 6] for n in INTERVALS)  # June's: restated
    assert all("202404" in p.months_to_write for p in plan.intervals)  # read, not rewritten
    assert all(p.symbols_affected == ("INF",) for p in plan.intervals)  # no bar of A, H complete
    # Back to the tail alone the next day.
    nxt = CAL.next_session(day)
    assert nxt is not None
    write_date(s, bronze_row("A", nxt, 20.0, fetched_ms=9000))
    plan = _run(lake, nxt)
    assert _tail_used(plan) and plan.full_history == ()


def test_bytes_read_counts_the_files_each_path_reads(lake: Lake) -> None:
    """The result's bytes_read: every bronze file for the first (full) run; on the tail path
    the bronze files opened plus the silver months read back to be merged."""
    s = lake.storage
    _history(lake)
    ctx = lake.context(now=_now(HISTORY[-1]))
    first = run_resample(ctx, plan_resample(ctx, ResampleOptions(intervals=INTERVALS)))
    bronze = sum(o.size for o in s.list_objects(layout.BRONZE_OHLCV + "/"))
    assert first.bytes_read == bronze > 0
    day = CAL.next_session(HISTORY[-1])
    assert day is not None
    for sym in ("A", "INF"):
        write_date(s, bronze_row(sym, day, 20.0, fetched_ms=5000))
    ctx = lake.context(now=_now(day))
    plan = plan_resample(ctx, ResampleOptions(intervals=INTERVALS))
    assert _tail_used(plan)
    assert plan.bytes_read == sum(o.size for o in s.list_objects(layout.BRONZE_OHLCV + "/"))
    result = run_resample(ctx, plan)
    merged = {(p.interval, m) for p in plan.intervals for m in p.months_to_write if m in p.existing}
    silver = sum(
        p.existing[m].size for p in plan.intervals for m in p.months_to_write if m in p.existing
    )
    assert merged and result.bytes_read == plan.bytes_read + silver
    assert result.to_dict()["bytes_read"] == result.bytes_read

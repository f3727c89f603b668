"""Property: after any sequence of fetch-like landings, consolidate-like merges (written
straight, or by consolidate's own merge, which keeps the bronze tail index), vacuums,
restatements, clock ticks and incremental resamples, silver equals a full rebuild.

The "world" is written straight through the Storage API, the way fetch and consolidate would."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from condvest.core import layout
from condvest.core.bars import BarAlignment
from condvest.core.calendar import get_calendar
from condvest.jobs.compaction import merge_into_data_file
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.state.bronze_tails import update_tails
from condvest.storage import Storage
from conftest import BUCKET, Lake, make_local_lake, make_s3_lake
from resample_helpers import bars_by_key, bronze_row, read_silver, table_of

SYMBOLS = ("A", "INF", "1234")
INTERVALS = (3, 5)
SESSIONS = get_calendar().sessions_between(date(2024, 6, 3), date(2024, 7, 31))

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("land"),
            st.sampled_from(SYMBOLS),
            st.integers(0, 6),
            st.floats(1, 100, allow_nan=False),
        ),
        st.tuples(st.just("consolidate"), st.sampled_from(SYMBOLS)),
        st.tuples(st.just("merge"), st.sampled_from(SYMBOLS), st.sampled_from([1, 3, 8, 40])),
        st.tuples(st.just("vacuum"), st.sampled_from(SYMBOLS)),
        st.tuples(st.just("restate"), st.sampled_from(SYMBOLS), st.sampled_from([0.5, 2.0])),
        st.tuples(st.just("tick"), st.integers(1, 4)),
        st.tuples(st.just("resample")),
    ),
    min_size=1,
    max_size=14,
)


class World:
    """The lake as fetch/consolidate/vacuum would leave it, plus the clock."""

    def __init__(self, storage: Storage) -> None:
        self.s = storage
        self.pos = 8  # index into SESSIONS of the latest completed session
        self.fetched = 1000

    def now(self) -> datetime:
        day = SESSIONS[self.pos]
        return datetime(day.year, day.month, day.day, 23, tzinfo=UTC)

    def _rows(self, sym: str, with_dates: bool) -> dict[date, dict[str, Any]]:
        rows: dict[date, dict[str, Any]] = {}
        if self.s.exists(layout.data_file(sym)):
            for r in self.s.read_parquet(layout.data_file(sym)).to_pylist():
                rows[r["date"]] = r
        if with_dates:
            for obj in self.s.list_objects(layout.symbol_prefix(sym)):
                day = layout.parse_date_file(obj.key)
                if day is not None:
                    (r,) = self.s.read_parquet(obj.key).to_pylist()
                    if day not in rows or r["fetched_at"] >= rows[day]["fetched_at"]:
                        rows[day] = r
        return rows

    def _date_keys(self, sym: str) -> list[str]:
        keys = [o.key for o in self.s.list_objects(layout.symbol_prefix(sym))]
        return [k for k in keys if layout.parse_date_file(k) is not None]

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "land":
            _, sym, back, price = op
            self.fetched += 1000
            day = SESSIONS[max(0, self.pos - back)]
            row = bronze_row(sym, day, price, fetched_ms=self.fetched)
            self.s.write_parquet(layout.date_file(sym, day), table_of([row]))
        elif kind == "consolidate":
            rows = self._rows(op[1], with_dates=True)
            if rows:
                self.s.write_parquet(
                    layout.data_file(op[1]), table_of([rows[d] for d in sorted(rows)])
                )
        elif kind == "merge":
            # consolidate's own merge, which puts the file's tail into the bronze tail index
            # (keeping ``keep`` rows: short entries make resample read the file after all)
            keys = self._date_keys(op[1])
            if keys:
                incoming = pa.concat_tables([self.s.read_parquet(k) for k in keys])
                report = merge_into_data_file(self.s, op[1], incoming, keep_tail=op[2])
                if report.tail is not None:
                    update_tails(self.s, [report.tail])
        elif kind == "vacuum":
            held = self._rows(op[1], with_dates=False)
            for key in self._date_keys(op[1]):
                day = layout.parse_date_file(key)
                (r,) = self.s.read_parquet(key).to_pylist()
                if day in held and held[day]["fetched_at"] >= r["fetched_at"]:
                    self.s.delete(key)
        elif kind == "restate":
            # A split: the rows before its ex-date (``back`` sessions ago; all of them without
            # one) are adjusted and refetched, the symbol's data.parquet rewritten.
            sym, factor = op[1], op[2]
            split = SESSIONS[max(0, self.pos - op[3])] if len(op) > 3 else date.max
            rows = self._rows(sym, with_dates=True)
            if rows:
                self.fetched += 1000
                stamp = datetime.fromtimestamp(self.fetched / 1000, UTC)
                new = [
                    {
                        **r,
                        **{k: r[k] * factor for k in ("open", "high", "low", "close")},
                        "vwap": None if r["vwap"] is None else r["vwap"] * factor,
                        "fetched_at": stamp,
                    }
                    if day < split
                    else r
                    for day, r in sorted(rows.items())
                ]
                self.s.write_parquet(layout.data_file(sym), table_of(new))
                self.s.delete_many(self._date_keys(sym))
                self.s.write_json(layout.restated_marker(sym), {"symbol": sym})
        elif kind == "tick":
            self.pos = min(self.pos + op[1], len(SESSIONS) - 1)


def _sub_lake(lake: Lake, tmp_path: Path) -> Lake:
    name = uuid.uuid4().hex[:8]
    if lake.kind == "local":
        return make_local_lake(tmp_path / name)
    assert lake.endpoint_url is not None
    return make_s3_lake(lake.endpoint_url, BUCKET, prefix=f"p{name}")


def _resample(lake: Lake, world: World) -> None:
    ctx = lake.context(now=world.now())
    result = run_resample(ctx, plan_resample(ctx, ResampleOptions(intervals=INTERVALS)))
    assert result.ok, result.to_dict()


def _assert_equals_full(lake: Lake, world: World) -> None:
    ctx = lake.context(now=world.now())
    plan = plan_resample(ctx, ResampleOptions(intervals=INTERVALS, full=True))
    for iplan in plan.intervals:
        assert bars_by_key(read_silver(lake.storage, iplan.interval)) == bars_by_key(iplan.table)


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=ops)
def test_incremental_always_equals_full(
    lake: Lake, tmp_path: Path, sequence: list[tuple[Any, ...]]
) -> None:
    sub = _sub_lake(lake, tmp_path)
    world = World(sub.storage)
    for sym in SYMBOLS[:2]:  # two symbols start with a short consolidated history
        rows = [bronze_row(sym, d, 10.0) for d in SESSIONS[: world.pos + 1]]
        sub.storage.write_parquet(layout.data_file(sym), table_of(rows))
    for op in sequence:
        if op[0] == "resample":
            _resample(sub, world)
            _assert_equals_full(sub, world)
        else:
            world.apply(op)
    _resample(sub, world)
    _assert_equals_full(sub, world)


# A split restates a symbol's older rows (newer fetched_at); a correction re-lands an old session.
split_restatement = st.tuples(
    st.just("restate"), st.sampled_from(SYMBOLS), st.sampled_from([0.5, 2.0]), st.integers(0, 12)
)
late_correction = st.tuples(
    st.just("land"),
    st.sampled_from(SYMBOLS[1:]),
    st.integers(2, 12),
    st.floats(1, 100, allow_nan=False),
)


# The daily shape, which the tail path (resample_tail) serves: sessions tick, new rows land on
# the latest session (sometimes a day late), consolidate/vacuum run, a symbol halts; and the
# days that matter: a split restates a symbol's older rows (newer fetched_at), a correction
# re-lands an old session's date file.
daily_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("land"),
            st.sampled_from(SYMBOLS[1:]),  # "A" never gets a new row: the clock completes its bars
            st.integers(0, 1),
            st.floats(1, 100, allow_nan=False),
        ),
        late_correction,
        split_restatement,
        st.tuples(st.just("consolidate"), st.sampled_from(SYMBOLS)),
        st.tuples(st.just("merge"), st.sampled_from(SYMBOLS), st.sampled_from([1, 3, 8, 40])),
        st.tuples(st.just("merge"), st.sampled_from(SYMBOLS), st.just(40)),
        st.tuples(st.just("vacuum"), st.sampled_from(SYMBOLS)),
        st.tuples(st.just("tick"), st.integers(1, 3)),
        st.tuples(st.just("resample")),
    ),
    min_size=1,
    max_size=16,
)


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sequence=daily_ops,
    partial=st.booleans(),
    alignment=st.sampled_from(BarAlignment),
    real_merges=st.booleans(),
)
def test_daily_incremental_tail_equals_full(
    lake: Lake,
    tmp_path: Path,
    sequence: list[tuple[Any, ...]],
    partial: bool,
    alignment: BarAlignment,
    real_merges: bool,
) -> None:
    """``real_merges``: every consolidate is consolidate's own merge (the bronze tail index
    kept, so resample reads the index instead of the data files it holds)."""
    sub = _sub_lake(lake, tmp_path)
    world = World(sub.storage)
    for sym in SYMBOLS[:2]:
        rows = [bronze_row(sym, d, 10.0) for d in SESSIONS[: world.pos + 1]]
        sub.storage.write_parquet(layout.data_file(sym), table_of(rows))
    options = ResampleOptions(intervals=(3, 5, 8), include_partial=partial, alignment=alignment)
    runs = 0
    for op in [*sequence, ("resample",)]:
        if op[0] == "consolidate" and real_merges:
            op = ("merge", op[1], 40)
        if op[0] != "resample":
            world.apply(op)
            continue
        ctx = sub.context(now=world.now())
        plan = plan_resample(ctx, options)
        if runs and alignment is BarAlignment.CALENDAR:
            # Restatements and corrections stay incremental: the tail path, every time.
            assert all(p.replace_from is not None for p in plan.intervals), plan.to_dict()
        runs += 1
        assert run_resample(ctx, plan).ok
        full = plan_resample(ctx, replace(options, full=True))
        for iplan in full.intervals:
            silver = bars_by_key(read_silver(sub.storage, iplan.interval))
            assert silver == bars_by_key(iplan.table)


# The daily shape with consolidate's own merge, so the bronze tail index serves the tail path:
# each "day" lands every symbol but "A" (halted), merges them with the index kept, and
# resamples; in between, the hostile days: a restatement or a straight write behind the index
# (its entry goes stale), a re-landed old session, a vacuum, entries too short to use.
index_days = st.lists(
    st.one_of(
        st.tuples(st.just("day"), st.floats(1, 100, allow_nan=False), st.sampled_from([40, 3])),
        split_restatement,
        st.tuples(st.just("consolidate"), st.sampled_from(SYMBOLS)),
        late_correction,
        st.tuples(st.just("vacuum"), st.sampled_from(SYMBOLS)),
    ),
    min_size=1,
    max_size=10,
)


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=index_days)
def test_daily_tail_from_the_tail_index_equals_full(
    lake: Lake, tmp_path: Path, sequence: list[tuple[Any, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    sub = _sub_lake(lake, tmp_path)
    world = World(sub.storage)
    for sym in SYMBOLS:  # the histories, merged as consolidate merges (each in the index)
        rows = [bronze_row(sym, d, 10.0) for d in SESSIONS[: world.pos + 1]]
        report = merge_into_data_file(sub.storage, sym, table_of(rows), keep_tail=40)
        assert report.tail is not None
        update_tails(sub.storage, [report.tail])
    options = ResampleOptions(intervals=(3, 5, 8))
    ctx = sub.context(now=world.now())
    assert run_resample(ctx, plan_resample(ctx, options)).ok
    days = 0
    for op in sequence:
        if op[0] != "day":
            world.apply(op)
            continue
        days += 1
        world.apply(("tick", 1))
        for sym in SYMBOLS[1:]:
            world.apply(("land", sym, 0, op[1]))
        for sym in SYMBOLS:
            world.apply(("merge", sym, op[2]))
        ctx = sub.context(now=world.now())
        with caplog.at_level("INFO", logger="condvest.resample"):
            plan = plan_resample(ctx, options)
        assert all(p.replace_from is not None for p in plan.intervals), plan.to_dict()
        assert run_resample(ctx, plan).ok
        full = plan_resample(ctx, replace(options, full=True))
        for iplan in full.intervals:
            assert bars_by_key(read_silver(sub.storage, iplan.interval)) == bars_by_key(iplan.table)
    if days and all(op[0] == "day" and op[2] == 40 for op in sequence):
        # nothing went behind the index: no data file was read after the first run
        assert f"{len(SYMBOLS)} of {len(SYMBOLS)} data files from the bronze tail index" in (
            caplog.text
        )

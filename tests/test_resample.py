"""resample: hand-computed bars, incremental == full, month merges, corrupt files, options.

Each test runs on local disk and on the S3 server (the ``lake`` fixture)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.core.bars import BarAlignment
from condvest.core.schema import BRONZE_SCHEMA, SILVER_SCHEMA
from condvest.errors import CorruptFileError, StorageError
from condvest.jobs.resample.job import ResampleOptions, ResampleResult, plan_resample, run_resample
from condvest.state.checkpoints import read_checkpoint
from conftest import Lake, at
from resample_helpers import bars_by_key, bronze_row, read_silver, write_data, write_date
from test_smoke import run_cli

D = date
# 2024-07-04 is a holiday. 3-session calendar bars around it (index 15732 = 2024-07-03, 15732 % 3
# == 0): [07-03, 07-05, 07-08], [07-09, 07-10, 07-11], [07-12, 07-15, 07-16].
AFTER_0712 = at("2024-07-12T22:00:00+00:00")  # 07-12's close + 15 min has passed
HOLIDAY_BAR = [D(2024, 7, 3), D(2024, 7, 5), D(2024, 7, 8)]
NEXT_BAR = [D(2024, 7, 9), D(2024, 7, 10), D(2024, 7, 11)]


def resample(lake: Lake, now: object = AFTER_0712, **kw: object) -> ResampleResult:
    opts = {"intervals": (3,), **kw}
    ctx = lake.context(now=now)  # type: ignore[arg-type]
    return run_resample(ctx, plan_resample(ctx, ResampleOptions(**opts)))  # type: ignore[arg-type]


def full_rebuild(lake: Lake, now: object, **kw: object) -> dict[int, pa.Table]:
    """What a full rebuild would write (a dry-run plan: nothing is written)."""
    ctx = lake.context(now=now)  # type: ignore[arg-type]
    plan = plan_resample(ctx, ResampleOptions(full=True, **kw))  # type: ignore[arg-type]
    return {p.interval: p.table for p in plan.intervals}


def test_hand_computed_bars_holiday_halt_ipo(lake: Lake) -> None:
    s = lake.storage
    # HOL trades every session; closes 10..15, volumes 100..600.
    days = HOLIDAY_BAR + NEXT_BAR
    hol = [
        bronze_row("HOL", d, 10.0 + i, volume=100.0 * (i + 1), transactions=i + 1)
        for i, d in enumerate(days)
    ]
    write_data(s, "HOL", hol)
    # HLT is halted on 07-05; IPO's first session is 07-05 (mid-bar); vwap missing on one row.
    write_data(s, "HLT", [bronze_row("HLT", d, 20.0) for d in days if d != D(2024, 7, 5)])
    write_data(
        s,
        "IPO",
        [bronze_row("IPO", D(2024, 7, 5), 5.0, vwap=None), bronze_row("IPO", D(2024, 7, 8), 6.0)],
    )
    result = resample(lake)
    assert result.ok and result.months_written == 1
    bars = bars_by_key(read_silver(s, 3))
    first = bars[("HOL", D(2024, 7, 3))]
    assert first["end_date"] == D(2024, 7, 8)
    assert (first["open"], first["close"]) == (10.0, 12.0)
    assert (first["high"], first["low"]) == (13.0, 9.0)
    assert first["volume"] == 600.0 and first["transactions"] == 6 and first["sessions"] == 3
    # vwap = (10*100 + 11*200 + 12*300) / 600
    assert first["vwap"] == pytest.approx((1000 + 2200 + 3600) / 600)
    assert first["complete"] is True
    second = bars[("HOL", D(2024, 7, 9))]
    assert (second["end_date"], second["open"], second["close"]) == (D(2024, 7, 11), 13.0, 15.0)
    halted = bars[("HLT", D(2024, 7, 3))]
    assert (halted["end_date"], halted["sessions"]) == (D(2024, 7, 8), 2)
    ipo = bars[("IPO", D(2024, 7, 3))]  # the window's first session, before the IPO
    assert (ipo["sessions"], ipo["open"], ipo["close"]) == (2, 5.0, 6.0)
    assert ipo["vwap"] == pytest.approx(6.0)  # only the row with a vwap weighs in
    assert len(bars) == 5
    table = read_silver(s, 3)
    keys = list(
        zip(
            table.column("symbol").to_pylist(), table.column("start_date").to_pylist(), strict=False
        )
    )
    assert keys == sorted(keys)  # sorted by (symbol, start_date)
    assert read_checkpoint(s, 3)["through"] == "2024-07-12"  # type: ignore[index]


def test_vwap_null_when_zero_volume_and_partial_bars(lake: Lake) -> None:
    s = lake.storage
    rows = [bronze_row("Z", d, 1.0, volume=0.0, transactions=None) for d in HOLIDAY_BAR]
    rows.append(bronze_row("Z", D(2024, 7, 12), 2.0))  # bar [07-12, 07-16] is not over
    write_data(s, "Z", rows)
    resample(lake)
    bars = bars_by_key(read_silver(s, 3))
    assert list(bars) == [("Z", D(2024, 7, 3))]
    assert bars[("Z", D(2024, 7, 3))]["vwap"] is None
    assert bars[("Z", D(2024, 7, 3))]["transactions"] is None
    resample(lake, include_partial=True)
    bars = bars_by_key(read_silver(s, 3))
    partial = bars[("Z", D(2024, 7, 12))]
    assert (partial["end_date"], partial["complete"], partial["sessions"]) == (
        D(2024, 7, 16),
        False,
        1,
    )


def test_tricky_symbols_survive(lake: Lake) -> None:
    for sym in ("INF", "NAN", "TRUE", "NULL", "1234", "BRK.A"):
        write_data(lake.storage, sym, [bronze_row(sym, d, 3.0) for d in HOLIDAY_BAR])
    resample(lake)
    symbols = set(read_silver(lake.storage, 3).column("symbol").to_pylist())
    assert symbols == {"INF", "NAN", "TRUE", "NULL", "1234", "BRK.A"}


def test_unconsolidated_date_files_and_late_correction(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 10.0, fetched_ms=1000) for d in HOLIDAY_BAR[:2]])
    write_date(s, bronze_row("A", HOLIDAY_BAR[2], 12.0, fetched_ms=2000))  # not consolidated
    resample(lake)
    bar = bars_by_key(read_silver(s, 3))[("A", D(2024, 7, 3))]
    assert (bar["sessions"], bar["close"]) == (3, 12.0)
    # A correction for 07-05 lands later (newer fetched_at) while data.parquet holds the old row.
    time.sleep(0.01)
    write_date(s, bronze_row("A", HOLIDAY_BAR[1], 10.0, high=50.0, fetched_ms=3000))
    result = resample(lake)
    assert result.months_written == 1
    assert bars_by_key(read_silver(s, 3))[("A", D(2024, 7, 3))]["high"] == 50.0


def test_month_merge_keeps_other_symbols(lake: Lake) -> None:
    """Regression: the original overwrote a month with only the latest run's rows."""
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    resample(lake)
    write_data(s, "B", [bronze_row("B", d, 2.0) for d in HOLIDAY_BAR])
    result = resample(lake)
    assert result.intervals["3d"]["mode"] == "incremental"
    assert result.intervals["3d"]["symbols_affected"] == 1
    assert set(read_silver(s, 3).column("symbol").to_pylist()) == {"A", "B"}


def test_incremental_equals_full_after_new_sessions_and_split(lake: Lake) -> None:
    s = lake.storage
    june = [D(2024, 6, d) for d in (24, 25, 26, 27, 28)]
    base = [*june, D(2024, 7, 1), D(2024, 7, 2), *HOLIDAY_BAR]
    write_data(s, "A", [bronze_row("A", d, 100.0 + i) for i, d in enumerate(base)])
    write_data(s, "B", [bronze_row("B", d, 50.0) for d in base])
    now1 = at("2024-07-09T22:00:00+00:00")
    assert resample(lake, now1, intervals=(3, 5)).ok
    # New sessions land as date files; then A splits 2:1 and its history is restated.
    for d in NEXT_BAR:
        write_date(s, bronze_row("A", d, 120.0, fetched_ms=5000))
        write_date(s, bronze_row("B", d, 51.0, fetched_ms=5000))
    assert resample(lake, AFTER_0712, intervals=(3, 5)).ok
    restated = [bronze_row("A", d, (100.0 + i) / 2, fetched_ms=9000) for i, d in enumerate(base)]
    restated += [bronze_row("A", d, 60.0, fetched_ms=9000) for d in NEXT_BAR]
    write_data(s, "A", restated)
    for d in NEXT_BAR:
        s.delete(layout.date_file("A", d))
    s.write_json(layout.restated_marker("A"), {"symbol": "A"})
    result = resample(lake, AFTER_0712, intervals=(3, 5))
    assert result.ok and result.intervals["3d"]["mode"] == "incremental"
    expected = full_rebuild(lake, AFTER_0712, intervals=(3, 5))
    for n in (3, 5):
        assert bars_by_key(read_silver(s, n)) == bars_by_key(expected[n])
    assert bars_by_key(read_silver(s, 3))[("A", D(2024, 6, 28))]["open"] == pytest.approx(52.0)
    # Nothing changed: the next run writes nothing.
    again = resample(lake, AFTER_0712, intervals=(3, 5))
    assert again.months_written == 0 and again.rows_written == 0


def test_clock_alone_completes_a_halted_symbols_bar(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "H", [bronze_row("H", D(2024, 7, 9), 1.0)])
    resample(lake, at("2024-07-10T22:00:00+00:00"))
    assert read_silver(s, 3).num_rows == 0  # [07-09, 07-11] not over yet
    resample(lake)  # no new file, but the window is now over
    assert bars_by_key(read_silver(s, 3))[("H", D(2024, 7, 9))]["sessions"] == 1


def test_since_limits_output_without_moving_boundaries(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR + NEXT_BAR])
    resample(lake, since=D(2024, 7, 4))
    starts = read_silver(s, 3).column("start_date").to_pylist()
    assert starts == [D(2024, 7, 9)]  # the 07-03 bar starts before --since; 07-09 unchanged


def test_rows_alignment(lake: Lake) -> None:
    s = lake.storage
    days = HOLIDAY_BAR + NEXT_BAR + [D(2024, 7, 12)]
    write_data(s, "R", [bronze_row("R", d, float(i)) for i, d in enumerate(days[1:])])
    resample(lake, alignment=BarAlignment.ROWS)
    bars = bars_by_key(read_silver(s, 3))
    # Anchored at R's first row (07-05): [07-05, 07-09], [07-10, 07-12]; all complete.
    assert [(k[1], v["end_date"], v["sessions"]) for k, v in bars.items()] == [
        (D(2024, 7, 5), D(2024, 7, 9), 3),
        (D(2024, 7, 10), D(2024, 7, 12), 3),
    ]
    # A different alignment than the checkpoint's forces a full rebuild of the interval.
    result = resample(lake)
    assert result.intervals["3d"]["mode"] == "full"


def test_corrupt_month_file_is_reported_not_replaced(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    resample(lake)
    key = layout.silver_file(3, 2024, 7)
    s.write_bytes(key, b"not parquet")
    write_data(s, "B", [bronze_row("B", d, 2.0) for d in HOLIDAY_BAR])
    result = resample(lake)
    assert not result.ok and result.failed_intervals == [3]
    assert "unreadable" in result.intervals["3d"]["error"]
    assert s.read_bytes(key) == b"not parquet"  # left as is
    assert resample(lake, full=True).ok  # the explicit way over it
    assert set(read_silver(s, 3).column("symbol").to_pylist()) == {"A", "B"}


def test_full_removes_stale_months_and_dry_run_writes_nothing(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    stale = layout.silver_file(3, 1999, 1)
    s.write_bytes(stale, b"old")
    ctx = lake.context(now=AFTER_0712)
    from condvest.jobs.base import run_job
    from condvest.jobs.resample import RESAMPLE

    dry = run_job(ctx, RESAMPLE, ResampleOptions(intervals=(3,)), dry_run=True)
    assert dry.to_dict()["intervals"]["3d"]["months_to_delete"] == 1
    assert s.exists(stale) and not s.exists(layout.silver_file(3, 2024, 7))
    assert resample(lake, full=True).months_deleted == 1
    assert not s.exists(stale)


def test_host_time_zone_does_not_matter(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    write_data(lake.storage, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR + NEXT_BAR])
    outputs = []
    for zone in ("Pacific/Kiritimati", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        resample(lake, full=True)
        outputs.append(bars_by_key(read_silver(lake.storage, 3)))
    monkeypatch.delenv("TZ")
    time.tzset()
    assert outputs[0] == outputs[1] and len(outputs[0]) == 2


def test_corrupt_bronze_file_fails_the_run_and_writes_nothing(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    s.write_bytes(layout.data_file("B"), b"garbage")
    with pytest.raises(CorruptFileError, match="symbol=B"):
        resample(lake)
    assert read_silver(s, 3).num_rows == 0


def test_legacy_file_is_normalised(lake: Lake) -> None:
    """The original's shape: a naive `timestamp` instead of `date`, an `interval` column,
    integer prices, no vwap/transactions/fetched_at/source."""
    stamps = pa.array([f"{d.isoformat()}T00:00:00" for d in HOLIDAY_BAR]).cast(pa.timestamp("ns"))
    legacy = pa.table(
        {
            "symbol": ["OLD"] * 3,
            "timestamp": stamps,
            "open": [1, 2, 3],
            "high": [2, 3, 4],
            "low": [0.5, 1, 2],
            "close": [1.5, 2.5, 3.5],
            "volume": [10, 10, 10],
            "interval": ["1d"] * 3,
        }
    )
    lake.storage.write_parquet(layout.data_file("OLD"), legacy)
    resample(lake)
    bar = bars_by_key(read_silver(lake.storage, 3))[("OLD", D(2024, 7, 3))]
    assert (bar["open"], bar["close"], bar["sessions"], bar["vwap"]) == (1.0, 3.5, 3, None)


def test_cli_dry_run_run_and_bad_intervals(lake: Lake, tmp_path: Path) -> None:
    write_data(lake.storage, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    env = lake.env()
    dry = run_cli("-o", "json", "resample", "--intervals", "3", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    body = json.loads(dry.stdout)
    assert body["dry_run"] is True and body["intervals"]["3d"]["months_to_write"] == 1
    assert read_silver(lake.storage, 3).num_rows == 0
    real = run_cli("-o", "json", "resample", "--intervals", "3,5", cwd=tmp_path, env=env)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["months_written"] >= 1
    bad = run_cli("resample", "--intervals", "3,x", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "--intervals '3,x'" in bad.stderr
    since = run_cli("resample", "--since", "yesterday", cwd=tmp_path, env=env)
    assert since.returncode == 2 and "--since" in since.stderr


def test_out_of_time_stops_cleanly_and_status_shows_coverage(lake: Lake) -> None:
    from condvest.jobs.status.job import run_status

    write_data(lake.storage, "A", [bronze_row("A", d, 1.0) for d in HOLIDAY_BAR])
    ctx = lake.context(now=AFTER_0712)
    plan = plan_resample(ctx, ResampleOptions(intervals=(3, 5)))
    ctx.deadline = time.monotonic()  # a Lambda with no time left
    result = run_resample(ctx, plan)
    assert result.ok and result.partial and result.months_written == 0
    assert result.intervals["3d"]["mode"] == "skipped (out of time)"
    assert resample(lake).ok
    silver = run_status(lake.context(now=AFTER_0712)).silver
    assert silver["3d"]["through"] == "2024-07-12" and silver["3d"]["months"] == 1


# -- the full read in parts (resample.full_read_rows) -----------------------------------------
def _mixed_lake(lake: Lake) -> None:
    """Symbols of every kind the full read meets: plain, a pending date file, a late
    correction, a legacy file, a halted symbol, a symbol with no data.parquet yet."""
    s = lake.storage
    days = HOLIDAY_BAR + NEXT_BAR
    for i, sym in enumerate(("AAA", "BRK.A", "INF", "ZZZ")):
        write_data(s, sym, [bronze_row(sym, d, 10.0 + i + k) for k, d in enumerate(days)])
    write_data(s, "HLT", [bronze_row("HLT", d, 20.0) for d in days if d != D(2024, 7, 5)])
    write_date(s, bronze_row("AAA", D(2024, 7, 12), 30.0, fetched_ms=5000))
    write_date(s, bronze_row("INF", HOLIDAY_BAR[1], 11.0, high=99.0, fetched_ms=9000))
    write_date(s, bronze_row("NEW", D(2024, 7, 12), 4.0))
    stamps = pa.array([f"{d.isoformat()}T00:00:00" for d in HOLIDAY_BAR]).cast(pa.timestamp("ns"))
    legacy = pa.table(
        {"symbol": ["OLD"] * 3, "timestamp": stamps, "open": [1.0] * 3, "high": [2.0] * 3,
         "low": [0.5] * 3, "close": [1.5] * 3, "volume": [10.0] * 3}
    )  # fmt: skip
    s.write_parquet(layout.data_file("OLD"), legacy)


@pytest.mark.parametrize("budget", [1, 7, 13])
def test_full_read_in_parts_gives_the_same_bars(lake: Lake, budget: int) -> None:
    """Reading the lake in parts of about ``budget`` rows (1: every symbol a part of its own)
    computes exactly the bars of one pass, for calendar and rows alignment."""
    _mixed_lake(lake)
    for alignment in (BarAlignment.CALENDAR, BarAlignment.ROWS):
        opts = {"intervals": (3, 5), "alignment": alignment}
        ctx = lake.context(now=AFTER_0712)
        whole = plan_resample(ctx, ResampleOptions(full=True, **opts))  # type: ignore[arg-type]
        parted_ctx = lake.context(now=AFTER_0712, resample={"full_read_rows": budget})
        parted = plan_resample(parted_ctx, ResampleOptions(full=True, **opts))  # type: ignore[arg-type]
        assert (parted.symbols, parted.input_rows, parted.files_read) == (
            whole.symbols,
            whole.input_rows,
            whole.files_read,
        )
        assert parted.bronze_state == whole.bronze_state
        assert whole.read_parts == 1 and parted.read_parts > 1
        assert parted.to_dict()["read_parts"] == parted.read_parts
        for one, other in zip(whole.intervals, parted.intervals, strict=True):
            assert one.month_digests == other.month_digests and one.months_to_write
            assert one.symbol_digests == other.symbol_digests
            for label in one.months_to_write:
                assert (
                    other.month_rows(label)
                    .cast(SILVER_SCHEMA)
                    .equals(one.month_rows(label).cast(SILVER_SCHEMA))
                ), (alignment, label)


def test_full_read_in_parts_then_incremental_runs(lake: Lake) -> None:
    """A parted full rebuild leaves the checkpoints an incremental run continues from."""
    _mixed_lake(lake)
    ctx = lake.context(now=AFTER_0712, resample={"full_read_rows": 1})
    assert run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True))).ok
    before = read_silver(lake.storage, 3)
    again = run_resample(ctx, plan_resample(ctx, ResampleOptions()))
    assert again.ok and again.months_written == 0
    assert read_silver(lake.storage, 3).equals(before)
    # NEW's one session starts a bar that is not complete yet
    assert set(before.column("symbol").to_pylist()) == {"AAA", "BRK.A", "HLT", "INF", "OLD", "ZZZ"}


def test_a_symbol_in_two_directories_is_refused_across_parts(lake: Lake) -> None:
    write_data(lake.storage, "AAA", [bronze_row("AAA", d, 1.0) for d in HOLIDAY_BAR])
    # a file under symbol=ZZZ holding AAA's rows: another part when every symbol is its own
    lake.storage.write_parquet(
        layout.data_file("ZZZ"),
        pa.Table.from_pylist([bronze_row("AAA", d, 2.0) for d in NEXT_BAR], schema=BRONZE_SCHEMA),
    )
    ctx = lake.context(now=AFTER_0712, resample={"full_read_rows": 1})
    with pytest.raises(StorageError, match="AAA has rows in 2"):
        plan_resample(ctx, ResampleOptions(full=True, intervals=(3,)))


def test_a_directory_holding_another_name_keeps_symbol_order_across_parts(lake: Lake) -> None:
    """symbol=AAB/ holds ZZA's rows (allowed, with a warning): with every symbol a part of its
    own the parts come in directory order, and the bars are still put in symbol order."""
    write_data(lake.storage, "AAA", [bronze_row("AAA", d, 1.0) for d in HOLIDAY_BAR])
    lake.storage.write_parquet(
        layout.data_file("AAB"),
        pa.Table.from_pylist(
            [bronze_row("ZZA", d, 2.0) for d in HOLIDAY_BAR], schema=BRONZE_SCHEMA
        ),
    )
    write_data(lake.storage, "MMM", [bronze_row("MMM", d, 3.0) for d in HOLIDAY_BAR])
    plans = {}
    for budget in (1, 1_000_000):
        ctx = lake.context(now=AFTER_0712, resample={"full_read_rows": budget})
        plans[budget] = plan_resample(ctx, ResampleOptions(full=True, intervals=(3,)))
    (one,), (parted,) = plans[1_000_000].intervals, plans[1].intervals
    label = one.months_to_write[0]
    rows = parted.month_rows(label).cast(SILVER_SCHEMA)
    assert rows.column("symbol").to_pylist() == ["AAA", "MMM", "ZZA"]
    assert rows.equals(one.month_rows(label).cast(SILVER_SCHEMA))


def test_months_written_in_small_batches_are_the_same(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full rebuild writes an interval's months in batches (bounded memory); batches of a
    few bars write exactly the files one batch writes."""
    from condvest.core.calendar import get_calendar
    from condvest.jobs.resample import write

    days = get_calendar().sessions_between(D(2024, 3, 1), D(2024, 7, 12))
    for i, sym in enumerate(("AAA", "BBB", "CCC")):
        write_data(
            lake.storage, sym, [bronze_row(sym, d, 10.0 + i + k % 7) for k, d in enumerate(days)]
        )
    ctx = lake.context(now=AFTER_0712)
    assert run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True, intervals=(3, 5)))).ok
    one_batch = {n: read_silver(lake.storage, n) for n in (3, 5)}
    assert len(write._month_batches(("202407",), {"202407": (0, 9)})) == 1
    monkeypatch.setattr(write, "_WRITE_BATCH_BARS", 2)
    for n in (3, 5):
        lake.storage.delete_many(o.key for o in lake.storage.list_objects(layout.silver_prefix(n)))
    result = run_resample(ctx, plan_resample(ctx, ResampleOptions(full=True, intervals=(3, 5))))
    assert result.ok and result.months_written >= 10  # about five months, two intervals
    for n in (3, 5):
        assert read_silver(lake.storage, n).equals(one_batch[n])
    assert write._month_batches(("a", "b", "c"), {"a": (0, 2), "b": (2, 3), "c": (3, 9)}) == [
        ("a",),
        ("b",),
        ("c",),
    ]

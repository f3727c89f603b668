"""Read modes and adjustment factors (issue 17, items 2-4): hand-checked small cases (a 2:1
split, a 1:10 reverse split, a regular and a special dividend, a dividend on a split day, a
symbol with no actions) on a split-adjusted and on a raw lake; properties of the pure maths;
``as_of`` against lakes fetched (synthetic source, clock set) on that day; raw and
split-adjusted lakes end to end; local disk and S3 identical; the documented SQL; bad input."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import condvest
from condvest.core import layout
from condvest.core.factors import (
    AdjustMode,
    PriceScale,
    adjust,
    events_of,
    factor_table,
)
from condvest.core.schema import BRONZE_SCHEMA, DIVIDEND_SCHEMA
from condvest.errors import ConfigError, UsageError
from condvest.jobs.fetch.landing import write_splits
from condvest.sources.base import Split
from condvest.sources.synthetic import SyntheticSource
from condvest.state.marker import marker_body
from condvest.storage import Storage
from conftest import Lake, at
from resample_helpers import bronze_row, write_data, write_date

NOW = at("2024-06-28T23:00:00")
FETCHED = datetime(2024, 6, 27, tzinfo=UTC)
DAYS = [date(2024, 6, d) for d in (3, 4, 5, 6, 7, 10, 11, 12)]
PRICES = ("open", "high", "low", "close", "vwap")
DOCS = Path(__file__).resolve().parents[1] / "docs"


# -- building lakes by hand ---------------------------------------------------------------------
def land_dividends(storage: Storage, rows: list[tuple[str, date, float, str]]) -> None:
    """Dividend files as the dividends branch lands them (one file per ex-date)."""
    by_day: dict[date, list[dict[str, Any]]] = {}
    for i, (symbol, ex, cash, kind) in enumerate(rows):
        by_day.setdefault(ex, []).append(
            {
                "id": f"E{symbol}{ex:%Y%m%d}{i}",
                "symbol": symbol,
                "ex_dividend_date": ex,
                "cash_amount": cash,
                "currency": "USD",
                "dividend_type": kind,
                "frequency": 4 if kind == "CD" else 0,
                "declaration_date": None,
                "record_date": ex,
                "pay_date": None,
                "fetched_at": FETCHED,
                "source": "test",
            }
        )
    for ex, group in by_day.items():
        table = pa.Table.from_pylist(group, schema=DIVIDEND_SCHEMA)
        storage.write_parquet(layout.corporate_actions_file("dividends", ex), table)


# Traded (raw) closes and volumes; the split-adjusted lake stores them divided by the later
# splits' ratios (volume multiplied), as Polygon's adjusted=true history is.
SPLITS = [("XYZ", DAYS[2], 1.0, 2.0), ("REV", DAYS[3], 10.0, 1.0), ("SPD", DAYS[4], 1.0, 2.0)]
DIVIDENDS = [
    ("XYZ", DAYS[3], 0.50, "CD"),
    ("DIV", DAYS[2], 0.25, "CD"),  # regular
    ("DIV", DAYS[5], 5.00, "SC"),  # special
    ("DIV", DAYS[6], 0.20, "CD"),  # two on one ex-date: their cash is summed
    ("DIV", DAYS[6], 0.30, "SC"),
    ("SPD", DAYS[4], 0.40, "CD"),  # on the split's ex-date: per post-split share
]
RAW = {
    "XYZ": [100.0, 102.0, 50.0, 49.8, 50.2, 50.4, 50.6, 50.8],
    "REV": [1.00, 1.10, 1.20, 12.5, 12.4, 12.3, 12.2, 12.1],
    "DIV": [50.0, 50.0, 49.75, 49.8, 49.9, 44.9, 44.4, 44.5],
    "SPD": [100.0, 100.0, 100.0, 100.0, 49.6, 49.8, 50.0, 50.2],
    "NOA": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0],
}


def later_ratio(symbol: str, day: date) -> float:
    out = 1.0
    for s, ex, before, after in SPLITS:
        if s == symbol and ex > day:
            out *= after / before
    return out


def build(lake: Lake, scale: PriceScale) -> condvest.Lake:
    """The hand-checked lake: history in data.parquet, the last two sessions pending."""
    s = lake.storage
    s.write_json(layout.LAKE_MARKER, marker_body(NOW, scale))
    for symbol, closes in RAW.items():
        rows = []
        for day, raw in zip(DAYS, closes, strict=True):
            f = later_ratio(symbol, day) if scale is PriceScale.SPLIT_ADJUSTED else 1.0
            rows.append(bronze_row(symbol, day, raw / f, volume=1000.0 * f, fetched_ms=1))
        write_data(s, symbol, rows[:-2])
        for row in rows[-2:]:
            write_date(s, row)
    seen = [Split(sym, ex, a, b) for sym, ex, a, b in SPLITS]
    write_splits(s, [*seen, seen[0]], "test")  # XYZ's split served twice: applied once
    land_dividends(s, DIVIDENDS)
    return condvest.Lake(lake.context(now=NOW))


def closes(table: pa.Table, symbol: str) -> list[float]:
    return [r["close"] for r in table.to_pylist() if r["symbol"] == symbol]


def approx(values: list[float]) -> Any:
    return pytest.approx(values, rel=1e-12, abs=1e-12)


# -- hand-checked cases -------------------------------------------------------------------------
@pytest.mark.parametrize("scale", list(PriceScale))
def test_hand_checked_modes(local_lake: Lake, scale: PriceScale) -> None:
    with build(local_lake, scale) as lake:
        raw = lake.daily(adjust="raw")
        split = lake.daily()
        tr = lake.daily(adjust="total_return")
    for symbol, traded in RAW.items():
        assert closes(raw, symbol) == approx(traded)
        assert closes(split, symbol) == approx(
            [c / later_ratio(symbol, d) for c, d in zip(traded, DAYS, strict=True)]
        )
    # 2:1 on 06-05, then 0.50 on 06-06 against the 06-05 close 50.00: f = 0.99
    assert closes(tr, "XYZ") == approx([49.5, 50.49, 49.5, 49.8, 50.2, 50.4, 50.6, 50.8])
    # 1:10 reverse split: the old prices ×10, the old volume ÷10
    assert closes(split, "REV")[:3] == approx([10.0, 11.0, 12.0])
    rev = [r["volume"] for r in split.to_pylist() if r["symbol"] == "REV"]
    assert rev == approx([100.0] * 3 + [1000.0] * 5)
    # regular 0.25 (f = 1 - .25/50), special 5.00 (1 - 5/49.9), 0.20 + 0.30 on one day
    f1, f2, f3 = 1 - 0.25 / 50.0, 1 - 5.0 / 49.9, 1 - 0.5 / 44.9
    expected = [c * m for c, m in zip(RAW["DIV"], [f1 * f2 * f3] * 2 + [f2 * f3] * 3, strict=False)]
    assert closes(tr, "DIV")[:5] == approx(expected)
    assert closes(tr, "DIV")[5:] == approx([44.9 * f3, 44.4, 44.5])
    # dividend on the split day: 0.40 per new share against 100.00 / 2 = 50.00 → f = 0.992
    assert closes(tr, "SPD") == approx([49.6] * 4 + RAW["SPD"][4:])
    for mode in (raw, split, tr):
        assert closes(mode, "NOA") == approx(RAW["NOA"])  # no actions: every mode the same
    assert tr.schema == BRONZE_SCHEMA and tr.num_rows == len(RAW) * len(DAYS)


def test_as_of_undoes_later_splits_and_ignores_later_dividends(local_lake: Lake) -> None:
    with build(local_lake, PriceScale.SPLIT_ADJUSTED) as lake:
        lake.resample(intervals=(2,))
        on_4th = lake.daily(as_of=DAYS[1])
        assert max(on_4th.column("date").to_pylist()) == DAYS[1]
        assert closes(on_4th, "XYZ") == approx([100.0, 102.0])  # the split is on the 5th
        tr = lake.daily(adjust="total_return", as_of=DAYS[3])
        assert closes(tr, "XYZ") == approx([49.5, 50.49, 49.5, 49.8])
        assert closes(lake.daily(adjust="total_return", as_of=DAYS[2]), "XYZ") == approx(
            [50.0, 51.0, 50.0]
        )
        bars = lake.bars(2, adjust="raw", as_of=DAYS[3], include_partial=True)
        # a calendar bar's end_date is its window's last session, even while it is partial
        for bar in bars.to_pylist():
            assert bar["start_date"] <= DAYS[3]
            if bar["complete"]:
                assert bar["end_date"] <= DAYS[3]
        assert sum(b["sessions"] for b in bars.to_pylist() if b["symbol"] == "XYZ") == 4


def test_worked_example_in_the_docs(local_lake: Lake) -> None:
    """docs/corporate-actions.md's table is what the lake returns (XYZ)."""
    text = (DOCS / "corporate-actions.md").read_text()
    section = text.split("### Worked example", 1)[1]
    rows = re.findall(
        r"^\| (2024-06-\d\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", section, re.M
    )
    assert len(rows) == 5
    with build(local_lake, PriceScale.SPLIT_ADJUSTED) as lake:
        modes = [lake.daily("XYZ", end=DAYS[4], adjust=m) for m in ("split", "raw", "total_return")]
        factors = lake.factors("XYZ").to_pylist()
    for i, (day, *values) in enumerate(rows):
        assert date.fromisoformat(day) == DAYS[i]
        got = [round(m.column("close")[i].as_py(), 2) for m in modes]
        assert got == [float(v) for v in values[1:]]
        assert float(values[0]) == round(modes[0].column("close")[i].as_py(), 2)
    assert [f["date"] for f in factors] == [DAYS[2], DAYS[3]]
    assert factors[0]["split_ratio"] == 2.0 and factors[0]["cumulative_split_ratio"] == 2.0
    assert factors[1]["dividend_factor"] == pytest.approx(0.99)
    assert factors[1]["prev_close"] == 50.0 and factors[1]["prev_date"] == DAYS[2]
    assert factors[0]["cumulative_dividend_factor"] == pytest.approx(0.99)
    assert "| 0.99 |" in section and "| 2 |" in section


def test_bars_in_another_mode_are_the_bars_of_the_adjusted_rows(local_lake: Lake) -> None:
    with build(local_lake, PriceScale.SPLIT_ADJUSTED) as lake:
        lake.resample(intervals=(2,))
        assert lake.bars(2, adjust="split").equals(lake.bars(2))  # the silver files
        raw = lake.bars(2, adjust="raw", symbols="XYZ").to_pylist()
        daily = lake.daily("XYZ", adjust="raw").to_pylist()
    assert raw and all(b["complete"] for b in raw)
    by_day = {r["date"]: r for r in daily}
    for bar in raw:
        inside = [r for d, r in by_day.items() if bar["start_date"] <= d <= bar["end_date"]]
        assert bar["close"] == inside[-1]["close"] and bar["open"] == inside[0]["open"]
        assert bar["volume"] == sum(r["volume"] for r in inside)


def test_local_and_s3_identical(local_lake: Lake, s3_lake: Lake) -> None:
    with (
        build(local_lake, PriceScale.SPLIT_ADJUSTED) as a,
        build(s3_lake, PriceScale.SPLIT_ADJUSTED) as b,
    ):
        for mode in AdjustMode:
            assert a.daily(adjust=mode).equals(b.daily(adjust=mode))
            assert a.daily(adjust=mode, as_of=DAYS[3]).equals(b.daily(adjust=mode, as_of=DAYS[3]))
        assert a.factors().equals(b.factors())


def test_sql_in_reading_md_adjusts_as_lake_daily(local_lake: Lake) -> None:
    """The documented query over ``daily`` and ``factors`` gives lake.daily's prices."""
    text = (DOCS / "reading.md").read_text()
    query = re.search(r'ADJUSTED = """(.*?)"""', text, re.S)
    assert query is not None
    with build(local_lake, PriceScale.SPLIT_ADJUSTED) as lake:
        got = lake.sql(query.group(1)).to_arrow_table().to_pylist()
        for mode, column in (("raw", "close_raw"), ("total_return", "close_tr")):
            want = lake.daily(adjust=mode).to_pylist()
            assert [(r["symbol"], r["date"]) for r in got] == [
                (r["symbol"], r["date"]) for r in want
            ]
            assert [r[column] for r in got] == approx([r["close"] for r in want])


# -- properties of the maths ----------------------------------------------------------------------
@st.composite
def histories(draw: Any) -> tuple[pa.Table, pa.Table, pa.Table, list[float]]:
    """One symbol's traded closes with random splits and dividends; returns (stored rows of a
    split-adjusted lake, splits, dividends, traded closes)."""
    n = draw(st.integers(2, 30))
    traded = draw(st.lists(st.floats(1.0, 500.0), min_size=n, max_size=n))
    days = [date.fromordinal(date(2020, 1, 1).toordinal() + i) for i in range(n)]
    split_at = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=3))
    ratios = [draw(st.sampled_from([0.1, 0.5, 2.0, 3.0, 4.0])) for _ in split_at]
    div_at = draw(st.lists(st.integers(1, n - 1), unique=True, max_size=4))
    cash = [draw(st.floats(0.01, 0.2)) * traded[i - 1] for i in div_at]
    splits = pa.table(
        {
            "symbol": ["S"] * len(split_at),
            "execution_date": pa.array([days[i] for i in split_at], pa.date32()),
            "ratio": pa.array(ratios, pa.float64()),
            "fetched_at": pa.array([FETCHED] * len(split_at), pa.timestamp("us", tz="UTC")),
        }
    )
    dividends = pa.table(
        {
            "symbol": ["S"] * len(div_at),
            "ex_dividend_date": pa.array([days[i] for i in div_at], pa.date32()),
            "cash_amount": pa.array(cash, pa.float64()),
        }
    )
    later = [math.prod(r for i, r in zip(split_at, ratios, strict=True) if i > j) for j in range(n)]
    rows = [
        bronze_row("S", d, c / f, volume=10.0 * f)
        for d, c, f in zip(days, traded, later, strict=True)
    ]
    return pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA), splits, dividends, traded


@settings(max_examples=150, deadline=None)
@given(histories(), st.integers(0, 29))
def test_properties_of_the_modes(
    case: tuple[pa.Table, pa.Table, pa.Table, list[float]], cut: int
) -> None:
    stored, splits, dividends, traded = case
    events = events_of(splits, dividends)
    closes = stored.select(["symbol", "date", "close"])
    factors = factor_table(events, closes, PriceScale.SPLIT_ADJUSTED)
    raw = adjust(stored, factors, AdjustMode.RAW)
    split = adjust(stored, factors, AdjustMode.SPLIT)
    tr = adjust(stored, factors, AdjustMode.TOTAL_RETURN)
    assert raw.column("close").to_pylist() == pytest.approx(traded, rel=1e-9)
    # raw, then the splits after each row applied again, is split
    days = stored.column("date").to_pylist()
    ev = splits.to_pylist()
    again = [
        c / math.prod(s["ratio"] for s in ev if s["execution_date"] > d)
        for c, d in zip(raw.column("close").to_pylist(), days, strict=True)
    ]
    assert again == pytest.approx(split.column("close").to_pylist(), rel=1e-9)
    # total_return and raw agree on the latest session, and total_return only goes down
    assert tr.column("close")[-1].as_py() == pytest.approx(traded[-1], rel=1e-12)
    for a, b in zip(tr.column("close").to_pylist(), split.column("close").to_pylist(), strict=True):
        assert a <= b * (1 + 1e-12)
    # as of D: the same on the rows through D as a lake that never saw the later actions
    d = days[min(cut, len(days) - 1)]
    past = factor_table(events, closes, PriceScale.SPLIT_ADJUSTED, d)
    rows = stored.filter(pa.compute.less_equal(stored.column("date"), pa.scalar(d, pa.date32())))
    seen_then = [s for s in ev if s["execution_date"] <= d]
    for mode in AdjustMode:
        got = adjust(rows, past, mode).column("close").to_pylist()
        if mode is AdjustMode.RAW:
            assert got == pytest.approx(traded[: len(got)], rel=1e-9)
        elif mode is AdjustMode.SPLIT:
            want = [
                c / math.prod(s["ratio"] for s in seen_then if s["execution_date"] > day)
                for c, day in zip(traded, days[: len(got)], strict=False)
            ]
            assert got == pytest.approx(want, rel=1e-9)
        else:
            assert got[-1] == pytest.approx(traded[len(got) - 1], rel=1e-12)
    # a raw lake holding the traded prices gives the same in every mode
    raw_rows = raw  # what a raw lake stores
    raw_factors = factor_table(events, raw_rows.select(["symbol", "date", "close"]), PriceScale.RAW)
    for mode, want_table in ((AdjustMode.SPLIT, split), (AdjustMode.TOTAL_RETURN, tr)):
        got = adjust(raw_rows, raw_factors, mode).column("close").to_pylist()
        assert got == pytest.approx(want_table.column("close").to_pylist(), rel=1e-9)


# -- bad input ------------------------------------------------------------------------------------
def test_bad_modes_and_dates_are_one_clear_error(local_lake: Lake) -> None:
    with build(local_lake, PriceScale.SPLIT_ADJUSTED) as lake:
        with pytest.raises(UsageError, match="--adjust 'adjusted' is not one of split, raw"):
            lake.daily(adjust="adjusted")
        with pytest.raises(UsageError, match="before 1962-01-02"):
            lake.daily(as_of=date(1950, 1, 1))
        with pytest.raises(UsageError, match="is in the future"):
            lake.bars(2, as_of="2024-07-30")
        assert lake.daily(start=DAYS[5], as_of=DAYS[2]).num_rows == 0


def cli(lake: Lake, *args: str, cwd: Path) -> Any:
    import cli_proc
    from test_cli import cli_env

    return cli_proc.run([*args, *lake.cli_args()], env=cli_env(lake.env()), cwd=cwd)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--adjust", "total"), "--adjust 'total' is not one of split, raw, total_return"),
        (("--as-of", "1961-12-29"), "before 1962-01-02"),
        (("--as-of", "2999-01-04"), "is in the future"),
        (("--as-of", "yesterday"), "is not a date"),
    ],
)
def test_cli_bad_mode_or_date_exits_2(
    local_lake: Lake, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    from test_cli import one_error_line

    build(local_lake, PriceScale.SPLIT_ADJUSTED)
    out = cli(local_lake, "read", "daily", *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in one_error_line(out) and out.stdout == ""


def test_cli_reads_a_mode_as_of_a_date(local_lake: Lake, tmp_path: Path) -> None:
    import json

    build(local_lake, PriceScale.SPLIT_ADJUSTED)
    args = ("read", "daily", "--symbols", "XYZ", "--adjust", "total_return", "--as-of")
    out = cli(local_lake, "-o", "json", *args, DAYS[3].isoformat(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [round(r["close"], 2) for r in json.loads(out.stdout)] == [49.5, 50.49, 49.5, 49.8]
    out = cli(local_lake, "sql", "SELECT count(*) AS n FROM factors", "-f", "csv", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.splitlines()[1] == "7", out.stdout


# -- end to end with the synthetic source ---------------------------------------------------------
def scenario(lake: Lake) -> dict[str, Any]:
    """Two synthetic tickers split 5-60 sessions apart (searched by name, deterministic): D lies
    between the splits, the fetch window runs from 20 sessions before the first to 10 after
    the second."""
    cal = lake.context().calendar
    names = [f"SP{i}" for i in range(400)]
    source = SyntheticSource(cal, symbols=1, seed=42, requested=names)
    found = source.splits(date(2005, 1, 3), date(2025, 3, 31)).splits
    split = {s.symbol: s.execution_date for s in found if s.symbol in names}
    plain = next(
        n
        for n in names
        if n
        not in {s.symbol for s in source.splits(date(2000, 1, 3), cal.last_known_session).splits}
    )
    ranked = sorted(split.items(), key=lambda item: item[1])
    pairs = [
        (a, b)
        for a, b in itertools.pairwise(ranked)
        if 5 <= cal.session_index(b[1]) - cal.session_index(a[1]) <= 60
    ]
    assert pairs, "no two synthetic splits close enough"
    (early, e1), (late, e2) = pairs[0]
    i1, i2 = cal.session_index(e1), cal.session_index(e2)
    return {
        "first": cal.session_at(i1 - 20),
        "D": cal.session_at((i1 + i2) // 2),
        "T": cal.session_at(i2 + 10),
        "symbols": [early, late, plain],
        "splits": (e1, e2),
    }


def synthetic(lake: Lake, day: date, **fetch: Any) -> condvest.Lake:
    overrides: dict[str, Any] = {"fetch": {"source": "synthetic", "synthetic_symbols": 2}}
    if fetch:
        overrides["polygon"] = fetch
    return condvest.Lake(lake.context(now=at(f"{day.isoformat()}T23:30:00"), **overrides))


def pipeline(lake: Lake, sc: dict[str, Any], start: date, day: date, **fetch: Any) -> Any:
    with synthetic(lake, day, **fetch) as open_:
        result = open_.fetch(start=start, symbols=sc["symbols"])
        assert result.ok, result.failed
        assert open_.consolidate().ok
        assert open_.resample(intervals=(5,)).ok
    return result


def dividends_for(sc: dict[str, Any], through: date) -> list[tuple[str, date, float, str]]:
    """Small cash amounts (the synthetic prices are above a dollar): one regular dividend per
    symbol, one on the second split's day, one special on D."""
    e1, e2 = sc["splits"]
    early, late, plain = sc["symbols"]
    rows = [(s, e1, 0.02, "CD") for s in (late, plain)] + [(early, sc["first"], 0.02, "CD")]
    rows += [(late, e2, 0.05, "CD"), (plain, sc["D"], 0.03, "SC"), (early, sc["T"], 0.04, "CD")]
    return [r for r in rows if r[1] <= through]


def same(a: pa.Table, b: pa.Table) -> None:
    """Equal within the synthetic source's rounding of prices to 4 decimals."""
    assert a.column("symbol").equals(b.column("symbol"))
    assert a.column(a.column_names[1]).equals(b.column(b.column_names[1]))
    for name in ("open", "close", "volume"):
        assert a.column(name).to_pylist() == pytest.approx(
            b.column(name).to_pylist(), rel=1e-9, abs=1e-3
        )


def test_as_of_equals_a_lake_fetched_that_day(tmp_path: Path) -> None:
    """Lake A is fetched with the clock on D; lake B the same, then again on T (a split after D
    restates it). B as of D equals A in every mode, daily and bars."""
    from conftest import make_local_lake

    a_lake, b_lake = make_local_lake(tmp_path / "a"), make_local_lake(tmp_path / "b")
    sc = scenario(a_lake)
    pipeline(a_lake, sc, sc["first"], sc["D"])
    pipeline(b_lake, sc, sc["first"], sc["D"])
    result = pipeline(b_lake, sc, sc["D"], sc["T"])
    assert result.restated == [sc["symbols"][1]]
    land_dividends(a_lake.storage, dividends_for(sc, sc["D"]))
    land_dividends(b_lake.storage, dividends_for(sc, sc["T"]))
    with synthetic(a_lake, sc["D"]) as a, synthetic(b_lake, sc["T"]) as b:
        assert len(b.splits()) == 2 and len(a.splits()) == 1
        for mode in AdjustMode:
            past = b.daily(adjust=mode, as_of=sc["D"])
            assert max(past.column("date").to_pylist()) == sc["D"]
            same(past, a.daily(adjust=mode))
            same(b.bars(5, adjust=mode, as_of=sc["D"]), a.bars(5, adjust=mode))
        # the check can fail: as of D, late's split is undone and the dividends move prices
        late_now = b.daily(sc["symbols"][1], end=sc["D"]).column("close").to_pylist()
        late_then = b.daily(sc["symbols"][1], as_of=sc["D"]).column("close").to_pylist()
        ratio = late_then[0] / late_now[0]
        assert ratio > 1.5 and late_then == pytest.approx([c * ratio for c in late_now])
        tr = a.daily(adjust="total_return").column("close").to_pylist()
        assert all(
            x < y for x, y in zip(tr[:5], a.daily().column("close").to_pylist(), strict=False)
        )
        late = b.daily(sc["symbols"][1], adjust="raw", end=sc["D"]).column("close")
        assert late.to_pylist() == pytest.approx(
            a.daily(sc["symbols"][1]).column("close").to_pylist(), abs=1e-3
        )


def test_raw_lake_end_to_end(tmp_path: Path) -> None:
    """polygon.adjusted = false: traded prices stored, no restatement, raw is the identity and
    split equals the split-adjusted lake's stored rows; one lake never takes the other scale."""
    from conftest import make_local_lake

    raw_lake, adj_lake = make_local_lake(tmp_path / "raw"), make_local_lake(tmp_path / "adj")
    sc = scenario(raw_lake)
    result = pipeline(raw_lake, sc, sc["first"], sc["T"], adjusted=False)
    assert result.restated == [] and result.splits >= 2
    assert any("no history re-fetched" in m for m in result.messages)
    pipeline(adj_lake, sc, sc["first"], sc["T"])
    for lake in (raw_lake, adj_lake):
        land_dividends(lake.storage, dividends_for(sc, sc["T"]))
    marker = raw_lake.storage.read_json(layout.LAKE_MARKER)
    assert marker["price_scale"] == "raw"
    with synthetic(raw_lake, sc["T"], adjusted=False) as r, synthetic(adj_lake, sc["T"]) as s:
        for mode in AdjustMode:
            same(r.daily(adjust=mode), s.daily(adjust=mode))
            same(r.bars(5, adjust=mode), s.bars(5, adjust=mode))
        with pytest.raises(ConfigError, match="the lake stores raw prices"):
            synthetic(raw_lake, sc["T"]).fetch(date=sc["T"], symbols="PLAIN")
        with pytest.raises(ConfigError, match="the lake stores split_adjusted prices"):
            synthetic(adj_lake, sc["T"], adjusted=False).fetch(date=sc["T"], symbols="PLAIN")


def test_cli_fetch_refuses_the_other_scale(tmp_path: Path) -> None:
    from conftest import make_local_lake
    from test_cli import one_error_line

    lake = make_local_lake(tmp_path / "lake")
    sc = scenario(lake)
    pipeline(lake, sc, sc["T"], sc["T"])
    out = cli(lake, "fetch", "--source", "synthetic", "--date", sc["T"].isoformat(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr  # same scale
    env_args = ("fetch", "--source", "synthetic", "--date", sc["T"].isoformat())
    import cli_proc
    from test_cli import cli_env

    env = cli_env({**lake.env(), "CONDVEST_POLYGON__ADJUSTED": "false"})
    out = cli_proc.run([*env_args, *lake.cli_args()], env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "stores split_adjusted prices" in one_error_line(out)

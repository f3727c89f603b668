"""One bad value quarantines its row, never the session or the run (issue 13 items 8 and 10).

Each answer comes from the real HTTP stand-in; the lake is then read back file by file to show
the good rows landed once, every bad one is in quarantine with its reason, and no lake file holds
a non-finite value."""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from condvest.core import layout
from condvest.errors import SourceError
from condvest.jobs.bronze import read_file
from condvest.jobs.fetch.metadata import latest_snapshot
from conftest import Lake, at
from polygon_server import FakePolygon, Scripted, agg, load_mock, ms
from test_session_trust import fetch  # the same in-process fetch, NOW = FRI's close

FRI = date(2025, 3, 14)
NOW = at("2025-03-14T22:00:00Z")

# (symbol, overrides of its aggregate, the quarantine reason it must get)
BAD_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("NNAN", {"n": float("nan")}, "n nan is not a transaction count"),
    ("NINF", {"n": float("inf")}, "n inf is not a transaction count"),
    ("NHUGE", {"n": 1e300}, "is not a transaction count"),
    ("NBIG", {"n": 2**70}, "is not a transaction count"),
    ("NNEG", {"n": -5}, "is not a transaction count"),
    ("NFRAC", {"n": 2.5}, "is not a transaction count"),
    ("TBIG", {"t": 1e20}, "is not a Unix millisecond time"),
    ("TNEG", {"t": -1e17}, "is not a Unix millisecond time"),
    ("THUGE", {"t": 1e300}, "is not a Unix millisecond time"),
    ("TSEC", {"t": ms(FRI) // 1000}, "not the requested session"),
    ("VWNEG", {"vw": -3.0}, "vwap not > 0"),
    ("VWINF", {"vw": 1e308}, "vwap above fetch.max_price"),
    ("VWNAN", {"vw": float("nan")}, "vw nan is not a finite number"),
    ("PHUGE", {"o": 1e300, "h": 1e300, "l": 1e300, "c": 1e300}, "price above fetch.max_price"),
    ("VHUGE", {"v": 1e300}, "volume above fetch.max_volume"),
    ("CONFL", {"c": 10.1}, "differing rows"),
]
GOOD = ["AAPL", "MSFT", "BRK.A", "DUP"]


def lake_tables(lake: Lake) -> list[pa.Table]:
    return [
        read_file(lake.storage, o.key)
        for o in lake.storage.list_objects(layout.BRONZE_OHLCV + "/")
        if o.key.endswith(".parquet")
    ]


def assert_all_finite(tables: list[pa.Table]) -> None:
    for table in tables:
        for name in ("open", "high", "low", "close", "volume", "vwap"):
            values = pc.drop_null(table.column(name).cast(pa.float64())).to_pylist()
            assert all(math.isfinite(v) for v in values), (name, values)


def quarantine_reasons(lake: Lake) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for obj in lake.storage.list_objects(layout.BRONZE_QUARANTINE + "/"):
        for row in lake.storage.read_parquet(obj.key).to_pylist():
            out.setdefault(row["symbol"], []).append(row["reason"])
    return out


def test_bad_values_quarantine_their_row_and_the_rest_lands(
    lake: Lake, polygon: FakePolygon
) -> None:
    rows = [agg(s, FRI, 10.0 + i) for i, s in enumerate(GOOD)]
    rows.append(agg("DUP", FRI, 13.0))  # an exact copy of DUP's row: kept once
    rows += [agg(s, FRI, 10.0) | bad for s, bad, _ in BAD_ROWS]
    rows.append(agg("CONFL", FRI, 10.0))  # and CONFL's other, differing copy
    polygon.grouped[FRI] = rows
    result = fetch(lake, polygon)
    assert result.ok, result.messages
    assert result.rows == len(GOOD) and result.sessions == [FRI]
    tables = lake_tables(lake)
    landed = sorted(s for t in tables for s in t.column("symbol").to_pylist())
    assert landed == sorted(GOOD)
    assert_all_finite(tables)
    reasons = quarantine_reasons(lake)
    for symbol, _, reason in BAD_ROWS:
        assert any(reason in r for r in reasons[symbol]), (symbol, reasons.get(symbol))
    assert reasons["DUP"] == ["exact copy of another row of the answer (kept once)"]
    assert len(reasons["CONFL"]) == 2
    assert not [m for m in result.messages if "internal error" in m]


def test_sanity_bounds_are_settings(lake: Lake, polygon: FakePolygon) -> None:
    polygon.grouped[FRI] = [agg("AAPL", FRI, 500.0), agg("MSFT", FRI, 50.0)]
    result = fetch(lake, polygon, settings={"fetch": {"max_price": 100}})
    assert result.ok and result.rows == 1
    assert quarantine_reasons(lake)["AAPL"] == ["price above fetch.max_price 100"]


def test_undecodable_session_does_not_block_the_later_ones(
    lake: Lake, polygon: FakePolygon
) -> None:
    days = lake.context().calendar.sessions_between(date(2025, 3, 10), FRI)
    for d in days:
        polygon.grouped[d] = [agg("AAPL", d), agg("MSFT", d)]
    polygon.fail(
        f"/v2/aggs/grouped/locale/us/market/stocks/{days[1]}", *[Scripted(raw=b"\xff")] * 4
    )
    result = fetch(lake, polygon, start=days[0])
    assert not result.ok and list(result.failed) == [days[1].isoformat()]
    assert "internal error" not in result.failed[days[1].isoformat()]
    assert result.sessions == [days[0], *days[2:]]  # the others land
    assert result.watermark == days[0]  # the contiguous frontier
    again = fetch(lake, polygon)
    assert again.ok and again.sessions == [days[1]] and again.watermark == FRI


def test_history_keeps_only_sessions_in_the_range(lake: Lake, polygon: FakePolygon) -> None:
    start, end = date(2024, 11, 25), date(2024, 11, 29)
    good = [date(2024, 11, 25), date(2024, 11, 26), date(2024, 11, 27), date(2024, 11, 29)]
    stray = [
        date(2024, 11, 28),  # Thanksgiving
        date(2024, 11, 30),  # a Saturday
        date(2024, 11, 22),  # before the range
        date(2099, 1, 5),  # the far future
    ]
    body = {
        "ticker": "AAPL",
        "status": "OK",
        "request_id": "h",
        "adjusted": True,
        "results": [agg(None, d, 100.0) for d in good + stray],
    }
    polygon.fail("/v2/aggs/ticker/AAPL/", Scripted(body=json.dumps(body)))
    now = at("2024-12-02T23:00:00Z")
    result = fetch(lake, polygon, now=now, history=True, symbols=["AAPL"], start=start, end=end)
    assert result.ok and result.rows == len(good)
    data = read_file(lake.storage, layout.data_file("AAPL"))
    assert data.column("date").to_pylist() == good
    reasons = quarantine_reasons(lake)["AAPL"]
    assert len(reasons) == len(stray)
    assert all("session in the requested 2024-11-25..2024-11-29" in r for r in reasons)


def _meta_fixture(polygon: FakePolygon) -> None:
    listed = load_mock("v3_reference_tickers.json")["results"]
    polygon.tickers = listed
    for t in listed:
        polygon.details[t["ticker"]] = load_mock("v3_reference_tickers_AAPL.json")["results"] | {
            "ticker": t["ticker"]
        }


def test_meta_detail_of_the_wrong_type_loses_the_field_not_the_snapshot(
    lake: Lake, polygon: FakePolygon
) -> None:
    _meta_fixture(polygon)
    first, second = (t["ticker"] for t in polygon.tickers[:2])
    polygon.details[first] |= {
        "name": 123,
        "market_cap": "big",
        "active": "yes",
        "list_date": 5,
        "cik": [1],
        "description": {"x": 1},
    }
    result = fetch(lake, polygon, meta=True)
    assert result.ok and result.rows == 2
    snapshot = latest_snapshot(lake.context(now=NOW))
    bad = snapshot[first]
    listed = polygon.tickers[0]
    assert bad["name"] == listed["name"]  # the list's value, not the detail's 123
    assert bad["cik"] == listed.get("cik")  # not [1]
    assert bad["market_cap"] is None and bad["description"] is None
    assert bad["list_date"] is None and bad["active"] is True  # not 5, not "yes"
    assert snapshot[second]["name"] and snapshot[second]["market_cap"]


@pytest.mark.parametrize("listed", [0, 1])
def test_truncated_ticker_list_marks_nothing_inactive(
    lake: Lake, polygon: FakePolygon, listed: int
) -> None:
    _meta_fixture(polygon)
    polygon.tickers = polygon.tickers * 2  # the mock holds 2; make 4 distinct below
    polygon.tickers = [t | {"ticker": f"{t['ticker']}{i}"} for i, t in enumerate(polygon.tickers)]
    for t in polygon.tickers:
        polygon.details[t["ticker"]] = load_mock("v3_reference_tickers_AAPL.json")["results"] | {
            "ticker": t["ticker"]
        }
    assert fetch(lake, polygon, meta=True).ok
    before = lake.storage.list_objects(layout.BRONZE_META + "/")
    polygon.tickers = polygon.tickers[:listed]  # 200 OK with an empty / a truncated list
    with pytest.raises(SourceError, match=f"ticker list has {listed} symbol") as err:
        fetch(lake, polygon, meta=True)
    assert err.value.exit_code == 1 and "no symbol is marked inactive" in str(err.value)
    assert lake.storage.list_objects(layout.BRONZE_META + "/") == before
    snapshot = latest_snapshot(lake.context(now=NOW))
    assert all(row["active"] for row in snapshot.values())

"""``condvest fetch`` against a real HTTP stand-in for Polygon, on local disk and on the S3
server: landing, quarantine, empty sessions, the backfill planner's gap report, --symbols,
--force, --dry-run, history, split restatement, metadata."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest

from condvest.core import layout
from condvest.errors import UsageError
from condvest.jobs.bronze import read_file
from condvest.jobs.fetch import FetchOptions, FetchResult, plan_fetch, run_fetch
from condvest.state.fetchlog import read_session, read_watermark
from conftest import Lake, at, polygon_overrides
from polygon_server import FakePolygon, agg

NOW = at("2025-03-14T22:00:00Z")  # after Friday 2025-03-14's close: that session is complete
FRI = date(2025, 3, 14)


def fetch(
    lake: Lake,
    polygon: FakePolygon,
    now: datetime = NOW,
    settings: dict[str, Any] | None = None,
    **opts: Any,
) -> FetchResult:
    overrides = polygon_overrides(polygon.url)
    for section, values in (settings or {}).items():
        overrides.setdefault(section, {}).update(values)
    ctx = lake.context(now=now, **overrides)
    return run_fetch(ctx, plan_fetch(ctx, FetchOptions(**opts)))


def sessions(lake: Lake, start: date, end: date) -> list[date]:
    return lake.context().calendar.sessions_between(start, end)


def test_daily_session_lands_validated_rows(lake: Lake, polygon: FakePolygon) -> None:
    polygon.grouped[FRI] = [
        agg("AAPL", FRI, 210.0),
        agg("KIMpL", FRI, 20.0, v=25933.6),
        agg("BRK.A", FRI, 700000.0, vw=None, n=None),
        agg("BAD", FRI, 10.0, h=5.0),  # high below close
        {k: v for k, v in agg("NOV", FRI).items() if k != "v"},  # required field missing
        agg("../x", FRI),  # not a ticker, never a path
    ]
    result = fetch(lake, polygon)
    assert result.ok and result.sessions == [FRI] and result.rows == 3
    assert result.quarantined == 3 and result.symbols == 3 and result.files == 3
    assert result.requests == 3  # one grouped daily + one splits + one dividends request
    assert len(polygon.requests_to("/v3/reference/dividends")) == 1
    for symbol in ("AAPL", "KIMpL", "BRK.A"):
        rows = read_file(lake.storage, layout.date_file(symbol, FRI)).to_pylist()
        assert len(rows) == 1 and rows[0]["date"] == FRI and rows[0]["source"] == "polygon"
    kim = read_file(lake.storage, layout.date_file("KIMpL", FRI)).to_pylist()[0]
    assert kim["volume"] == 25933.6
    entry = read_session(lake.storage, FRI)
    assert entry is not None and entry.status == "landed"
    assert entry.symbols == ["AAPL", "BRK.A", "KIMpL"] and entry.quarantined == 3
    assert read_watermark(lake.storage) == FRI
    quarantine = lake.storage.read_parquet(layout.quarantine_file(FRI, result.run_id))
    reasons = {r["symbol"]: r["reason"] for r in quarantine.to_pylist()}
    assert reasons["BAD"] == "high below max(open, close)"
    assert "v" in reasons["NOV"] and reasons["../x"] == "malformed symbol"
    assert not lake.storage.list_objects("bronze/raw_ohlcv/symbol=..")


def test_empty_session_is_reported_not_silently_done(lake: Lake, polygon: FakePolygon) -> None:
    result = fetch(lake, polygon)
    assert not result.ok and result.empty_sessions == [FRI] and result.exit_code == 1
    assert any("closures_file" in m and "asks again" in m for m in result.messages)
    assert read_session(lake.storage, FRI) is None  # never recorded: the watermark stays
    assert read_watermark(lake.storage) is None
    # Every run asks again until the vendor publishes it...
    again = fetch(lake, polygon)
    assert not again.ok and again.sessions_planned == 1
    assert len(polygon.requests_to("/v2/aggs/grouped/")) == 2
    # ...and the first run after it is published lands it, without --force.
    polygon.grouped[FRI] = [agg("AAPL", FRI)]
    landed = fetch(lake, polygon)
    assert landed.ok and landed.rows == 1
    assert read_session(lake.storage, FRI).status == "landed"  # type: ignore[union-attr]
    assert read_watermark(lake.storage) == FRI


def test_gap_over_max_backfill_is_reported_and_filled(lake: Lake, polygon: FakePolygon) -> None:
    days = sessions(lake, date(2025, 2, 26), FRI)  # 13 sessions
    for d in days:
        polygon.grouped[d] = [agg("AAPL", d), agg("MSFT", d)]
    first = fetch(lake, polygon, now=at("2025-02-28T23:00:00Z"))
    assert first.sessions == [days[2]] and read_watermark(lake.storage) == days[2]
    gap = days[3:]  # 10 missing sessions
    assert len(gap) == 10
    result = fetch(lake, polygon, max_backfill_days=3)
    assert result.sessions == gap[-3:]
    assert not result.ok and result.exit_code == 1
    assert result.gap is not None and result.gap.sessions == 7
    command = f"condvest fetch --start {gap[0]} --end {gap[6]}"
    assert result.gap.command == command and any(command in m for m in result.messages)
    assert read_watermark(lake.storage) == days[2]  # stays below the gap: nothing skipped
    again = fetch(lake, polygon, max_backfill_days=3)  # still reported, works backwards
    assert again.gap is not None and again.gap.end == gap[3] and again.sessions == gap[4:7]
    filled = fetch(lake, polygon, start=gap[0], end=gap[3])
    assert filled.ok and filled.sessions == gap[:4]
    assert read_watermark(lake.storage) == FRI
    for d in days[2:]:
        assert lake.storage.exists(layout.date_file("MSFT", d))


def test_bounded_backfill_never_moves_watermark_back(lake: Lake, polygon: FakePolygon) -> None:
    old = sessions(lake, date(2025, 1, 6), date(2025, 1, 8))
    for d in [*old, FRI]:
        polygon.grouped[d] = [agg("AAPL", d)]
    assert fetch(lake, polygon).ok
    result = fetch(lake, polygon, start=old[0], end=old[-1])
    assert result.ok and result.sessions == old
    assert read_watermark(lake.storage) == FRI


def test_symbols_restrict_and_force(lake: Lake, polygon: FakePolygon) -> None:
    polygon.grouped[FRI] = [agg("AAPL", FRI), agg("MSFT", FRI), agg("IBM", FRI)]
    only = fetch(lake, polygon, day=FRI, symbols=["MSFT"])
    assert only.ok and only.files == 1
    assert lake.storage.exists(layout.date_file("MSFT", FRI))
    assert not lake.storage.exists(layout.date_file("AAPL", FRI))
    assert read_session(lake.storage, FRI) is None  # partial landing: not recorded
    assert fetch(lake, polygon).files == 3
    assert fetch(lake, polygon).sessions_planned == 0
    polygon.grouped[FRI] = [agg("AAPL", FRI, 99.0)]
    forced = fetch(lake, polygon, force=True, day=FRI)
    assert forced.sessions == [FRI]
    assert read_file(lake.storage, layout.date_file("AAPL", FRI))["close"][0].as_py() == 99.0


def test_plan_and_usage_errors(lake: Lake, polygon: FakePolygon) -> None:
    ctx = lake.context(now=NOW, **polygon_overrides(polygon.url, requests_per_minute=5))
    plan = plan_fetch(ctx, FetchOptions(start=date(2025, 3, 10)))
    assert plan.sessions == sessions(lake, date(2025, 3, 10), FRI)
    assert plan.requests == 7 and plan.estimated_s == 72.0  # 5 sessions + splits + dividends
    with pytest.raises(UsageError, match="not a XNYS trading session"):
        plan_fetch(ctx, FetchOptions(day=date(2025, 3, 15)))
    with pytest.raises(UsageError, match="has not completed"):
        plan_fetch(ctx, FetchOptions(day=date(2025, 3, 17)))
    with pytest.raises(UsageError, match="--history needs --symbols"):
        plan_fetch(ctx, FetchOptions(history=True))
    assert polygon.seen == [] and not lake.storage.list_objects("")


def test_history_merges_into_data_file(lake: Lake, polygon: FakePolygon) -> None:
    polygon.page_size = 3
    days = sessions(lake, date(2025, 3, 3), FRI)
    polygon.ranges["BRK.A"] = [agg(None, d, 100.0 + i) for i, d in enumerate(days)]
    polygon.ranges["BRK.A"].append(agg(None, date(2025, 3, 17), 5.0, l=6.0))  # not in range
    result = fetch(lake, polygon, history=True, symbols=["BRK.A"], start=days[0])
    assert result.ok and result.rows == len(days) and result.mode == "history"
    data = read_file(lake.storage, layout.data_file("BRK.A"))
    assert data.column("date").to_pylist() == days
    assert not [o for o in lake.storage.list_objects("bronze/raw_ohlcv/") if "date=" in o.key]
    missing = fetch(lake, polygon, history=True, symbols=["NOPE"], start=days[0])
    assert not missing.ok and "NOPE" in missing.failed


def test_split_restates_history_and_removes_stale_files(lake: Lake, polygon: FakePolygon) -> None:
    days = sessions(lake, date(2025, 3, 10), FRI)  # Mon..Fri; 2-for-1 split on Friday
    for d in days[:-1]:
        polygon.grouped[d] = [agg("NVDA", d, 200.0), agg("AAPL", d, 50.0)]
    polygon.grouped[FRI] = [agg("NVDA", FRI, 101.0), agg("AAPL", FRI, 50.0)]
    polygon.ranges["NVDA"] = [agg(None, d, 100.0) for d in days[:-1]] + [agg(None, FRI, 101.0)]
    assert fetch(lake, polygon, now=at("2025-03-13T23:00:00Z"), start=days[0]).ok
    polygon.splits = [
        {"execution_date": str(FRI), "split_from": 1, "split_to": 2, "ticker": "NVDA", "id": "s"}
    ]
    result = fetch(lake, polygon)
    assert result.ok and result.splits == 1 and result.restated == ["NVDA"]
    data = read_file(lake.storage, layout.data_file("NVDA"))
    assert data.column("date").to_pylist() == days
    assert data.column("close").to_pylist() == [100.0] * 4 + [101.0]
    left = [layout.parse_date_file(o.key) for o in lake.storage.list_objects("bronze/raw_ohlcv/")]
    nvda = sorted(
        d
        for o, d in zip(lake.storage.list_objects("bronze/raw_ohlcv/"), left, strict=True)
        if "NVDA" in o.key and d
    )
    assert nvda == [FRI]  # the pre-split files are gone; the post-split session stays
    assert lake.storage.exists(layout.date_file("AAPL", days[0]))  # untouched
    marker = lake.storage.read_json(layout.restated_marker("NVDA"))
    assert marker["split_date"] == str(FRI) and marker["ratio"] == 2.0
    assert marker["run_id"] == result.run_id
    splits = lake.storage.read_parquet(layout.corporate_actions_file("splits", FRI)).to_pylist()
    assert splits[0]["symbol"] == "NVDA" and splits[0]["ratio"] == 2.0


def test_meta_snapshot_and_delisting(lake: Lake, polygon: FakePolygon) -> None:
    from polygon_server import load_mock

    listed = load_mock("v3_reference_tickers.json")["results"]
    polygon.tickers = [*listed, {**listed[0], "ticker": "WARR", "type": "WARRANT"}]
    for t in listed:
        polygon.details[t["ticker"]] = load_mock("v3_reference_tickers_AAPL.json")["results"] | {
            "ticker": t["ticker"]
        }
    result = fetch(lake, polygon, meta=True)
    assert result.ok and result.rows == 2 and result.symbols == 2
    snap = lake.storage.list_objects(layout.BRONZE_META + "/")
    table = pq.read_table(__import__("io").BytesIO(lake.storage.read_bytes(snap[0].key)))
    for column in (
        "name",
        "market",
        "locale",
        "type",
        "active",
        "primary_exchange",
        "currency",
        "cik",
        "composite_figi",
        "list_date",
        "delisted_utc",
        "market_cap",
        "sic_code",
        "industry",
        "description",
        "updated_at",
    ):
        assert column in table.column_names
    row = table.to_pylist()[0]
    assert row["symbol"] == "A" and row["industry"] == "ELECTRONIC COMPUTERS" and row["active"]
    polygon.tickers = [listed[1]]  # "A" was delisted
    later = fetch(lake, polygon, now=at("2025-03-15T12:00:00Z"), meta=True)
    assert later.ok and later.symbols == 0  # nothing new or stale: no details requests
    snaps = sorted(o.key for o in lake.storage.list_objects(layout.BRONZE_META + "/"))
    rows = {r["symbol"]: r for r in lake.storage.read_parquet(snaps[-1]).to_pylist()}
    assert rows["A"]["active"] is False and rows["AA"]["active"] is True


def test_new_symbols_history_when_enabled(lake: Lake, polygon: FakePolygon) -> None:
    wed, thu = date(2025, 3, 12), date(2025, 3, 13)
    polygon.grouped[wed] = [agg("AAPL", wed)]
    polygon.grouped[thu] = [agg("AAPL", thu), agg("NEWCO", thu, 30.0)]
    polygon.grouped[FRI] = [agg("AAPL", FRI), agg("NEWER", FRI, 30.0)]
    polygon.ranges["NEWER"] = [agg(None, thu, 29.0), agg(None, FRI, 30.0)]
    assert fetch(lake, polygon, day=wed).ok
    off = fetch(lake, polygon, day=thu)
    assert off.ok and off.new_symbols == 1
    assert any("--history --symbols NEWCO" in m for m in off.messages)
    assert not lake.storage.exists(layout.data_file("NEWCO"))
    on = fetch(lake, polygon, day=FRI, settings={"fetch": {"backfill_new_symbols": True}})
    assert on.ok and on.new_symbols == 1
    data = read_file(lake.storage, layout.data_file("NEWER"))
    assert data.column("date").to_pylist() == [thu, FRI]
    assert polygon.requests_to("/v2/aggs/ticker/NEWER/")[0].query["limit"] == "50000"


def test_deadline_stops_cleanly_between_sessions(lake: Lake, polygon: FakePolygon) -> None:
    import time

    ctx = lake.context(now=NOW, **polygon_overrides(polygon.url))
    ctx.deadline = time.monotonic()  # already at the limit: not one session is started
    result = run_fetch(ctx, plan_fetch(ctx, FetchOptions(day=FRI)))
    assert result.partial and result.sessions == [] and polygon.requests_to("/v2/") == []
    assert any("time limit" in m for m in result.messages)
    assert read_session(lake.storage, FRI) is None


# -- 29 February (issue 14 item 4): the fixed clock, not faketime ------------------------------
LEAP_NOW = at("2028-02-29T22:00:00Z")  # after the close of Tuesday 29 February 2028
LEAP = date(2028, 2, 29)


def test_history_on_29_february_starts_on_28_february(
    local_lake: Lake, polygon: FakePolygon
) -> None:
    polygon.ranges["AAPL"] = [agg(None, date(2028, 2, 28), 100.0), agg(None, LEAP, 101.0)]
    result = fetch(local_lake, polygon, now=LEAP_NOW, history=True, symbols=["AAPL"])
    assert result.ok, result.failed
    assert result.rows == 2
    (seen,) = polygon.requests_to("/v2/aggs/ticker/AAPL/")
    assert "/range/1/day/2023-02-28/2028-02-29" in seen.path  # history_years = 5


def test_new_symbol_backfill_on_29_february(local_lake: Lake, polygon: FakePolygon) -> None:
    mon = date(2028, 2, 28)
    polygon.grouped[mon] = [agg("AAPL", mon)]
    polygon.grouped[LEAP] = [agg("AAPL", LEAP), agg("NEWCO", LEAP, 30.0)]
    polygon.ranges["NEWCO"] = [agg(None, mon, 29.0), agg(None, LEAP, 30.0)]
    assert fetch(local_lake, polygon, now=LEAP_NOW, day=mon).ok
    on = {"fetch": {"backfill_new_symbols": True, "history_years": 4}}
    result = fetch(local_lake, polygon, now=LEAP_NOW, settings=on, day=LEAP)
    assert result.ok and result.new_symbols == 1, result.messages
    data = read_file(local_lake.storage, layout.data_file("NEWCO"))
    assert data.column("date").to_pylist() == [mon, LEAP]
    (seen,) = polygon.requests_to("/v2/aggs/ticker/NEWCO/")
    assert "/range/1/day/2024-02-29/2028-02-29" in seen.path  # a leap year back: unchanged
    again = {"fetch": {"backfill_new_symbols": True, "history_years": 1}}
    polygon.grouped[LEAP].append(agg("NEWER", LEAP, 5.0))
    polygon.ranges["NEWER"] = [agg(None, LEAP, 5.0)]
    result = fetch(local_lake, polygon, now=LEAP_NOW, settings=again, day=LEAP, force=True)
    assert result.ok, result.failed
    (seen,) = polygon.requests_to("/v2/aggs/ticker/NEWER/")
    assert "/range/1/day/2027-02-28/2028-02-29" in seen.path


# -- --symbols the source never delivers (issue 14 item 3) -------------------------------------
def test_requested_symbols_not_delivered_are_named(local_lake: Lake, polygon: FakePolygon) -> None:
    polygon.grouped[FRI] = [agg("AAPL", FRI), agg("MSFT", FRI)]
    result = fetch(local_lake, polygon, day=FRI, symbols=["AAPL", "BRKA", "NOPE"])
    assert result.ok and result.files == 1  # a symbol may legitimately not trade on a day
    assert result.symbols_missing == ["BRKA", "NOPE"]
    (message,) = [m for m in result.messages if "requested symbol" in m]
    assert message.startswith(f"2 of 3 requested symbol(s) got no bars from polygon for {FRI}")
    assert "BRKA, NOPE" in message
    everything = fetch(local_lake, polygon, day=FRI, symbols=["AAPL", "MSFT"], force=True)
    assert everything.symbols_missing == [] and not any(
        "requested" in m for m in everything.messages
    )
    unrestricted = fetch(local_lake, polygon, day=FRI, force=True)
    assert unrestricted.symbols_missing == []


def test_history_of_a_ticker_without_bars_says_so(local_lake: Lake, polygon: FakePolygon) -> None:
    days = sessions(local_lake, date(2025, 3, 10), FRI)
    polygon.ranges["AAPL"] = [agg(None, d, 100.0) for d in days]
    result = fetch(
        local_lake, polygon, history=True, symbols=["AAPL", "NOPE"], start=days[0], end=FRI
    )
    assert not result.ok and result.rows == len(days) and result.symbols == 1
    assert result.symbols_missing == ["NOPE"]
    assert result.failed["NOPE"].startswith(f"no bars from polygon for {days[0]}..{FRI}")
    assert any(m.startswith("history NOPE: no bars from polygon") for m in result.messages)

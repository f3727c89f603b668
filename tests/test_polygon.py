"""The Polygon client against a real HTTP server on 127.0.0.1: pagination, 429 + Retry-After,
5xx, timeouts, malformed JSON, 401, bearer key, and the row conversion (missing fields,
fractional volume, lower-case and dotted tickers, New York dates)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from condvest.errors import AuthError, SourceError
from condvest.settings import load_settings
from condvest.sources.base import aggregates_to_batch, ny_date
from condvest.sources.polygon import PolygonSource, _strip_key, retry_after_s
from conftest import polygon_overrides
from polygon_server import KEY, FakePolygon, Scripted, agg, load_mock, ms

DAY = date(2025, 3, 14)
GROUPED = f"/v2/aggs/grouped/locale/us/market/stocks/{DAY}"


@pytest.fixture
def client(polygon: FakePolygon) -> Iterator[PolygonSource]:
    source = _client(polygon)
    yield source
    source.close()


def _client(polygon: FakePolygon, **polygon_settings: Any) -> PolygonSource:
    settings = load_settings(env={}, overrides=polygon_overrides(polygon.url, **polygon_settings))
    return PolygonSource(settings.polygon, KEY)


def test_grouped_daily_shapes(polygon: FakePolygon, client: PolygonSource) -> None:
    polygon.grouped[DAY] = [
        agg("AAPL", DAY, 200.0),
        agg("KIMpL", DAY, 20.0, v=25933.6),  # lower-case, fractional volume
        agg("BRK.A", DAY, 700000.0, vw=None, n=None),  # optional fields missing
        {k: v for k, v in agg("NOC", DAY).items() if k != "c"},  # required field missing
    ]
    batch = client.grouped_daily(DAY)
    rows = {r["symbol"]: r for r in batch.rows.to_pylist()}
    assert set(rows) == {"AAPL", "KIMpL", "BRK.A"}
    assert rows["KIMpL"]["volume"] == 25933.6
    assert rows["BRK.A"]["vwap"] is None and rows["BRK.A"]["transactions"] is None
    assert all(r["date"] == DAY and r["source"] == "polygon" for r in rows.values())
    rejected = batch.rejected.to_pylist()
    assert [r["symbol"] for r in rejected] == ["NOC"]
    assert "c" in rejected[0]["reason"] and '"o"' in rejected[0]["raw"]
    seen = polygon.requests_to(GROUPED)[0]
    assert seen.authorization == f"Bearer {KEY}"
    assert seen.query == {"adjusted": "true", "include_otc": "false"}
    assert "apiKey" not in seen.query


def test_recorded_response_shape_parses() -> None:
    body = load_mock("v2_aggs_grouped_locale_us_market_stocks_2005-04-04_adjusted=true.json")
    from datetime import UTC, datetime

    batch = aggregates_to_batch(body["results"], source="polygon", fetched_at=datetime.now(UTC))
    row = batch.rows.to_pylist()[0]
    # t = 1602705600000 is 2020-10-14 20:00 UTC = 16:00 in New York: that session.
    assert row["symbol"] == "GIK" and row["date"] == date(2020, 10, 14)
    assert row["transactions"] == 96 and row["vwap"] == 9.9979


def test_pagination_across_three_pages(polygon: FakePolygon, client: PolygonSource) -> None:
    polygon.page_size = 2
    days = [date(2025, 3, d) for d in (3, 4, 5, 6, 7)]
    polygon.ranges["BRK.A"] = [agg(None, d, 100.0 + i) for i, d in enumerate(days)]
    got = client.histories(["BRK.A"], days[0], days[-1])["BRK.A"]
    assert not isinstance(got, Exception)
    assert got.rows.column("date").to_pylist() == days
    seen = polygon.requests_to("/v2/aggs/ticker/BRK.A/")
    assert len(seen) == 3
    assert seen[0].query["limit"] == "50000"
    # next_url carried apiKey: the client strips it and sends the bearer header instead.
    assert all("apiKey" not in s.query and s.authorization == f"Bearer {KEY}" for s in seen)
    assert [s.query.get("cursor") for s in seen] == [None, "2", "4"]


def test_429_with_retry_after_then_success(polygon: FakePolygon) -> None:
    client = _client(polygon, backoff_max_s=5.0)
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.fail(GROUPED, Scripted(429, '{"status":"ERROR"}', {"Retry-After": "1"}))
    try:
        batch = client.grouped_daily(DAY)
    finally:
        client.close()
    assert batch.rows.num_rows == 1 and client.retries == 1
    first, second = polygon.requests_to(GROUPED)
    # The backoff alone would wait ~0.01 s; the server asked for 1 s and got it.
    assert second.at - first.at >= 0.9


def test_500_twice_then_success(polygon: FakePolygon, client: PolygonSource) -> None:
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.fail(GROUPED, Scripted(500, "boom"), Scripted(502, "<html>bad gateway</html>"))
    assert client.grouped_daily(DAY).rows.num_rows == 1
    assert client.retries == 2 and len(polygon.requests_to(GROUPED)) == 3


def test_retry_budget_spent_names_endpoint_and_status(
    polygon: FakePolygon, client: PolygonSource
) -> None:
    polygon.fail(GROUPED, *[Scripted(503, "down")] * 10)
    with pytest.raises(SourceError) as info:
        client.grouped_daily(DAY)
    text = str(info.value)
    assert f"grouped daily {DAY}" in text and "HTTP 503" in text and "4 attempt" in text
    assert len(polygon.requests_to(GROUPED)) == 4  # 1 + max_retries


def test_timeout_is_retried_then_reported(polygon: FakePolygon) -> None:
    client = _client(polygon, timeout_s=0.3, max_retries=1)
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.fail(GROUPED, Scripted(sleep_s=1.0))
    try:
        assert client.grouped_daily(DAY).rows.num_rows == 1  # second attempt succeeds
        polygon.fail(GROUPED, Scripted(sleep_s=1.0), Scripted(sleep_s=1.0))
        with pytest.raises(SourceError, match=r"timeout after 0\.3s"):
            client.grouped_daily(DAY)
    finally:
        client.close()


def test_malformed_json_retried_then_error(polygon: FakePolygon, client: PolygonSource) -> None:
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    polygon.fail(GROUPED, Scripted(200, '{"results": [trunc'))
    assert client.grouped_daily(DAY).rows.num_rows == 1
    polygon.fail(GROUPED, *[Scripted(200, "<html>maintenance</html>")] * 4)
    with pytest.raises(SourceError, match="malformed JSON"):
        client.grouped_daily(DAY)


def test_401_is_one_clear_error_without_retry(polygon: FakePolygon) -> None:
    settings = load_settings(env={}, overrides=polygon_overrides(polygon.url))
    client = PolygonSource(settings.polygon, "wrong-key")
    try:
        with pytest.raises(AuthError) as info:
            client.grouped_daily(DAY)
    finally:
        client.close()
    assert "API key" in str(info.value) and "wrong-key" not in str(info.value)
    assert len(polygon.requests_to(GROUPED)) == 1


def test_splits_tickers_and_details(polygon: FakePolygon, client: PolygonSource) -> None:
    polygon.page_size = 4
    polygon.splits = load_mock("v3_reference_splits.json")["results"]
    answer = client.splits(date(2022, 6, 1), date(2022, 7, 18))
    splits = answer.splits
    assert answer.rejected.num_rows == 0
    assert {s.symbol for s in splits} == {"GOOGL", "GOOG", "CTO", "SHOP", "DXCM", "AMZN"}
    assert next(s for s in splits if s.symbol == "AMZN").ratio == 20.0
    polygon.tickers = load_mock("v3_reference_tickers.json")["results"] * 3
    assert len(client.tickers()) == 6
    polygon.details["AAPL"] = load_mock("v3_reference_tickers_AAPL.json")["results"]
    assert client.ticker_details(["AAPL"])["AAPL"]["sic_code"] == "3571"  # type: ignore[index]


def test_rate_limiter_spaces_requests(polygon: FakePolygon) -> None:
    client = _client(polygon, requests_per_minute=300)  # one request every 0.2 s
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    try:
        for _ in range(3):
            client.grouped_daily(DAY)
    finally:
        client.close()
    seen = polygon.requests_to(GROUPED)
    assert seen[2].at - seen[0].at >= 0.35


def test_helpers() -> None:
    assert _strip_key("https://x/v3?cursor=a&apiKey=SECRET") == "https://x/v3?cursor=a"
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    # New York dates, winter and summer, bars stamped at the close and at midnight.
    for day in (date(2025, 1, 2), date(2025, 7, 3)):
        assert ny_date(ms(day, 16)) == day and ny_date(ms(day, 0)) == day

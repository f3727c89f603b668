"""Issue 13 items 7 and 9: next_url only followed on the configured origin; page/cursor bounds."""

from __future__ import annotations

import json
from datetime import date

import pytest

from condvest.errors import SourceError
from condvest.settings import load_settings
from condvest.sources.polygon import PolygonSource
from conftest import polygon_overrides
from polygon_server import KEY, FakePolygon, Scripted

SPLITS = "/v3/reference/splits"


def _client(polygon: FakePolygon, **kw: object) -> PolygonSource:
    settings = load_settings(env={}, overrides=polygon_overrides(polygon.url, **kw))
    return PolygonSource(settings.polygon, KEY)


@pytest.mark.parametrize(
    "form", ["0/v2/x", ".evil.example/v2/x", "@evil.example/v2/x", "//evil.example/v2/x", "OTHER"]
)
def test_next_url_off_origin_is_refused(polygon: FakePolygon, form: str) -> None:
    other = FakePolygon().start()
    try:
        # "0/v2/x" glued onto base_url was another port
        next_url = f"{other.url}{SPLITS}?cursor=1" if form == "OTHER" else form
        polygon.fail(SPLITS, Scripted(200, json.dumps({"results": [], "next_url": next_url})))
        client = _client(polygon)
        try:
            with pytest.raises(SourceError, match="splits: refusing next_url"):
                client.splits(date(2025, 1, 1), date(2025, 1, 2))
        finally:
            client.close()
        assert other.seen == []
        assert len(polygon.requests_to(SPLITS)) == 1
    finally:
        other.stop()


def test_repeated_cursor_and_page_cap(polygon: FakePolygon) -> None:
    loop = json.dumps({"results": [], "next_url": f"{polygon.url}{SPLITS}?cursor=1"})
    polygon.fail(SPLITS, *[Scripted(200, loop)] * 3)
    client = _client(polygon)
    try:
        with pytest.raises(SourceError, match="next_url repeats"):
            client.splits(date(2025, 1, 1), date(2025, 1, 2))
    finally:
        client.close()


def test_page_cap_stops_a_chain_of_distinct_cursors(polygon: FakePolygon) -> None:
    pages = [
        Scripted(200, json.dumps({"results": [], "next_url": f"{polygon.url}{SPLITS}?cursor={n}"}))
        for n in range(1, 6)
    ]
    polygon.fail(SPLITS, *pages)
    client = _client(polygon, max_pages=3)
    try:
        with pytest.raises(SourceError, match=r"more than polygon.max_pages \(3\)"):
            client.splits(date(2025, 1, 1), date(2025, 1, 2))
    finally:
        client.close()


GROUPED = "/v2/aggs/grouped/locale/us/market/stocks/2025-03-14"


def test_invalid_utf8_and_deep_json_retried_then_source_error(polygon: FakePolygon) -> None:
    client = _client(polygon, max_retries=1)
    try:
        polygon.fail(GROUPED, *[Scripted(raw=b'{"results": ["\xff\xfe"]}')] * 2)
        with pytest.raises(SourceError, match=r"grouped daily .*undecodable"):
            client.grouped_daily(date(2025, 3, 14))
        polygon.fail(GROUPED, *[Scripted(200, "[" * 20000 + "]" * 20000)] * 2)
        with pytest.raises(SourceError, match=r"grouped daily .*malformed JSON"):
            client.grouped_daily(date(2025, 3, 14))
    finally:
        client.close()


def test_gzip_bomb_stops_at_the_cap(polygon: FakePolygon) -> None:
    import gzip

    bomb = gzip.compress(b'{"results": [' + b" " * (4 * 1024 * 1024) + b"]}")
    polygon.fail(GROUPED, Scripted(raw=bomb, headers={"Content-Encoding": "gzip"}))
    client = _client(polygon, max_response_bytes=64 * 1024)
    try:
        with pytest.raises(SourceError, match="max_response_bytes"):
            client.grouped_daily(date(2025, 3, 14))
    finally:
        client.close()

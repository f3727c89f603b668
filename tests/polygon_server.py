"""A real HTTP server on 127.0.0.1 standing in for Polygon: the response shapes of
/work/shared/polygon-mocks (grouped daily, ticker range, splits, dividends, tickers, details),
pagination through ``next_url`` (which, like the real API's, may carry ``apiKey``), and scripted
failures."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

NY = ZoneInfo("America/New_York")
KEY = "pk-SECRET-test-key-4711"


def ms(day: date, hour: int = 16) -> int:
    """Polygon's ``t``: grouped daily bars are stamped at the New York close (16:00), ranges at
    New York midnight — both land on ``day`` only when read in New York time."""
    return int(datetime.combine(day, dtime(hour), NY).timestamp() * 1000)


def agg(symbol: str | None, day: date, close: float = 10.0, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "o": close * 0.99,
        "h": close * 1.02,
        "l": close * 0.97,
        "c": close,
        "v": 895345,
        "vw": close * 0.998,
        "t": ms(day, 16 if symbol else 0),
        "n": 96,
    }
    if symbol is not None:
        row["T"] = symbol
    row.update(extra)
    return {k: v for k, v in row.items() if v is not None}


@dataclass
class Scripted:
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sleep_s: float = 0.0
    raw: bytes | None = None
    """bytes served as-is (invalid UTF-8, a gzip body with its Content-Encoding header)."""


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    authorization: str | None
    at: float


class FakePolygon:
    def __init__(self, page_size: int = 50000) -> None:
        self.grouped: dict[date, list[dict[str, Any]]] = {}
        self.ranges: dict[str, list[dict[str, Any]]] = {}
        self.splits: list[dict[str, Any]] = []
        self.dividends: list[dict[str, Any]] = []
        """/v3/reference/dividends rows (filtered by ex_dividend_date.gte/.lte and ticker)."""
        self.tickers: list[dict[str, Any]] = []
        self.details: dict[str, dict[str, Any]] = {}
        self.script: dict[str, list[Scripted]] = {}
        """path prefix → responses served (and consumed) before the normal answer."""
        self.seen: list[Seen] = []
        self.page_size = page_size
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> FakePolygon:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def fail(self, prefix: str, *responses: Scripted) -> None:
        self.script.setdefault(prefix, []).extend(responses)

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    # -- serving ---------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        auth = request.headers.get("Authorization")
        self.seen.append(Seen(path, dict(request.query), auth, time.monotonic()))
        for prefix, queue in self.script.items():
            if path.startswith(prefix) and queue:
                step = queue.pop(0)
                if step.sleep_s:
                    await asyncio.sleep(step.sleep_s)
                if step.raw is not None:
                    return web.Response(status=step.status, body=step.raw, headers=step.headers)
                return web.Response(status=step.status, text=step.body or "", headers=step.headers)
        if auth != f"Bearer {KEY}":
            body = {"status": "ERROR", "request_id": "x", "error": "Unknown API Key"}
            return web.json_response(body, status=401)
        return web.json_response(self._answer(path, dict(request.query)))

    def _page(self, path: str, rows: list[Any], query: dict[str, str]) -> dict[str, Any]:
        start = int(query.get("cursor", "0"))
        body: dict[str, Any] = {
            "results": rows[start : start + self.page_size],
            "status": "OK",
            "request_id": "r",
            "count": len(rows[start : start + self.page_size]),
        }
        if start + self.page_size < len(rows):
            rest = {k: v for k, v in query.items() if k != "cursor"}
            rest |= {"cursor": str(start + self.page_size), "apiKey": KEY}
            body["next_url"] = f"{self.url}{path}?" + "&".join(f"{k}={v}" for k, v in rest.items())
        return body

    def _answer(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if path.startswith("/v2/aggs/grouped/"):
            rows = self.grouped.get(date.fromisoformat(parts[-1]), [])
            return {
                "queryCount": len(rows),
                "resultsCount": len(rows),
                "adjusted": query.get("adjusted") == "true",
                "results": rows,
                "status": "OK",
                "request_id": "g",
                "count": len(rows),
            }
        if path.startswith("/v2/aggs/ticker/"):
            symbol, lo, hi = parts[3], date.fromisoformat(parts[7]), date.fromisoformat(parts[8])
            rows = [
                r
                for r in self.ranges.get(symbol, [])
                if lo <= datetime.fromtimestamp(r["t"] / 1000, NY).date() <= hi
            ]
            return {"ticker": symbol, "adjusted": True, **self._page(path, rows, query)}
        if path == "/v3/reference/splits":
            lo = query.get("execution_date.gte", "0000")
            hi = query.get("execution_date.lte", "9999")
            rows = [s for s in self.splits if lo <= s["execution_date"] <= hi]
            return self._page(path, rows, query)
        if path == "/v3/reference/dividends":
            lo = query.get("ex_dividend_date.gte", "0000")
            hi = query.get("ex_dividend_date.lte", "9999")
            rows = [r for r in self.dividends if _dividend_in(r, lo, hi, query.get("ticker"))]
            return self._page(path, rows, query)
        if path == "/v3/reference/tickers":
            return self._page(path, self.tickers, query)
        if path.startswith("/v3/reference/tickers/"):
            return {"results": self.details[parts[-1]], "status": "OK", "request_id": "d"}
        raise web.HTTPNotFound()


def _dividend_in(row: Any, lo: str, hi: str, ticker: str | None) -> bool:
    """Whether the stand-in serves ``row`` for these filters; a row that is not an object or has
    no valid ex-date is served to every query (the client must refuse it)."""
    if not isinstance(row, dict):
        return True
    if ticker is not None and row.get("ticker") != ticker:
        return False
    try:
        day = date.fromisoformat(str(row.get("ex_dividend_date")))
    except ValueError:
        return True
    return lo <= day.isoformat() <= hi


def load_mock(name: str) -> Any:
    with open(f"/work/shared/polygon-mocks/{name}") as handle:
        return json.load(handle)


def serve() -> Iterator[FakePolygon]:
    server = FakePolygon().start()
    try:
        yield server
    finally:
        server.stop()

"""Polygon.io / Massive REST client (docs/design.md §5): aiohttp, bearer key, client-side pacing,
bounded concurrency, retries with exponential backoff + jitter honouring ``Retry-After``.

The key travels only in the ``Authorization`` header. A ``next_url`` pagination link is
followed only when its scheme, host and port equal the configured ``base_url``'s (anything else,
including scheme-less or user-info links, is a :class:`SourceError`: the key is never sent to a
host we were not configured with); it is stripped of any ``apiKey`` parameter, and every logged
URL also goes through ``redact``.

Responses are bounded: a body is read in chunks and refused past ``max_response_bytes``
(decompressed), a paginated request stops with an error after ``max_pages`` pages or when a
``next_url`` repeats, and an undecodable or unparseable body is retried, then reported as the
endpoint's :class:`SourceError`."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp

from condvest.errors import AuthError, CondvestError, SourceError
from condvest.logging import redact
from condvest.settings import PolygonSettings
from condvest.sources.base import Batch, SplitBatch, aggregates_to_batch, split_batch
from condvest.sources.dividends import DividendBatch, dividend_batch

log = logging.getLogger("condvest.sources.polygon")
SOURCE = "polygon"
T = TypeVar("T")
_PAGE_LIMIT = 1000  # the reference endpoints' maximum page size
_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL without user info; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


class RateLimiter:
    """At most ``per_minute`` request starts per minute, evenly spaced (0 = unlimited)."""

    def __init__(self, per_minute: int) -> None:
        self.interval_s = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self.interval_s == 0:
            return
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval_s


def _strip_key(url: str) -> str:
    """``url`` without any api-key query parameter (we authenticate with the header)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in ("apikey", "api_key")]
    return parts._replace(query=urlencode(query)).geturl()


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent/garbled."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class PolygonClient:
    """Async client. Use as ``async with PolygonClient(settings, key) as client``."""

    def __init__(self, settings: PolygonSettings, api_key: str) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._limiter = RateLimiter(settings.requests_per_minute)
        self._sem = asyncio.Semaphore(settings.max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    async def __aenter__(self) -> PolygonClient:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ---------------------------------------------------------------------------
    def _follow(self, endpoint: str, next_url: str) -> str:
        """``next_url`` (without its api key) when it points at the configured origin."""
        origin = _origin(next_url)
        if origin is None or origin != _origin(self.base_url):
            raise SourceError(
                f"{endpoint}: refusing next_url {redact(_strip_key(next_url))[:200]!r}: "
                f"not on the configured base_url {self.base_url}",
                hint="the API key is only sent to polygon.base_url",
            )
        return _strip_key(next_url)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes | None:
        """The (decompressed) body, or None once it passes ``max_response_bytes``."""
        cap = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cap = self.settings.backoff_max_s
        if retry_after is not None:
            return min(retry_after, cap)
        backoff = min(cap, self.settings.backoff_base_s * 2 ** (attempt - 1))
        return float(backoff) * random.uniform(
            0.5, 1.0
        )  # jitter: retries of parallel calls spread out

    async def _attempt(
        self, url: str, params: dict[str, str] | None
    ) -> tuple[Any, str, float | None]:
        """One try: (parsed JSON or None, problem if retryable, Retry-After)."""
        assert self._session is not None, "use PolygonClient as an async context manager"
        async with self._sem:
            self.requests += 1
            async with self._session.get(url, params=params) as resp:
                status = resp.status
                if status in (401, 403):
                    raise AuthError(
                        f"Polygon refused the API key (HTTP {status})",
                        hint="check polygon.api_key / POLYGON_API_KEY and the plan's entitlements",
                    )
                if status == 429 or status >= 500:
                    return None, f"HTTP {status}", retry_after_s(resp.headers.get("Retry-After"))
                raw = await self._read(resp)
                if raw is None:
                    raise SourceError(
                        f"HTTP {status}: response larger than polygon.max_response_bytes "
                        f"({self.settings.max_response_bytes} bytes after decompression)"
                    )
                if status >= 400:
                    shown = raw[:200].decode("utf-8", "replace")
                    raise SourceError(f"HTTP {status}: {redact(shown)}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "undecodable body (invalid UTF-8)", None
        try:
            data = json.loads(text)
        except ValueError:
            return None, "malformed JSON", None
        except RecursionError:
            return None, "malformed JSON (nested too deeply)", None
        if not isinstance(data, dict):
            return None, "malformed JSON (not an object)", None
        return data, "", None

    async def get(
        self, endpoint: str, path_or_url: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """GET one JSON object, retrying 429/5xx/timeouts/connection errors/malformed JSON."""
        if path_or_url.startswith("/") and not path_or_url.startswith("//"):
            url = self.base_url + path_or_url
        else:
            url = self._follow(endpoint, path_or_url)
        shown = redact(url)
        for attempt in range(1, self.settings.max_retries + 2):
            await self._limiter.wait()
            retry_after: float | None = None
            try:
                data, problem, retry_after = await self._attempt(url, params)
            except SourceError as exc:
                if isinstance(exc, AuthError):
                    raise
                raise SourceError(f"{endpoint} ({shown}) failed: {exc.message}") from None
            except TimeoutError:
                data, problem = None, f"timeout after {self.settings.timeout_s:g}s"
            except aiohttp.ClientPayloadError as exc:
                data, problem = None, f"undecodable body ({type(exc).__name__})"
            except aiohttp.ClientError as exc:
                data, problem = None, f"connection error ({type(exc).__name__})"
            if data is not None:
                return dict(data)
            if attempt > self.settings.max_retries:
                raise SourceError(
                    f"{endpoint} ({shown}) failed after {attempt} attempt(s): {problem}",
                    hint="the source is down or rate-limiting; re-run later",
                )
            delay = self._delay(attempt, retry_after)
            self.retries += 1
            log.warning(
                "%s: %s, retry %d/%d in %.2fs",
                endpoint,
                problem,
                attempt,
                self.settings.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_pages(
        self, endpoint: str, path: str, params: dict[str, str] | None = None
    ) -> list[Any]:
        """All ``results`` of a paginated endpoint, following ``next_url``."""
        out: list[Any] = []
        body = await self.get(endpoint, path, params)
        pages = 1
        followed: set[str] = set()
        while True:
            results = body.get("results") or []
            if not isinstance(results, list):
                raise SourceError(f"{endpoint}: 'results' is not a list")
            out.extend(results)
            next_url = body.get("next_url")
            if not next_url:
                return out
            if not isinstance(next_url, str):
                raise SourceError(f"{endpoint}: 'next_url' is not a string")
            url = self._follow(endpoint, next_url)
            if url in followed:
                raise SourceError(
                    f"{endpoint}: next_url repeats after {pages} page(s) "
                    f"({redact(url)[:200]}); the source's pagination loops"
                )
            if pages >= self.settings.max_pages:
                raise SourceError(
                    f"{endpoint}: more than polygon.max_pages ({self.settings.max_pages}) pages",
                    hint="raise polygon.max_pages if the answer is really that long",
                )
            followed.add(url)
            pages += 1
            log.debug("%s: page %d (%s)", endpoint, pages, redact(url))
            body = await self.get(f"{endpoint} page {pages}", url)

    # -- endpoints ---------------------------------------------------------------------------
    def _agg_params(self) -> dict[str, str]:
        return {"adjusted": str(self.settings.adjusted).lower()}

    async def grouped_daily(self, session: date) -> Batch:
        params = self._agg_params() | {"include_otc": str(self.settings.include_otc).lower()}
        path = f"/v2/aggs/grouped/locale/us/market/stocks/{session.isoformat()}"
        body = await self.get(f"grouped daily {session}", path, params)
        return aggregates_to_batch(
            body.get("results") or [],
            source=SOURCE,
            fetched_at=datetime.now(UTC),
            expect_date=session,
        )

    async def ticker_range(self, symbol: str, start: date, end: date) -> Batch:
        path = f"/v2/aggs/ticker/{symbol}/range/1/day/{start.isoformat()}/{end.isoformat()}"
        params = self._agg_params() | {"sort": "asc", "limit": "50000"}
        results = await self.get_pages(f"range {symbol}", path, params)
        return aggregates_to_batch(
            results, source=SOURCE, fetched_at=datetime.now(UTC), symbol=symbol
        )

    async def splits(self, start: date, end: date) -> SplitBatch:
        params = {
            "execution_date.gte": start.isoformat(),
            "execution_date.lte": end.isoformat(),
            "limit": str(_PAGE_LIMIT),
        }
        rows = await self.get_pages("splits", "/v3/reference/splits", params)
        return split_batch(rows, source=SOURCE)

    async def dividends(self, start: date, end: date, symbol: str | None = None) -> list[Any]:
        """The raw dividend rows with an ex-date in ``[start, end]`` (of ``symbol``)."""
        params = {
            "ex_dividend_date.gte": start.isoformat(),
            "ex_dividend_date.lte": end.isoformat(),
            "limit": str(_PAGE_LIMIT),
        }
        if symbol is not None:
            params["ticker"] = symbol
        endpoint = "dividends" if symbol is None else f"dividends {symbol}"
        return await self.get_pages(endpoint, "/v3/reference/dividends", params)

    async def tickers(self) -> list[dict[str, Any]]:
        params = {"market": "stocks", "active": "true", "limit": str(_PAGE_LIMIT)}
        rows = await self.get_pages("tickers", "/v3/reference/tickers", params)
        return [r for r in rows if isinstance(r, dict)]

    async def ticker_details(self, symbol: str) -> dict[str, Any]:
        body = await self.get(f"ticker details {symbol}", f"/v3/reference/tickers/{symbol}")
        results = body.get("results")
        if not isinstance(results, dict):
            raise SourceError(f"ticker details {symbol}: no 'results' object")
        return results


class PolygonSource:
    """The synchronous face of :class:`PolygonClient` the fetch job uses (one event loop)."""

    name = SOURCE

    def __init__(self, settings: PolygonSettings, api_key: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = PolygonClient(settings, api_key)
        self._run(self._client.__aenter__())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    @property
    def requests(self) -> int:
        return self._client.requests

    @property
    def retries(self) -> int:
        return self._client.retries

    def grouped_daily(self, session: date) -> Batch:
        return self._run(self._client.grouped_daily(session))

    def _each(
        self, keys: Sequence[str], call: Callable[[str], Awaitable[T]]
    ) -> dict[str, T | CondvestError]:
        async def one(key: str) -> T | CondvestError:
            try:
                return await call(key)
            except AuthError:
                raise
            except CondvestError as exc:
                return exc

        async def every() -> list[T | CondvestError]:
            return list(await asyncio.gather(*(one(k) for k in keys)))

        return dict(zip(keys, self._run(every()), strict=True))

    def histories(
        self, symbols: Sequence[str], start: date, end: date
    ) -> dict[str, Batch | CondvestError]:
        return self._each(symbols, lambda s: self._client.ticker_range(s, start, end))

    def splits(self, start: date, end: date) -> SplitBatch:
        return self._run(self._client.splits(start, end))

    def dividends(
        self, start: date, end: date, symbols: Sequence[str] | None = None
    ) -> DividendBatch:
        """One paginated request for every ticker, or one per symbol (concurrently); any failed
        request fails the whole answer (a partial set of dividends would pass for complete)."""
        if symbols is None:
            rows = self._run(self._client.dividends(start, end))
            return dividend_batch(rows, source=SOURCE)
        answers = self._each(symbols, lambda s: self._client.dividends(start, end, s))
        every: list[Any] = []
        for got in answers.values():
            if isinstance(got, CondvestError):
                raise got
            every.extend(got)
        return dividend_batch(every, source=SOURCE)

    def tickers(self) -> list[dict[str, Any]]:
        return self._run(self._client.tickers())

    def ticker_details(self, symbols: Sequence[str]) -> dict[str, dict[str, Any] | CondvestError]:
        return self._each(symbols, self._client.ticker_details)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.__aexit__(None, None, None))
            self._loop.close()

"""Fault suite: the outside world misbehaves and every run ends in success after retries or in a
clear failure with exit 1 — never a silent partial success, never lost data.

* Polygon (the stand-in of tests/polygon_server.py), through the CLI: 429 storms without
  Retry-After, a 200 with an HTML body, a truncated JSON body, a response slower than the
  timeout, a history page failing in the middle of pagination. (Single-request retry mechanics —
  429 with Retry-After, 500s, one timeout, malformed JSON, 401 — are in tests/test_polygon.py.)
  After a failure the fetch log and watermark have not moved and nothing was landed.
* S3: a fault-injecting HTTP proxy on 127.0.0.1 in front of the moto server answers a seeded
  fraction of requests with 503 SlowDown / 500 InternalError (without forwarding them); a
  `condvest run` through it ends like the same run on a fault-free lake.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pytest

import cli_proc
from condvest.core import layout
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.run import RunOptions, plan_run, run_run
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV, load_settings
from condvest.storage import Storage, open_storage
from conftest import Lake
from polygon_server import KEY, FakePolygon, Scripted, agg

DAY = date(2025, 1, 2)
NEXT = date(2025, 1, 3)


def fetch_cli(
    lake: Path, polygon: FakePolygon, *args: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("CONDVEST_") and k not in LEGACY_ENV
    }
    env = {k: v for k, v in env.items() if k not in LEGACY_BUCKET_ENV}
    env |= {
        "CONDVEST_LAKE__URI": str(lake),
        "CONDVEST_POLYGON__API_KEY": KEY,
        "CONDVEST_POLYGON__BASE_URL": polygon.url,
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "0",
        "CONDVEST_POLYGON__BACKOFF_BASE_S": "0.05",
        "CONDVEST_POLYGON__MAX_RETRIES": "3",
        "CONDVEST_POLYGON__TIMEOUT_S": "1",
    }
    env |= extra or {}
    return cli_proc.run(["-o", "json", "fetch", *args], env=env)


def landed(lake: Path) -> list[str]:
    return sorted(str(p.relative_to(lake)) for p in lake.rglob("*.parquet"))


def fetch_log(lake: Path) -> list[str]:
    return sorted(p.name for p in lake.rglob("session=*"))


@pytest.fixture
def polygon_day(polygon: FakePolygon) -> FakePolygon:
    polygon.grouped[DAY] = [agg(s, DAY, 10.0 + i) for i, s in enumerate(["AAPL", "MSFT", "X"])]
    return polygon


HTML = Scripted(200, "<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
TRUNCATED = Scripted(200, '{"status": "OK", "results": [{"T": "AAPL", "o": 1', {})
SLOW = Scripted(200, "{}", {}, sleep_s=2.5)  # past the 1 s timeout
STORM = Scripted(429, "too many requests", {})  # no Retry-After: the client's own backoff


@pytest.mark.parametrize(
    "fault", [STORM, HTML, TRUNCATED, SLOW], ids=["429", "html", "cut", "slow"]
)
def test_fault_then_recovery_lands_the_session(
    tmp_path: Path, polygon_day: FakePolygon, fault: Scripted
) -> None:
    lake = tmp_path / "lake"
    polygon_day.fail("/v2/aggs/grouped/", fault, fault)  # 2 of the 4 attempts
    done = fetch_cli(lake, polygon_day, "--date", str(DAY))
    assert done.returncode == 0, done.stderr
    assert len(polygon_day.requests_to("/v2/aggs/grouped/")) == 3
    assert len([k for k in landed(lake) if f"date={DAY}" in k]) == 3
    assert fetch_log(lake) == [f"session={DAY}.json"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", [STORM, HTML, TRUNCATED, SLOW], ids=["429", "html", "cut", "slow"]
)
def test_fault_storm_fails_clearly_and_moves_nothing(
    tmp_path: Path, polygon_day: FakePolygon, fault: Scripted
) -> None:
    lake = tmp_path / "lake"
    assert fetch_cli(lake, polygon_day, "--date", str(DAY)).returncode == 0
    before, log_before = landed(lake), fetch_log(lake)
    polygon_day.grouped[NEXT] = [agg("AAPL", NEXT)]
    polygon_day.fail("/v2/aggs/grouped/", *[fault] * 4)  # every attempt
    done = fetch_cli(lake, polygon_day, "--date", str(NEXT))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"grouped daily {NEXT}" in done.stderr  # names what failed
    assert landed(lake) == before and fetch_log(lake) == log_before
    result = json.loads(done.stdout) if done.stdout.strip() else {"ok": False}
    assert result["ok"] is False and result.get("watermark") in (None, str(DAY)), result


def test_a_failing_history_page_writes_nothing(tmp_path: Path, polygon: FakePolygon) -> None:
    lake = tmp_path / "lake"
    polygon.page_size = 2
    days = [date(2025, 1, d) for d in (2, 3, 6, 7, 8, 9)]
    polygon.ranges["AAPL"] = [agg(None, d, 10.0 + n) for n, d in enumerate(days)]
    # page 1 is served, every attempt at page 2 fails
    seen: list[int] = []

    original = polygon._answer

    def answer(path: str, query: dict[str, str]) -> dict[str, Any]:
        if not path.startswith("/v2/aggs/ticker/"):  # the history's dividends request
            return original(path, query)
        seen.append(int(query.get("cursor", "0")))
        if query.get("cursor") == "2":
            from aiohttp import web

            raise web.HTTPBadGateway()
        return original(path, query)

    polygon._answer = answer  # type: ignore[method-assign]
    args = ("--history", "--symbols", "AAPL", "--start", "2025-01-02", "--end", "2025-01-09")
    done = fetch_cli(lake, polygon, *args)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "502" in done.stderr
    assert seen.count(0) == 1 and seen.count(2) == 4  # page 1 once, page 2 retried then given up
    assert not (lake / layout.data_file("AAPL")).exists()  # no partial history
    polygon._answer = original  # type: ignore[method-assign]
    again = fetch_cli(lake, polygon, *args)
    assert again.returncode == 0, again.stderr


# -- S3 errors through a fault-injecting proxy ---------------------------------------------------
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class FaultProxy(ThreadingHTTPServer):
    """Forwards each request to ``upstream``; a seeded ``rate`` of them get a 503 SlowDown or a
    500 InternalError instead (never forwarded, as when S3 sheds load)."""

    daemon_threads = True

    def __init__(self, upstream: str, rate: float, seed: int) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = urlsplit(upstream).netloc
        self.rate, self.rng, self.lock = rate, random.Random(seed), threading.Lock()
        self.forwarded = self.failed = 0

    def should_fail(self) -> bool:
        with self.lock:
            fail = self.rng.random() < self.rate
            self.failed += fail
            self.forwarded += not fail
            return fail

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return out
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        length = dict((k.lower(), v) for k, v in headers).get("content-length")
        head = self.command == "HEAD"
        self.send_header("Content-Length", length if head and length else str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _any(self) -> None:
        body = self._body()
        if self.server.should_fail():
            error = random.choice([(503, SLOW_DOWN), (500, INTERNAL)])
            self._send(error[0], [("Content-Type", "application/xml")], error[1])
            return
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        payload = answer.read()
        self._send(answer.status, answer.getheaders(), payload)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_endpoint, rate=0.2, seed=20261126)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry waits, each a 50th as long; returns the waits asked for.

    Its standard mode waits up to 2^n s (random) before retry n: ~100 retries here slept ~70 s
    of this test's ~75. Which requests are retried, how often, and the retry quota stay
    botocore's; only the sleep is shorter (it is not what this test is about)."""
    from aiobotocore.endpoint import AioEndpoint

    asked: list[float] = []
    original = AioEndpoint._sleep

    async def sleep(self: Any, amount: float) -> None:
        asked.append(amount)
        await original(self, amount / 50)

    monkeypatch.setattr(AioEndpoint, "_sleep", sleep)
    return asked


NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
SYNTHETIC = {"source": "synthetic", "synthetic_symbols": 5}


def _s3_lake(uri: str, endpoint: str) -> Lake:
    settings = load_settings(
        env={},
        overrides={"lake": {"uri": uri}, "s3": {"endpoint_url": endpoint, "max_attempts": 6}},
    )
    return Lake("s3", uri, settings, open_storage(uri, settings), endpoint)


def _pipeline(lake: Lake) -> tuple[bool, int]:
    """Seed a month of history, then `run --vacuum` until it succeeds (at most 4 runs)."""
    ctx = lake.context(now=NOW, fetch=SYNTHETIC)
    for attempt in range(1, 5):
        seed = run_fetch(ctx, plan_fetch(ctx, FetchOptions(start=date(2026, 11, 2))))
        result = run_run(ctx, plan_run(ctx, RunOptions(vacuum=True)))
        if seed.ok and result.ok:
            return attempt == 1, attempt
        # a failed run must say so: exit 1 and which stage
        assert result.exit_code == 1 or not seed.ok, result.to_dict()
    raise AssertionError("the pipeline never succeeded through the proxy")


def _content(storage: Storage, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for obj in storage.list_objects(prefix):
        if obj.key.endswith(".parquet") and not layout.is_temp_key(obj.key):
            table = storage.read_parquet(obj.key)
            if "fetched_at" in table.column_names:  # when, not what
                table = table.drop_columns(["fetched_at"])
            out[obj.key] = table.sort_by([(c, "ascending") for c in table.column_names[:2]])
    return out


@pytest.mark.slow
def test_s3_errors_end_in_the_same_lake(
    moto_endpoint: str, s3_bucket: str, fault_proxy: FaultProxy, short_backoff: list[float]
) -> None:
    clean = _s3_lake(f"s3://{s3_bucket}/clean", moto_endpoint)
    faulty = _s3_lake(f"s3://{s3_bucket}/faulty", fault_proxy.url)
    assert _pipeline(clean) == (True, 1)
    _first_time, attempts = _pipeline(faulty)
    print(
        f"S3 fault proxy: {fault_proxy.failed} of {fault_proxy.failed + fault_proxy.forwarded} "
        f"requests failed (503 SlowDown / 500); pipeline attempts: {attempts}"
    )
    assert fault_proxy.failed > 20  # the faults were really injected
    assert len(short_backoff) > 20  # and botocore retried them
    for prefix in (layout.BRONZE_OHLCV + "/", "silver/"):
        want, got = _content(clean.storage, prefix), _content(faulty.storage, prefix)
        assert sorted(got) == sorted(want), prefix
        for key, table in want.items():
            assert got[key].equals(table), key
    rows = sum(t.num_rows for t in want.values() if isinstance(t, pa.Table))
    assert rows > 0


# -- PostgreSQL restarting mid-run -----------------------------------------------------------
def test_postgres_connection_killed_between_sessions(
    tmp_path: Path, polygon: FakePolygon, pg_schema: tuple[str, str]
) -> None:
    """The server drops condvest's connection (as a restart does) while fetch lands the second of
    three sessions: the lake keeps every session, the run exits 1 naming the session the database
    missed, and the next run heals the database from the lake — never a silent divergence."""
    import psycopg

    dsn, schema = pg_schema
    app = f"condvest-fault-{schema}"
    days = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 6)]
    for n, day in enumerate(days):
        polygon.grouped[day] = [agg(s, day, 10.0 + n) for s in ("AAPL", "MSFT", "X")]
    killed: list[int] = []
    original = polygon._answer

    def answer(path: str, query: dict[str, str]) -> dict[str, Any]:
        if path.endswith(str(days[1])) and not killed:
            with psycopg.connect(dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where application_name = %s",
                    (app,),
                ).fetchall()
            killed.append(len(rows))
        return original(path, query)

    polygon._answer = answer  # type: ignore[method-assign]
    lake = tmp_path / "lake"
    sep = "&" if "?" in dsn else "?"
    pg = {
        "CONDVEST_POSTGRES__DSN": f"{dsn}{sep}application_name={app}",
        "CONDVEST_POSTGRES__SCHEMA_NAME": schema,
    }
    done = fetch_cli(lake, polygon, "--start", str(days[0]), "--end", str(days[-1]), extra=pg)
    assert killed == [1], killed  # condvest's one connection was there, and was killed
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [str(d) for d in days] == result["sessions"]  # the lake has them all
    assert any(str(days[1]) in e for e in result["sink_errors"]), result
    assert fetch_log(lake) == [f"session={d}.json" for d in days]
    in_db = _db_dates(dsn, schema)
    assert str(days[1]) not in in_db  # the database really missed it, and the run said so
    healed = fetch_cli(lake, polygon, "--date", str(days[-1]), extra=pg)  # landed: heal only
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert _db_dates(dsn, schema) == {str(d): 3 for d in days}


def _db_dates(dsn: str, schema: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f'select date::text, count(*) from "{schema}".raw_ohlcv group by 1 order by 1'
        ).fetchall()
    return {day: int(n) for day, n in rows}

"""Shared fixtures: real local disk, a real S3-protocol server (moto, 127.0.0.1, port 0),
real PostgreSQL when reachable (mandatory when CONDVEST_REQUIRE_POSTGRES=1, as in CI)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from condvest.jobs.base import JobContext
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV, Settings, load_settings
from condvest.storage import Storage, open_storage

BUCKET = "condvest-test"
_REQUIRE_ENV = (
    "CONDVEST_REQUIRE_POSTGRES",
    "CONDVEST_REQUIRE_TERRAFORM",
    "CONDVEST_REQUIRE_CHROMIUM",
)
"""CI's switches that make the PostgreSQL, terraform and Chromium tests fail instead of skip."""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's CONDVEST_* and legacy variables must not leak into tests."""
    for name in list(os.environ):
        if name.upper().startswith("CONDVEST_") and name not in _REQUIRE_ENV:
            monkeypatch.delenv(name, raising=False)
    for name in (*LEGACY_ENV, *LEGACY_BUCKET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    # EMF metrics default on in AWS (condvest.metrics.emf_enabled): a host's must not switch them on
    monkeypatch.delenv("AWS_BATCH_JOB_ID", raising=False)
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real S3-protocol server on 127.0.0.1 for the whole session."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.server import ThreadedMotoServer

    # one INFO record per request, captured by pytest, costs more than moto's own work
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialise_moto_s3()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


_MOTO_LOCK = threading.RLock()


def serialise_moto_s3() -> None:
    """Make the in-process moto server handle one S3 request at a time.

    moto checks ``If-Match`` / ``If-None-Match`` and then stores, with no lock between the two,
    so under its threaded server two racing conditional PUTs can both succeed (a lost update
    seen here in a CAS counter); and a GET racing a PUT of the same key reads the replaced
    object's closed buffer (HTTP 500). Real S3 does both atomically; this gives tests that S3.
    """
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_condvest_serialised", False):
        return
    for name in ("bucket_response", "key_response"):
        original = getattr(S3Response, name)

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _MOTO_LOCK:
                return _original(self, *args, **kwargs)

        setattr(S3Response, name, functools.wraps(original)(serialised))
    S3Response._condvest_serialised = True  # type: ignore[attr-defined]


def moto_copy_prefix(bucket: str, source: str, target: str) -> int:
    """Test set-up: copy every object under ``source`` to ``target`` inside the in-process moto
    server (its backend is this process's), without an HTTP request per object. Returns the
    number of objects copied."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    with _MOTO_LOCK:
        keys = backend.get_bucket(bucket).keys
        names = [name for name in keys if name.startswith(source)]
        for name in names:
            backend.put_object(bucket, target + name[len(source) :], keys[name].value)
    return len(names)


@dataclass(frozen=True)
class LakeCopy:
    """A built lake kept for reuse: each test gets its own copy, byte for byte and with the
    original modification times (consolidate's pending rule compares them), so an expensive
    fixture lake is built once per module instead of once per test."""

    kind: str
    objects: tuple[tuple[str, bytes, Any], ...]  # (key under the lake, bytes, mtime)

    @classmethod
    def of(cls, lake: Lake) -> LakeCopy:
        if lake.kind == "local":
            root = Path(lake.uri)
            files = sorted(p for p in root.rglob("*") if p.is_file())
            objects = tuple(
                (str(p.relative_to(root)), p.read_bytes(), p.stat().st_mtime_ns) for p in files
            )
            return cls("local", objects)
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        bucket, _, prefix = lake.uri.removeprefix("s3://").partition("/")
        head = f"{prefix}/" if prefix else ""
        with _MOTO_LOCK:
            keys = s3_backends[DEFAULT_ACCOUNT_ID]["global"].get_bucket(bucket).keys
            objects = tuple(
                (name[len(head) :], keys[name].value, keys[name].last_modified)
                for name in sorted(keys)
                if name.startswith(head)
            )
        return cls("s3", objects)

    def restore(self, lake: Lake) -> Lake:
        """Write the copy into ``lake`` (an empty location of the same kind)."""
        assert lake.kind == self.kind
        if lake.kind == "local":
            root = Path(lake.uri)
            for key, data, mtime in self.objects:
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                os.utime(path, ns=(mtime, mtime))
            return lake
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        bucket, _, prefix = lake.uri.removeprefix("s3://").partition("/")
        head = f"{prefix}/" if prefix else ""
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
        with _MOTO_LOCK:
            for key, data, mtime in self.objects:
                backend.put_object(bucket, head + key, data).last_modified = mtime
        return lake


def _reset_moto(endpoint: str) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> Iterator[str]:
    """A fresh, empty bucket on the S3 server (the server is reset before each test)."""
    _reset_moto(moto_endpoint)
    _boto_client(moto_endpoint).create_bucket(Bucket=BUCKET)
    yield BUCKET


# A new botocore client loads the S3 service model again (0.2–1 s on a busy 2-core machine),
# so tests share one client, and one storage per lake URI; both hold no state of their own
# (listing caches are off), and the server is reset between tests.
@functools.cache
def _boto_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@functools.cache
def _shared_s3_storage(uri: str, endpoint: str) -> Storage:
    settings = load_settings(
        env={},
        overrides={"lake": {"uri": uri}, "s3": {"endpoint_url": endpoint, "max_attempts": 2}},
    )
    return open_storage(uri, settings)


@dataclass
class Lake:
    """A lake under test: its kind, URI, settings, and storage."""

    kind: str
    uri: str
    settings: Settings
    storage: Storage
    endpoint_url: str | None = None

    def context(self, now: datetime | None = None, **overrides: Any) -> JobContext:
        settings = self.settings
        if overrides:
            settings = load_settings(env={}, overrides=_with_lake(self, overrides))
        ctx = JobContext.from_settings(settings)
        ctx.storage = self.storage
        if now is not None:
            ctx.clock = lambda: now
        return ctx

    def cli_args(self) -> list[str]:
        return ["--lake", self.uri]

    def env(self) -> dict[str, str]:
        """Environment a subprocess needs to reach this lake."""
        env = {"CONDVEST_LAKE__URI": self.uri}
        if self.endpoint_url:
            env["CONDVEST_S3__ENDPOINT_URL"] = self.endpoint_url
        return env


def _with_lake(lake: Lake, overrides: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: dict(v) for k, v in overrides.items()}
    merged.setdefault("lake", {})["uri"] = lake.uri
    if lake.endpoint_url:
        merged.setdefault("s3", {})["endpoint_url"] = lake.endpoint_url
    return merged


def make_local_lake(root: Path) -> Lake:
    settings = load_settings(env={}, overrides={"lake": {"uri": str(root)}})
    return Lake("local", str(root), settings, open_storage(str(root), settings))


def make_s3_lake(endpoint: str, bucket: str, prefix: str = "lake") -> Lake:
    uri = f"s3://{bucket}/{prefix}"
    settings = load_settings(
        env={},
        overrides={"lake": {"uri": uri}, "s3": {"endpoint_url": endpoint, "max_attempts": 2}},
    )
    return Lake("s3", uri, settings, _shared_s3_storage(uri, endpoint), endpoint)


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    return make_local_lake(tmp_path / "lake")


@pytest.fixture
def s3_lake(moto_endpoint: str, s3_bucket: str) -> Lake:
    return make_s3_lake(moto_endpoint, s3_bucket)


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """Runs a test twice: on local disk and on the S3 server."""
    if request.param == "local":
        return make_local_lake(tmp_path / "lake")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return make_s3_lake(endpoint, bucket)


# -- PostgreSQL ---------------------------------------------------------------------------------
PG_HOST = os.environ.get("CONDVEST_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CONDVEST_TEST_PG_PORT", "5432"))
PG_DB = os.environ.get("CONDVEST_TEST_PG_DB", "test")


def _pg_reachable() -> str | None:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=2):
            pass
    except OSError as exc:
        return f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({exc})"
    try:
        import psycopg

        with psycopg.connect(_base_dsn(), connect_timeout=5) as conn:
            conn.execute("select 1")
    except Exception as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DB} not usable: {exc}"
    return None


def _base_dsn() -> str:
    user = os.environ.get("CONDVEST_TEST_PG_USER", "postgres")
    return f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{PG_DB}"


@pytest.fixture(scope="session")
def pg_base_dsn() -> str:
    reason = _pg_reachable()
    if reason:
        if os.environ.get("CONDVEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason}; CONDVEST_REQUIRE_POSTGRES=1 makes PostgreSQL tests mandatory")
        pytest.skip(reason)
    return _base_dsn()


@pytest.fixture
def pg_schema(pg_base_dsn: str) -> Iterator[tuple[str, str]]:
    """(dsn, schema): a fresh schema per test, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_base_dsn, autocommit=True) as conn:
        conn.execute(f'create schema "{schema}"')
    try:
        yield pg_base_dsn, schema
    finally:
        with psycopg.connect(pg_base_dsn, autocommit=True) as conn:
            conn.execute(f'drop schema if exists "{schema}" cascade')


def at(text: str) -> datetime:
    """An aware UTC datetime from ISO text (the clock seam)."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- Polygon stand-in -------------------------------------------------------------------------
@pytest.fixture
def polygon() -> Iterator[Any]:
    """A real HTTP server on 127.0.0.1 serving Polygon's response shapes (tests/polygon_server)."""
    from polygon_server import serve

    yield from serve()


def polygon_overrides(url: str, **polygon: Any) -> dict[str, Any]:
    """Settings that point at the stand-in with small retry delays."""
    from polygon_server import KEY

    values = {
        "base_url": url,
        "api_key": KEY,
        "requests_per_minute": 0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 3,
        "timeout_s": 2.0,
    }
    values.update(polygon)
    return {"polygon": values, "fetch": {"source": "polygon"}}


# -- crash suite figures ----------------------------------------------------------------------
CRASH_POINTS: dict[tuple[str, ...], int] = {}
"""(stage, backend) -> kill points tried, (stage, backend, "writes") -> storage mutations of an
uninterrupted run; tests/test_crash_suite.py records them as the user property ``crash_points``
of its reports, which reach this process from pytest-xdist workers too; printed at the end."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "crash_points" and report.when == "call":
            stage, kind, points, writes = value
            CRASH_POINTS[(stage, kind)] = CRASH_POINTS.get((stage, kind), 0) + points
            CRASH_POINTS[(stage, kind, "writes")] = writes


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not CRASH_POINTS:
        return
    terminalreporter.section("crash suite: kill points tried")
    total = 0
    for key in sorted(k for k in CRASH_POINTS if len(k) == 2):
        writes = CRASH_POINTS.get((*key, "writes"), "?")
        terminalreporter.write_line(
            f"{key[0]:<12} {key[1]:<6} {CRASH_POINTS[key]:>3} points of {writes} writes"
        )
        total += CRASH_POINTS[key]
    terminalreporter.write_line(f"total        {total} kill points")


# -- the CLI in child processes (tests/cli_proc.py) --------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fresh-cli",
        action="store_true",
        help="run every `python -m condvest` of the tests in a fresh interpreter instead of a "
        "child forked from a pre-imported one (slower; the reference tests/cli_proc.py matches)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first (each file's tests stay together, in their order): under
    pytest-xdist (make test) the long crash, hostile-input and fault tests then start at once
    instead of leaving one worker busy at the end while the other idles. A file with a test
    marked ``slow(first=True)`` (the Terraform apply, which mostly waits) goes before them."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    first = {
        item.path
        for item in items
        if (mark := item.get_closest_marker("slow")) and mark.kwargs.get("first")
    }
    items.sort(key=lambda item: (item.path not in first, item.path not in slow))


def pytest_configure(config: pytest.Config) -> None:
    import cli_proc

    cli_proc.FRESH["all"] = bool(config.getoption("--fresh-cli"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    import cli_proc

    cli_proc.stop_zygote()

"""Logs: JSON lines with a fixed set of keys, and secrets scrubbed from every record (registered
secrets, ``apiKey=`` query values, DSN passwords)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from condvest.logging import configure, redact, register_secret


class Captured:
    """Configures condvest logging onto a string buffer standing in for stderr."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stream = io.StringIO()
        self.monkeypatch = monkeypatch

    def configure(self, **kwargs: Any) -> None:
        with self.monkeypatch.context() as patch:
            patch.setattr(sys, "stderr", self.stream)
            configure(fmt="json", **kwargs)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    logger = logging.getLogger("condvest")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    captured = Captured(monkeypatch)
    captured.configure()
    yield captured
    logger.handlers[:], logger.level, logger.propagate = saved  # leave no trace for other tests


def test_redact_query_secrets_and_dsn_passwords() -> None:
    url = "https://api.polygon.io/v2/aggs/grouped?adjusted=true&apiKey=AbC123xyz&x=1"
    assert redact(url) == "https://api.polygon.io/v2/aggs/grouped?adjusted=true&apiKey=***&x=1"
    assert redact("GET /v3?api_key=zzz9 done") == "GET /v3?api_key=*** done"
    dsn = "postgresql://condvest:s3cr3t-pw@db:5432/lake"
    assert (
        redact(f"connect {dsn} failed") == "connect postgresql://condvest:***@db:5432/lake failed"
    )
    assert redact("nothing secret here") == "nothing secret here"


def test_registered_secret_is_scrubbed() -> None:
    register_secret("registered-SECRET-42")
    assert redact("key=registered-SECRET-42;") == "key=***;"
    register_secret("abc")  # too short to scrub safely: ignored
    assert redact("abc") == "abc"


def test_json_lines_scrub_secrets(json_log: Captured) -> None:
    register_secret("tok-REGISTERED-777")
    log = logging.getLogger("condvest.test")
    log.info("calling %s", "https://x/y?apiKey=LEAKME1", extra={"symbol": "AAPL"})
    log.warning("secret %s in message", "tok-REGISTERED-777")
    try:
        raise RuntimeError("failed with tok-REGISTERED-777")
    except RuntimeError:
        log.exception("boom")
    text = json_log.stream.getvalue()
    assert "LEAKME1" not in text and "tok-REGISTERED-777" not in text
    records = json_log.records()
    assert [r["level"] for r in records] == ["info", "warning", "error"]
    assert records[0]["message"] == "calling https://x/y?apiKey=***"
    assert records[0]["symbol"] == "AAPL"
    assert records[0]["logger"] == "condvest.test"
    assert "RuntimeError" in records[2]["exc_info"]


def test_levels(json_log: Captured) -> None:
    log = logging.getLogger("condvest.test")
    log.debug("hidden by default")
    log.info("info shown")
    json_log.configure(quiet=True)
    log.info("hidden when quiet")
    log.warning("shown")
    json_log.configure(verbose=1)
    log.debug("debug shown")
    assert [r["message"] for r in json_log.records()] == ["info shown", "shown", "debug shown"]

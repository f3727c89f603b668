"""Logs go to stderr: rich on a TTY, one JSON object per line otherwise (CloudWatch-friendly).
A filter scrubs registered secrets and ``apiKey=`` query values from every record."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

_SECRETS: set[str] = set()
_QUERY_SECRET = re.compile(r"((?:api[_-]?key|apikey|password|token)=)[^&\s'\"]+", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+(@)")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def register_secret(value: str | None) -> None:
    """Never print ``value`` (API key, password) in any log line or error message."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    text = _QUERY_SECRET.sub(r"\1***", text)
    return _DSN_PASSWORD.sub(r"\1***\2", text)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exc_info"] = redact(self.formatException(record.exc_info))
        return json.dumps(body, default=str)


def configure(
    *, verbose: int = 0, quiet: bool = False, fmt: Literal["auto", "json", "text"] = "auto"
) -> None:
    """Set up the ``condvest`` logger once per process (idempotent)."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose > 0 else logging.INFO
    logger = logging.getLogger("condvest")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler: logging.Handler
    if use_json:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(JsonFormatter())
        handler = stream
    else:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
    handler.addFilter(_RedactFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

"""AWS Lambda entry point: ``condvest.aws.lambda_handler.handler``.

Turns the event into one validated call on :class:`condvest.Lake` (aws/events.py: the same
stages, options and checks as the CLI Batch and cron run), returns the result's ``to_dict()``, and
RAISES when the CLI would exit non-zero, so Lambda, its metrics and alarms see a failure (the
original fetcher returned ``statusCode: 500`` inside a successful invocation).

Time limit: the handler sets :data:`condvest.jobs.context.DEADLINE` to the invocation's deadline
minus a safety margin (``CONDVEST_LAMBDA_MARGIN_S``, default 30 s). Jobs stop cleanly between units
of work and report ``partial: true``; the handler then answers ``"continue": true`` with
``next_event``, the event to invoke again with (state is in the lake, so the next run resumes).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from condvest.aws.events import EventError, Invocation, parse_event
from condvest.errors import CondvestError, ConfigError
from condvest.jobs.context import DEADLINE
from condvest.lake import check_failed, open_lake
from condvest.logging import configure as configure_logging
from condvest.logging import redact
from condvest.settings import load_settings

log = logging.getLogger("condvest.aws")

MARGIN_ENV = "CONDVEST_LAMBDA_MARGIN_S"
DEFAULT_MARGIN_S = 30.0
MIN_RUN_S = 1.0
"""Below this much time after the margin, the handler does not start the command at all."""
WRITABLE_ROOT = Path("/tmp")
"""The only writable file system in Lambda."""


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class CommandFailed(RuntimeError):
    """The call failed (the CLI would exit non-zero); Lambda reports ``errorType:
    CommandFailed``. ``result`` is the failed result's ``to_dict()`` when there is one."""

    def __init__(self, message: str, *, exit_code: int, result: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result


def margin_s(env: Mapping[str, str]) -> float:
    raw = env.get(MARGIN_ENV, "").strip()
    if not raw:
        return DEFAULT_MARGIN_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{MARGIN_ENV}={raw!r} is not a number of seconds") from None
    if value < 0:
        raise ConfigError(f"{MARGIN_ENV}={raw!r} must be zero or more seconds")
    return value


def check_lake_writable(invocation: Invocation) -> str:
    """Refuse a local lake outside /tmp (``./lake`` would be the read-only /var/task/lake)."""
    lake, config = invocation.call.lake, invocation.call.config
    settings = load_settings(
        config_path=config, overrides={"lake": {"uri": lake}} if lake else None
    )
    uri = settings.lake.uri
    parsed = urlparse(uri)
    if parsed.scheme.lower() not in ("", "file"):
        return uri
    path = Path(parsed.path if parsed.scheme else uri).resolve()
    if not path.is_relative_to(WRITABLE_ROOT.resolve()):
        raise ConfigError(
            f"lake {uri!r} is on local disk at {path}, which Lambda cannot write",
            hint="set CONDVEST_LAKE__URI=s3://bucket/prefix (or a path under /tmp for a scratch "
            "run)",
        )
    return uri


def _writable_home() -> None:
    """Libraries write caches under $HOME and $TMPDIR; in Lambda only /tmp is writable."""
    for name in ("HOME", "TMPDIR"):
        current = os.environ.get(name)
        if not current or not os.access(current, os.W_OK):
            os.environ[name] = str(WRITABLE_ROOT)


def run_call(invocation: Invocation) -> dict[str, Any]:
    """Make the invocation's call on the lake → its result as plain (JSON) data, secrets
    redacted. Raises :class:`CommandFailed` with the exit code the CLI would have had."""
    call = invocation.call
    if call.verbose or call.quiet:
        configure_logging(verbose=call.verbose, quiet=call.quiet)
    try:
        with open_lake(call.lake, config=call.config) as lake:
            if lake.settings.log.format != "auto":
                configure_logging(
                    verbose=call.verbose, quiet=call.quiet, fmt=lake.settings.log.format
                )
            outcome = getattr(lake, call.method)(**call.kwargs)
    except CondvestError as exc:
        message = _failure_message(invocation, exc.exit_code, str(exc), None)
        raise CommandFailed(message, exit_code=exc.exit_code, result=None) from exc
    except Exception as exc:
        log.error("internal error in %s", invocation.command, exc_info=True)
        detail = f"internal error: {type(exc).__name__}: {exc}"
        raise CommandFailed(
            _failure_message(invocation, 1, detail, None), exit_code=1, result=None
        ) from exc
    # As the CLI's JSON output: dates as text, secrets redacted.
    result: dict[str, Any] = json.loads(redact(json.dumps(outcome.to_dict(), default=str)))
    if call.method == "status":  # status exits 1 only for --check (a health alarm)
        code = 1 if call.check and check_failed(outcome) else 0
    else:
        code = outcome.exit_code
    if code != 0:
        database = result.get("database_error")
        message = _failure_message(invocation, code, database, result)
        raise CommandFailed(message, exit_code=code, result=result)
    return result


def finish_result(invocation: Invocation, result: dict[str, Any]) -> dict[str, Any]:
    """Add ``continue`` (and ``next_event`` when the job stopped early) to a success."""
    out = dict(result)
    out["continue"] = bool(result.get("partial"))
    if out["continue"]:
        out["next_event"] = invocation.replay
    return out


def not_started(invocation: Invocation, left_s: float, margin: float) -> dict[str, Any]:
    return {
        "stage": invocation.command,
        "run_id": None,
        "dry_run": invocation.dry_run,
        "ok": True,
        "partial": True,
        "started": False,
        "reason": f"only {left_s:.1f}s left: less than the {margin:g}s safety margin plus "
        f"{MIN_RUN_S:g}s to run",
        "continue": True,
        "next_event": invocation.replay,
    }


def _failure_message(invocation: Invocation, code: int, error: str | None, result: Any) -> str:
    message = f"condvest {invocation.command} failed with exit code {code}"
    if error:
        message += ": " + redact(error)
    elif isinstance(result, dict):
        problems = result.get("problems") or result.get("errors")
        detail = json.dumps(problems if problems else result, default=str)
        message += ": " + (detail if len(detail) <= 1000 else detail[:1000] + "…")
    return message


def handler(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Lambda entry point; see the module docstring and docs/deploy/lambda.md."""
    if not logging.getLogger("condvest").handlers:
        configure_logging()
    today = datetime.now(UTC).date()
    invocation = parse_event(event, env=os.environ, today=today)
    for note in invocation.notes:
        log.info(note, extra={"event_shape": invocation.shape})
    _writable_home()
    check_lake_writable(invocation)
    margin = margin_s(os.environ)
    token = None
    if context is not None:
        left_s = context.get_remaining_time_in_millis() / 1000.0
        if left_s - margin < MIN_RUN_S:
            log.warning("not starting %s: %.1fs left", invocation.command, left_s)
            return not_started(invocation, left_s, margin)
        token = DEADLINE.set(time.monotonic() + left_s - margin)
    log.info(
        "lambda invocation",
        extra={
            "event_shape": invocation.shape,
            "argv": list(invocation.argv),
            "call": invocation.call.method,
        },
    )
    try:
        result = run_call(invocation)
    finally:
        if token is not None:
            DEADLINE.reset(token)
    return finish_result(invocation, result)


__all__ = ["CommandFailed", "EventError", "handler"]

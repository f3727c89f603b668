"""AWS Lambda entry point: ``condvest.aws.lambda_handler.handler``.

Runs one condvest command in-process (the same CLI Batch and cron run), returns its JSON result,
and RAISES when the command exits non-zero, so Lambda, its metrics and alarms see a failure (the
original fetcher returned ``statusCode: 500`` inside a successful invocation).

Time limit: the handler sets :data:`condvest.jobs.base.DEADLINE` to the invocation's deadline minus
a safety margin (``CONDVEST_LAMBDA_MARGIN_S``, default 30 s). Jobs stop cleanly between units of
work and report ``partial: true``; the handler then answers ``"continue": true`` with
``next_event``, the event to invoke again with (state is in the lake, so the next run resumes).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from condvest.aws.events import EventError, Invocation, parse_event
from condvest.errors import ConfigError
from condvest.jobs.base import DEADLINE
from condvest.logging import configure as configure_logging
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
    """The command exited non-zero; Lambda reports ``errorType: CommandFailed``."""

    def __init__(self, message: str, *, exit_code: int, result: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result


class _ErrorTee(io.TextIOBase):
    """Passes stderr through (logs reach CloudWatch) and keeps the CLI's ``error:`` lines."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.errors_seen: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self.errors_seen.extend(ln for ln in lines if ln.lower().startswith("error:"))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False  # JSON log lines, whatever the runtime's stderr is


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
    lake = invocation.arg("lake")
    config = invocation.arg("config")
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


def run_cli(argv: list[str]) -> tuple[int, str, list[str]]:
    """Run ``condvest argv`` in this process → (exit code, stdout, its ``error:`` lines)."""
    from condvest.cli.app import main

    out = io.StringIO()
    real_stderr = sys.stderr
    tee = _ErrorTee(real_stderr)
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(tee):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # The CLI configured its log handler while stderr was the tee; point it back.
    for handler in logging.getLogger("condvest").handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is tee:
            handler.setStream(real_stderr)
    return code, out.getvalue(), tee.errors_seen


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The command's one JSON object (``--output json``), or None if it printed none."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


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


def _failure_message(invocation: Invocation, code: int, errors: list[str], result: Any) -> str:
    message = f"condvest {invocation.command} failed with exit code {code}"
    if errors:
        message += ": " + errors[-1].partition(":")[2].strip()
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
        extra={"event_shape": invocation.shape, "argv": list(invocation.argv)},
    )
    try:
        code, stdout, errors = run_cli(list(invocation.argv))
    finally:
        if token is not None:
            DEADLINE.reset(token)
    result = parse_result(stdout)
    if code != 0:
        raise CommandFailed(
            _failure_message(invocation, code, errors, result), exit_code=code, result=result
        )
    if result is None:
        raise CommandFailed(
            f"condvest {invocation.command} printed no JSON result", exit_code=code, result=None
        )
    return finish_result(invocation, result)


__all__ = ["CommandFailed", "EventError", "handler"]

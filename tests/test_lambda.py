"""The Lambda handler, driven by the real runtime client (awslambdaric) against the local Runtime
API stub on 127.0.0.1 — no container, no AWS. One runtime process serves the whole module (it
loops over invocations like a warm Lambda), so the suite stays fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from condvest.aws.events import EventError, build_argv, legacy_args, parse_event
from condvest.aws.lambda_handler import (
    CommandFailed,
    finish_result,
    handler,
    margin_s,
)
from condvest.aws.runtime_stub import Outcome, RuntimeStub
from condvest.errors import ConfigError

MARGIN_S = 5


@dataclass
class Runtime:
    stub: RuntimeStub
    proc: subprocess.Popen[bytes]
    lake: Path

    def invoke(self, event: Any, *, timeout_ms: int = 60_000) -> Outcome:
        request_id = self.stub.submit(event, timeout_ms=timeout_ms)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"the runtime exited with {self.proc.returncode}")
            try:
                return self.stub.wait(request_id, wait_s=0.5)
            except TimeoutError:
                continue
        raise AssertionError("the runtime posted no outcome within 60 s")


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    # Lambda can write only under /tmp; the handler refuses a local lake elsewhere.
    root = Path(tempfile.mkdtemp(prefix="condvest-lambda-", dir="/tmp"))
    stub = RuntimeStub().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(
        AWS_LAMBDA_RUNTIME_API=stub.address,
        CONDVEST_LAKE__URI=str(root / "lake"),
        CONDVEST_LAMBDA_COMMAND="status",
        CONDVEST_LAMBDA_MARGIN_S=str(MARGIN_S),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", "condvest.aws.lambda_handler.handler"],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield Runtime(stub, proc, root / "lake")
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    stub.stop()
    shutil.rmtree(root, ignore_errors=True)


# -- through the runtime client ---------------------------------------------------------------


def test_scheduled_event_runs_the_configured_command(runtime: Runtime) -> None:
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    outcome = runtime.invoke(event)
    assert outcome.kind == "response", outcome
    assert outcome.body["stage"] == "status"
    assert outcome.body["lake"] == str(runtime.lake)
    assert outcome.body["continue"] is False


def test_direct_event_maps_args_to_options(runtime: Runtime, tmp_path: Path) -> None:
    other = Path(tempfile.mkdtemp(prefix="condvest-lambda-other-", dir="/tmp"))
    try:
        outcome = runtime.invoke(
            {"command": "status", "args": {"check": False, "lake": str(other)}}
        )
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert outcome.kind == "response", outcome
    assert outcome.body["lake"] == str(other)
    assert outcome.body["ok"] is True


def test_non_zero_exit_raises_so_lambda_reports_a_failure(runtime: Runtime) -> None:
    # An empty lake is stale: status --check exits 1.
    outcome = runtime.invoke({"command": "status", "args": {"check": True}})
    assert outcome.kind == "error"
    assert outcome.body["errorType"] == "CommandFailed"
    assert "condvest status failed with exit code 1" in outcome.body["errorMessage"]
    assert "no data yet" in outcome.body["errorMessage"]


def test_legacy_event_is_mapped_or_rejected_clearly(runtime: Runtime) -> None:
    outcome = runtime.invoke({"symbols": ["AAPL"], "new_symbols_only": True})
    assert outcome.kind == "error"
    assert outcome.body["errorType"] == "EventError"
    assert "new_symbols_only is not supported" in outcome.body["errorMessage"]


def test_unknown_arg_is_rejected_before_anything_runs(runtime: Runtime) -> None:
    outcome = runtime.invoke({"command": "status", "args": {"chek": True}})
    assert outcome.kind == "error"
    assert outcome.body["errorType"] == "EventError"
    assert "unknown argument 'chek' for condvest status" in outcome.body["errorMessage"]
    assert "check" in outcome.body["errorMessage"]


def test_local_lake_outside_tmp_is_refused(runtime: Runtime) -> None:
    target = "/var/tmp/condvest-lambda-must-not-exist"
    outcome = runtime.invoke({"command": "status", "args": {"lake": target}})
    assert outcome.kind == "error"
    assert outcome.body["errorType"] == "ConfigError"
    assert "Lambda cannot write" in outcome.body["errorMessage"]
    assert "s3://" in outcome.body["errorMessage"]
    assert not Path(target).exists()


def test_too_little_time_left_returns_continue_without_starting(runtime: Runtime) -> None:
    # 3 s left with a 5 s safety margin: nothing starts, the caller is told to invoke again.
    event = {"command": "status", "args": {"check": True}}
    outcome = runtime.invoke(event, timeout_ms=3_000)
    assert outcome.kind == "response", outcome
    body = outcome.body
    assert body["partial"] is True and body["started"] is False and body["ok"] is True
    assert body["continue"] is True
    assert body["next_event"] == event
    # The runtime is still healthy afterwards (warm container, next invocation).
    assert runtime.invoke({"command": "status"}).kind == "response"


# -- the pure parts ---------------------------------------------------------------------------


def test_build_argv_follows_each_option_kind() -> None:
    name, argv = build_argv("status", {"check": True, "lake": "/tmp/x", "verbose": 2})
    assert name == "status"
    assert argv == [
        "--output", "json", "--lake", "/tmp/x", "--verbose", "--verbose", "status", "--check",
    ]  # fmt: skip
    assert build_argv("status", {"check": False, "quiet": None})[1] == [
        "--output", "json", "status",
    ]  # fmt: skip
    assert build_argv("status --check")[1] == ["--output", "json", "status", "--check"]


def test_build_argv_rejects_bad_input() -> None:
    with pytest.raises(EventError, match="unknown command 'stat'"):
        build_argv("stat")
    with pytest.raises(EventError, match="names no command"):
        build_argv("  ")
    with pytest.raises(EventError, match=r"unknown argument 'output'"):
        build_argv("status", {"output": "text"})
    # Options after the command are accepted by the CLI; the Lambda still always answers JSON.
    for line in ("status -o text", "status --output=text", "status -qotext"):
        with pytest.raises(EventError, match="sets --output"):
            build_argv(line)
    with pytest.raises(EventError, match=r"unknown argument 'global_lake'"):
        build_argv("status", {"global_lake": "/tmp/x"})
    assert build_argv("status -- -o")[1] == ["--output", "json", "status", "--", "-o"]
    with pytest.raises(EventError, match=r"args.check = 'yes': --check is a flag"):
        build_argv("status", {"check": "yes"})
    with pytest.raises(EventError, match=r"args.lake = True: expected a string"):
        build_argv("status", {"lake": True})


def test_legacy_event_argv_for_fetch() -> None:
    inv = parse_event(
        {"symbols": ["AAPL", "MSFT"], "date": "2026-11-20", "max_backfill_days": 5},
        env={},
        today=date(2026, 11, 25),
    )
    assert inv.argv == (
        "--output", "json", "fetch",
        "--symbols", "AAPL,MSFT", "--date", "2026-11-20", "--max-backfill-days", "5",
    )  # fmt: skip
    dry = parse_event({"command": "fetch", "args": {"dry_run": True, "force": False}}, env={},
                      today=date(2026, 11, 25))  # fmt: skip
    assert dry.argv == ("--output", "json", "fetch", "--dry-run")


def test_legacy_fields_map_to_fetch_options() -> None:
    today = date(2026, 11, 25)
    args, notes = legacy_args(
        {
            "symbols": ["AAPL", "MSFT"],
            "date": "2026-11-20",
            "max_backfill_days": 5,
            "skip_market_check": True,
            "new_symbols_only": False,
        },
        today,
    )
    assert args == {"symbols": ["AAPL", "MSFT"], "date": "2026-11-20", "max_backfill_days": 5}
    assert any("skip_market_check ignored" in n for n in notes)
    args, notes = legacy_args({"backfill_missing": False, "max_backfill_days": 9}, today)
    assert args == {"max_backfill_days": 1}
    assert any("max_backfill_days ignored" in n for n in notes)
    args, _ = legacy_args({"historical_backfill": True, "years_back": 3, "symbols": "IBM"}, today)
    assert args == {"symbols": "IBM", "history": True, "start": "2023-11-25"}
    args, _ = legacy_args({"historical_backfill": True}, today)
    assert args == {"history": True}
    leap, _ = legacy_args({"historical_backfill": True, "years_back": 1}, date(2028, 2, 29))
    assert leap["start"] == "2027-02-28"
    for years, start in ((4, "2024-02-29"), (5, "2023-02-28")):
        event = {"historical_backfill": True, "years_back": years, "symbols": ["AAPL"]}
        inv = parse_event(event, env={}, today=date(2028, 2, 29))
        assert inv.argv[inv.argv.index("--start") + 1] == start
    args, notes = legacy_args({"years_back": 2}, today)
    assert args == {} and any("years_back ignored" in n for n in notes)


def test_legacy_fields_with_wrong_types_are_rejected() -> None:
    today = date(2026, 11, 25)
    with pytest.raises(EventError, match="max_backfill_days = '5'"):
        legacy_args({"max_backfill_days": "5"}, today)
    with pytest.raises(EventError, match="max_backfill_days = True"):
        legacy_args({"max_backfill_days": True}, today)
    with pytest.raises(EventError, match="years_back = 0"):
        legacy_args({"historical_backfill": True, "years_back": 0}, today)
    with pytest.raises(EventError, match="new_symbols_only is not supported"):
        legacy_args({"new_symbols_only": True}, today)


def test_parse_event_shapes() -> None:
    today = date(2026, 11, 25)
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event"}
    inv = parse_event(scheduled, env={}, today=today)
    assert (inv.shape, inv.command, inv.replay) == (
        "scheduled",
        "fetch",
        {"command": "fetch", "args": {}},
    )
    inv = parse_event(scheduled, env={"CONDVEST_LAMBDA_COMMAND": "status --check"}, today=today)
    assert inv.argv == ("--output", "json", "status", "--check")
    assert inv.replay == {"command": "status --check", "args": {}}
    inv = parse_event({}, env={}, today=today)
    assert (inv.shape, inv.command) == ("legacy", "fetch")
    with pytest.raises(EventError, match="unexpected field"):
        parse_event({"command": "status", "check": True}, env={}, today=today)
    with pytest.raises(EventError, match="unrecognised event field"):
        parse_event({"comand": "status"}, env={}, today=today)
    with pytest.raises(EventError, match="JSON object"):
        parse_event(["status"], env={}, today=today)
    with pytest.raises(EventError, match="expected an object"):
        parse_event({"command": "status", "args": ["--check"]}, env={}, today=today)


def test_partial_result_is_passed_through_with_continue() -> None:
    inv = parse_event({"command": "status", "args": {"check": True}}, env={}, today=date.today())
    done = finish_result(inv, {"stage": "status", "ok": True})
    assert done["continue"] is False and "next_event" not in done
    partial = finish_result(inv, {"stage": "status", "ok": True, "partial": True})
    assert partial["continue"] is True
    assert partial["next_event"] == {"command": "status", "args": {"check": True}}


def test_margin() -> None:
    assert margin_s({}) == 30.0
    assert margin_s({"CONDVEST_LAMBDA_MARGIN_S": "12.5"}) == 12.5
    with pytest.raises(ConfigError, match="not a number"):
        margin_s({"CONDVEST_LAMBDA_MARGIN_S": "soon"})
    with pytest.raises(ConfigError, match="zero or more"):
        margin_s({"CONDVEST_LAMBDA_MARGIN_S": "-1"})


class _Context:
    def __init__(self, left_ms: int) -> None:
        self.left_ms = left_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.left_ms


def test_handler_in_process_raises_on_failure_and_leaves_no_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from condvest.jobs.context import DEADLINE

    root = Path(tempfile.mkdtemp(prefix="condvest-lambda-inproc-", dir="/tmp"))
    try:
        monkeypatch.setenv("CONDVEST_LAKE__URI", str(root / "lake"))
        ok = handler({"command": "status"}, _Context(120_000))
        assert ok["stage"] == "status" and ok["continue"] is False
        with pytest.raises(CommandFailed) as failed:
            handler({"command": "status", "args": {"check": True}}, _Context(120_000))
        assert failed.value.exit_code == 1
        assert failed.value.result is not None and failed.value.result["stale"] is True
        assert DEADLINE.get() is None
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the event becomes one call on the library (no argv run, no stdout parsed) ------------------


def test_each_event_shape_becomes_one_lake_call() -> None:
    today = date(2026, 11, 25)
    env = {"CONDVEST_LAMBDA_COMMAND": "run --vacuum --lake /tmp/sched"}
    scheduled = parse_event({"source": "aws.events"}, env=env, today=today).call
    assert (scheduled.method, scheduled.kwargs["vacuum"], scheduled.lake) == (
        "run",
        True,
        "/tmp/sched",
    )
    direct = parse_event(
        {"command": "status", "args": {"check": True, "lake": "/tmp/a", "verbose": 2}},
        env={},
        today=today,
    ).call
    assert (direct.method, direct.check, direct.lake, direct.verbose) == (
        "status",
        True,
        "/tmp/a",
        2,
    )
    assert direct.kwargs == {"init_db": False}  # --check is the handler's verdict, not a kwarg
    legacy = parse_event(
        {"symbols": ["AAPL"], "historical_backfill": True, "years_back": 2}, env={}, today=today
    ).call
    assert legacy.method == "fetch"
    assert (legacy.kwargs["symbols"], legacy.kwargs["history"], legacy.kwargs["start"]) == (
        "AAPL", True, "2024-11-25",
    )  # fmt: skip
    sync = parse_event(
        {"command": "fetch", "args": {"sync_db": True, "end": "2026-11-20", "force": True}},
        env={},
        today=today,
    ).call
    assert (sync.method, sync.kwargs) == (
        "sync_db",
        {"start": None, "end": "2026-11-20", "dry_run": False},
    )
    # Options after the command override the event's global args, as on the command line.
    late = parse_event(
        {"command": "status --lake /tmp/late", "args": {"lake": "/tmp/early"}}, env={}, today=today
    ).call
    assert late.lake == "/tmp/late"


def test_a_bad_option_value_is_rejected_before_anything_runs() -> None:
    today = date(2026, 11, 25)
    with pytest.raises(EventError, match="--max-backfill-days"):
        parse_event({"command": "fetch", "args": {"max_backfill_days": 0}}, env={}, today=today)
    with pytest.raises(EventError, match="--mode"):
        parse_event({"command": "consolidate", "args": {"mode": "most"}}, env={}, today=today)
    with pytest.raises(EventError, match="--help cannot be invoked"):
        parse_event({"command": "status -h"}, env={}, today=today)


def test_handler_returns_the_lake_result_and_stops_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from condvest import open_lake

    root = Path(tempfile.mkdtemp(prefix="condvest-lambda-lake-", dir="/tmp"))
    try:
        monkeypatch.setenv("CONDVEST_LAKE__URI", str(root / "lake"))
        monkeypatch.setenv("CONDVEST_FETCH__SOURCE", "synthetic")
        monkeypatch.setenv("CONDVEST_LAMBDA_MARGIN_S", "0")
        event = {"command": "fetch", "args": {"start": "2025-01-02", "end": "2025-01-08"}}
        # 20 s left: within fetch's stop margin, so it stops before the first session, cleanly.
        stopped = handler(event, _Context(20_000))
        assert stopped["partial"] is True and stopped["ok"] is True
        assert stopped["continue"] is True and stopped["next_event"] == event
        assert stopped["sessions"] == []
        done = handler(event, _Context(600_000))
        assert done["ok"] is True and done["continue"] is False
        assert done["sessions"] == [
            "2025-01-02",
            "2025-01-03",
            "2025-01-06",
            "2025-01-07",
            "2025-01-08",
        ]
        with open_lake() as lake:  # the same lake, through the library: what the handler did
            assert lake.status().to_dict()["latest_landed_session"] == "2025-01-08"
        with pytest.raises(CommandFailed, match=r"exit code 2: .*--date") as bad:
            handler({"command": "fetch", "args": {"date": "2025-13-01"}}, _Context(600_000))
        assert bad.value.exit_code == 2 and bad.value.result is None
    finally:
        shutil.rmtree(root, ignore_errors=True)

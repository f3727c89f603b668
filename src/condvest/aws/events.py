"""Lambda events → validated calls on :class:`condvest.Lake` (pure: no I/O, no clock).

Three shapes are accepted (docs/deploy/lambda.md):

* an EventBridge scheduled event (``"source": "aws.events"``) → the command line in
  ``CONDVEST_LAMBDA_COMMAND`` (default ``fetch``; may carry flags, e.g. ``"run --vacuum"``);
* a direct event ``{"command": "status", "args": {"check": true}}`` → ``status --check``; the
  args are checked against the command's real options, so a typo fails loudly;
* the original fetcher's event (``symbols``, ``date``, ``backfill_missing``, …) → ``fetch`` flags.

Every shape is normalised to the direct form, which is also the event to re-invoke with when a
run stops early (``"continue": true``), and to the command line it stands for (``argv``, logged),
which the CLI's own parser checks and turns into one :class:`LakeCall`: the Lake method and its
keyword arguments (the CLI's option names are the methods' keyword names).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any, Literal

from condvest.core.calendar import years_before
from condvest.errors import UsageError

COMMAND_ENV = "CONDVEST_LAMBDA_COMMAND"
DEFAULT_COMMAND = "fetch"
# Global options an event may set; --output is always json (the handler parses stdout).
GLOBAL_ARGS = frozenset({"lake", "config", "verbose", "quiet"})
LEGACY_FIELDS = (
    "symbols",
    "date",
    "backfill_missing",
    "max_backfill_days",
    "skip_market_check",
    "historical_backfill",
    "years_back",
    "new_symbols_only",
)
EventShape = Literal["scheduled", "direct", "legacy"]


class EventError(UsageError):
    """The Lambda event cannot be turned into a command line."""


@dataclass(frozen=True)
class LakeCall:
    """One call on :class:`condvest.Lake`, with the global options that open the lake."""

    method: str
    """``fetch``, ``sync_db`` (``fetch --sync-db``), ``consolidate``, ``resample``, ``vacuum``,
    ``status`` or ``run``."""
    kwargs: dict[str, Any]
    lake: str | None = None
    config: str | None = None
    verbose: int = 0
    quiet: bool = False
    check: bool = False
    """``status --check``: the invocation fails when the lake is unhealthy."""


@dataclass(frozen=True)
class Invocation:
    """What one event asks for: the call to make, its command line, and how to ask again."""

    shape: EventShape
    command: str
    argv: tuple[str, ...]
    replay: dict[str, Any]
    """The direct event that repeats this invocation (returned with ``"continue": true``)."""
    call: LakeCall
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Things worth a log line (accepted-but-ignored legacy fields)."""

    @property
    def dry_run(self) -> bool:
        return "--dry-run" in self.argv

    def arg(self, name: str) -> Any:
        args = self.replay.get("args", {})
        return args.get(name) if isinstance(args, dict) else None


@cache
def _root_command() -> Any:
    import typer

    from condvest.cli.app import app

    return typer.main.get_command(app)


def command_names() -> list[str]:
    return sorted(_root_command().commands)


def _long_flag(param: Any) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    return max(longs, key=len) if longs else str(param.opts[0])


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return str(value)
    raise EventError(f"args.{key} = {value!r}: expected a string or a number")


def _param_argv(param: Any, key: str, value: Any) -> list[str]:
    """One event arg → CLI tokens, following the option's own kind (flag, count, list)."""
    if value is None:
        return []
    flag = _long_flag(param)
    if param.param_type_name == "argument":
        values = value if isinstance(value, list | tuple) else [value]
        return [_scalar(key, v) for v in values]
    if getattr(param, "count", False):
        if isinstance(value, bool):
            return [flag] if value else []
        if isinstance(value, int) and value >= 0:
            return [flag] * value
        raise EventError(f"args.{key} = {value!r}: expected true/false or a count")
    if param.is_flag:
        if not isinstance(value, bool):
            raise EventError(f"args.{key} = {value!r}: {flag} is a flag; use true or false")
        if value:
            return [flag]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    if isinstance(value, list | tuple):
        items = [_scalar(key, v) for v in value]
        if getattr(param, "multiple", False):
            return [token for item in items for token in (flag, item)]
        return [flag, ",".join(items)]
    return [flag, _scalar(key, value)]


def _params_by_name(params: Sequence[Any]) -> dict[str, Any]:
    # A command's copies of the global options (global_lake, …; cli/global_options) are
    # reached through the root's names ("lake"), never their own.
    return {
        p.name: p
        for p in params
        if p.name
        and p.name not in ("help", "version", "output")
        and not p.name.startswith("global_")
    }


def _sets_output(tokens: Sequence[str]) -> bool:
    """Whether the command line's own tokens choose --output (before any "--")."""
    for token in tokens:
        if token == "--":
            return False
        if token.startswith("--output") or re.fullmatch(r"-[hqv]*o.*", token):
            return True
    return False


def build_argv(command_line: str, args: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
    """``("status --check", {"lake": "/tmp/l"})`` → ``("status", ["--output", "json", "--lake",
    "/tmp/l", "status", "--check"])``. Unknown commands or args raise :class:`EventError`."""
    name, head, rest = _split_argv(command_line, args)
    return name, [*head, name, *rest]


def _split_argv(
    command_line: str, args: Mapping[str, Any] | None
) -> tuple[str, list[str], list[str]]:
    """:func:`build_argv`'s parts: the command, the global options before it, and its own."""
    tokens = shlex.split(command_line or "")
    if not tokens:
        raise EventError("the event names no command", hint=f"one of {', '.join(command_names())}")
    name, extra = tokens[0], tokens[1:]
    root = _root_command()
    command = root.commands.get(name)
    if command is None:
        raise EventError(
            f"unknown command {name!r} in the event",
            hint=f"one of {', '.join(command_names())}",
        )
    if _sets_output(extra):
        raise EventError(
            f"the event's command line {command_line!r} sets --output",
            hint="the Lambda always answers in JSON; drop --output/-o",
        )
    own = _params_by_name(command.params)
    globals_ = {k: v for k, v in _params_by_name(root.params).items() if k in GLOBAL_ARGS}
    head: list[str] = ["--output", "json"]
    tail: list[str] = []
    positional: list[str] = []
    for raw_key, value in (args or {}).items():
        key = str(raw_key).replace("-", "_")
        if key in own:
            param = own[key]
            target = positional if param.param_type_name == "argument" else tail
            target.extend(_param_argv(param, key, value))
        elif key in globals_:
            head.extend(_param_argv(globals_[key], key, value))
        else:
            known = sorted(set(own) | set(globals_))
            raise EventError(
                f"unknown argument {raw_key!r} for condvest {name}",
                hint=f"known: {', '.join(known)}",
            )
    return name, head, [*extra, *tail, *positional]


def lake_call(name: str, head: Sequence[str], own: Sequence[str]) -> LakeCall:
    """The parts of a command line (:func:`build_argv`) → the :class:`LakeCall` it stands for,
    parsed and type-checked by the CLI's own parser (nothing runs); a bad value raises
    :class:`EventError`."""
    import typer
    from typer._click import exceptions as click_exc

    options = list(own)[: list(own).index("--")] if "--" in own else list(own)
    if any(t == "--help" or re.fullmatch(r"-[a-z]*h[a-z]*", t) for t in options):
        raise EventError(f"condvest {name}: --help cannot be invoked from an event")
    root = _root_command()
    try:
        top = root.make_context("condvest", [*head, name])
        command = root.commands[name]
        params = dict(command.make_context(name, list(own), parent=top).params)
    except click_exc.ClickException as exc:
        raise EventError(f"condvest {name}: {exc.format_message()}") from None
    except typer.Exit:  # an eager option (--version) that would print and exit
        raise EventError(f"condvest {name}: the event asks for no call") from None
    globals_ = dict(top.params)
    # The copies of the global options a command line may carry after the command win over
    # those before it, as in the CLI (cli/global_options.apply).
    lake = params.pop("global_lake", None) or globals_.get("lake")
    config = params.pop("global_config", None) or globals_.get("config")
    verbose = int(globals_.get("verbose") or 0) + int(params.pop("global_verbose", 0) or 0)
    quiet = bool(globals_.get("quiet")) or bool(params.pop("global_quiet", False))
    params.pop("global_output", None)
    method, check = name, False
    if name == "fetch" and params.pop("sync_db", False):
        method = "sync_db"
        params = {k: params[k] for k in ("start", "end", "dry_run")}
    params.pop("sync_db", None)
    if name == "status":
        check = bool(params.pop("check", False))
    return LakeCall(
        method,
        params,
        lake=str(lake) if lake is not None else None,
        config=str(config) if config is not None else None,
        verbose=verbose,
        quiet=quiet,
        check=check,
    )


def _invocation(
    shape: EventShape,
    command_line: str,
    args: Mapping[str, Any] | None,
    replay: dict[str, Any],
    notes: Sequence[str] = (),
) -> Invocation:
    name, head, own = _split_argv(command_line, args)
    call = lake_call(name, head, own)
    return Invocation(shape, name, (*head, name, *own), replay, call, tuple(notes))


def _expect(event: Mapping[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = event.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise EventError(f"event field {key} = {value!r}: expected {what}")
    if not isinstance(value, kinds):
        raise EventError(f"event field {key} = {value!r}: expected {what}")
    return value


def legacy_args(event: Mapping[str, Any], today: date) -> tuple[dict[str, Any], list[str]]:
    """The original fetcher's event fields → ``fetch`` options (table in docs/deploy/lambda.md)."""
    args: dict[str, Any] = {}
    notes: list[str] = []
    symbols = _expect(event, "symbols", (str, list), "a list of symbols or 'A,B'")
    if symbols:
        args["symbols"] = symbols if isinstance(symbols, str) else [str(s) for s in symbols]
    day = _expect(event, "date", (str,), "a date YYYY-MM-DD")
    if day:
        args["date"] = day
    backfill = _expect(event, "backfill_missing", (bool,), "true or false")
    max_days = _expect(event, "max_backfill_days", (int,), "a whole number of sessions")
    if backfill is False:
        # The original then fetched only the requested (or latest) session.
        args["max_backfill_days"] = 1
        if max_days is not None:
            notes.append("max_backfill_days ignored: backfill_missing is false")
    elif max_days is not None:
        args["max_backfill_days"] = max_days
    if _expect(event, "skip_market_check", (bool,), "true or false") is not None:
        notes.append("skip_market_check ignored: the trading calendar decides which days to fetch")
    years = _expect(event, "years_back", (int,), "a whole number of years")
    if _expect(event, "historical_backfill", (bool,), "true or false"):
        args["history"] = True
        if years is not None:
            if years < 1:
                raise EventError(f"event field years_back = {years}: must be at least 1")
            args["start"] = years_before(today, years).isoformat()
    elif years is not None:
        notes.append("years_back ignored: historical_backfill is not true")
    if _expect(event, "new_symbols_only", (bool,), "true or false"):
        raise EventError(
            "event field new_symbols_only is not supported",
            hint="a daily fetch already backfills new symbols when fetch.backfill_new_symbols is "
            "on; for specific symbols send historical_backfill with symbols",
        )
    return args, notes


def parse_event(event: Any, *, env: Mapping[str, str], today: date) -> Invocation:
    """Any accepted event → :class:`Invocation`; anything else raises :class:`EventError`."""
    if event is None:
        event = {}
    if not isinstance(event, Mapping):
        raise EventError(f"the event must be a JSON object, got {type(event).__name__}")
    if event.get("source") == "aws.events" or event.get("detail-type") == "Scheduled Event":
        command_line = env.get(COMMAND_ENV, "").strip() or DEFAULT_COMMAND
        return _invocation("scheduled", command_line, None, {"command": command_line, "args": {}})
    if "command" in event:
        extra = sorted(set(event) - {"command", "args"})
        if extra:
            raise EventError(
                f"unexpected field(s) {', '.join(extra)} beside 'command'",
                hint="put command options under 'args'",
            )
        command_line, args = event["command"], event.get("args") or {}
        if not isinstance(command_line, str):
            raise EventError(f"event field command = {command_line!r}: expected a string")
        if not isinstance(args, Mapping):
            raise EventError(f"event field args = {args!r}: expected an object")
        replay = {"command": command_line, "args": dict(args)}
        return _invocation("direct", command_line, args, replay)
    unknown = sorted(set(event) - set(LEGACY_FIELDS))
    if unknown:
        raise EventError(
            f"unrecognised event field(s) {', '.join(unknown)}",
            hint='send {"command": "...", "args": {...}}, a scheduled event, or the original '
            "fetcher's fields: " + ", ".join(LEGACY_FIELDS),
        )
    args, notes = legacy_args(event, today)
    return _invocation("legacy", "fetch", args, {"command": "fetch", "args": args}, notes)

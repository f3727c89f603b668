"""The global options — ``--config``, ``--lake``, ``--output/-o``, ``--verbose/-v``,
``--quiet/-q`` — accepted before *and* after the command (``condvest status -o json`` as well
as ``condvest -o json status``), as aws, gh and kubectl users expect.

Before the command they are the root callback's options (app.py). After it, every command
carries a copy of them (so ``condvest <command> --help`` lists them), parsed by the command's
own parser — ``--lake X``, ``--lake=X``, ``-o json``, ``-ojson``, ``-qv`` and ``--`` (after which
nothing is an option) work as for any option. Given in both places, the later one (after the
command) wins; ``-v`` counts add up and ``-q`` in either place is quiet."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.globals import get_current_context
from typer.core import TyperGroup

from condvest.cli.common import CliState
from condvest.cli.output import OPENMETRICS_COMMANDS, OutputFormat
from condvest.errors import UsageError
from condvest.logging import configure as configure_logging

CONFIG_HELP = "TOML config file (default ./condvest.toml)."
LAKE_HELP = "Lake URI: a local path, file:///path or s3://bucket/prefix."
OUTPUT_HELP = "Result format on stdout: text, json, or openmetrics (status only)."
VERBOSE_HELP = "More logging; tracebacks on errors."
QUIET_HELP = "Only warnings and errors on stderr."

_NAMES = ("global_config", "global_lake", "global_output", "global_verbose", "global_quiet")
"""Parameter names of the copies (distinct from any command's own parameter names)."""


def _copies(
    global_config: Annotated[Path | None, typer.Option("--config", help=CONFIG_HELP)] = None,
    global_lake: Annotated[str | None, typer.Option("--lake", help=LAKE_HELP)] = None,
    global_output: Annotated[
        OutputFormat | None, typer.Option("--output", "-o", help=OUTPUT_HELP)
    ] = None,
    global_verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help=VERBOSE_HELP)
    ] = 0,
    global_quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """Only its signature is used: typer turns it into the option objects every command gets.
    No environment variable here: ``CONDVEST_CONFIG`` is read by the root option alone, so it
    cannot override a ``--config`` given before the command."""


@functools.cache
def _params() -> tuple[Any, ...]:
    probe = typer.Typer(add_completion=False)
    probe.command()(_copies)
    return tuple(typer.main.get_command(probe).params)


def apply(state: CliState, values: dict[str, Any]) -> None:
    """Let options given after the command override (or add to) those given before it."""
    if values.get("global_config") is not None:
        state.config = values["global_config"]
    if values.get("global_lake") is not None:
        state.lake = values["global_lake"]
    if values.get("global_output") is not None:
        state.output = OutputFormat(values["global_output"])
    verbose, quiet = int(values.get("global_verbose") or 0), bool(values.get("global_quiet"))
    if verbose or quiet:
        state.verbose += verbose
        state.quiet = state.quiet or quiet
        configure_logging(verbose=state.verbose, quiet=state.quiet)


def _taking_globals(command: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in _NAMES}
        root = get_current_context().find_root()
        if not isinstance(root.obj, CliState):
            root.obj = CliState()
        apply(root.obj, values)
        refuse_output(command, root.obj.output)
        return callback(**kwargs)

    return run


class GlobalOptionsGroup(TyperGroup):
    """The root group: gives every command the copies of the global options."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.commands.values():
            if command.callback is None:
                continue
            command.params.extend(_params())
            command.callback = _taking_globals(command.name or "", command.callback)


def refuse_output(command: str, output: OutputFormat) -> None:
    """An output format the command cannot render is a usage error before anything runs."""
    if output is OutputFormat.OPENMETRICS and command not in OPENMETRICS_COMMANDS:
        raise UsageError(
            f"--output openmetrics is for condvest status only, not {command}",
            hint="use --output json or text",
        )

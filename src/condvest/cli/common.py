"""Shared by every command: the global options' state, the lake they name, rendering."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer

from condvest.cli.output import OutputFormat, render
from condvest.jobs.base import JobResult
from condvest.lake import DryRun, Lake, open_lake
from condvest.logging import configure as configure_logging
from condvest.logging import redact


@dataclass
class CliState:
    config: Path | None = None
    lake: str | None = None
    output: OutputFormat = OutputFormat.TEXT
    verbose: int = 0
    quiet: bool = False

    def open(self) -> Lake:
        """The lake the global options name (``--lake``, ``--config``; else the settings')."""
        lake = open_lake(self.lake, config=self.config)
        if lake.settings.log.format != "auto":  # the global callback set up "auto" before
            configure_logging(verbose=self.verbose, quiet=self.quiet, fmt=lake.settings.log.format)
        return lake


def state_of(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def emit(state: CliState, data: dict[str, Any], *, title: str) -> None:
    render(data, state.output, title=title)


def finish(
    state: CliState,
    result: JobResult | DryRun[Any],
    *,
    title: str,
    text_hidden: frozenset[str] = frozenset(),
) -> NoReturn:
    """Render ``result`` (or a dry run's plan) and exit with its code (1 when any part failed).
    A database that could not be written is also the run's one ``error:`` line on stderr."""
    render(result.to_dict(), state.output, title=title, text_hidden=text_hidden)
    if isinstance(result, JobResult) and result.database_error:
        sys.stderr.write(f"error: {redact(result.database_error)}\n")
    raise typer.Exit(result.exit_code)


def dry_run_option() -> Any:
    return typer.Option(
        False, "--dry-run", help="Print the plan the real run would execute; change nothing."
    )


def source_option() -> Any:
    """``--source`` of fetch and run (one definition, one help text)."""
    return typer.Option(None, "--source", help="polygon (default) or synthetic (offline demo).")

"""Shared by every command: the global options' state, settings, the job context, rendering."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer

from condvest.cli.output import OutputFormat, render
from condvest.jobs.base import JobContext, JobResult
from condvest.logging import configure as configure_logging
from condvest.logging import redact, register_secret
from condvest.settings import Settings, load_settings


@dataclass
class CliState:
    config: Path | None = None
    lake: str | None = None
    output: OutputFormat = OutputFormat.TEXT
    verbose: int = 0
    quiet: bool = False

    def settings(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (overrides or {}).items()}
        if self.lake is not None:
            merged.setdefault("lake", {})["uri"] = self.lake
        settings = load_settings(config_path=self.config, overrides=merged)
        if settings.log.format != "auto":  # the global callback set up "auto" before settings
            configure_logging(verbose=self.verbose, quiet=self.quiet, fmt=settings.log.format)
        for secret in (settings.polygon.api_key, settings.postgres.dsn):
            if secret is not None:
                register_secret(secret.get_secret_value())
        return settings

    def context(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> JobContext:
        return JobContext.from_settings(self.settings(overrides))


def state_of(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def emit(state: CliState, data: dict[str, Any], *, title: str) -> None:
    render(data, state.output, title=title)


def finish(
    state: CliState, result: JobResult, *, title: str, text_hidden: frozenset[str] = frozenset()
) -> NoReturn:
    """Render ``result`` and exit with its code (1 when any part failed). A database that could
    not be written is also the run's one ``error:`` line on stderr (the Lambda reports it)."""
    render(result.to_dict(), state.output, title=title, text_hidden=text_hidden)
    if result.database_error:
        sys.stderr.write(f"error: {redact(result.database_error)}\n")
    raise typer.Exit(result.exit_code)


def dry_run_option() -> Any:
    return typer.Option(
        False, "--dry-run", help="Print the plan the real run would execute; change nothing."
    )


def source_option() -> Any:
    """``--source`` of fetch and run (one definition, one help text)."""
    return typer.Option(None, "--source", help="polygon (default) or synthetic (offline demo).")

"""The ``condvest`` command line: global options, command registration, error handling."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click import exceptions as click_exc  # typer 0.29 vendors click

from condvest.cli.common import CliState
from condvest.cli.global_options import (
    CONFIG_HELP,
    LAKE_HELP,
    OUTPUT_HELP,
    QUIET_HELP,
    VERBOSE_HELP,
    GlobalOptionsGroup,
)
from condvest.cli.output import OutputFormat
from condvest.errors import CondvestError
from condvest.logging import configure as configure_logging
from condvest.logging import redact
from condvest.version import __version__

app = typer.Typer(
    name="condvest",
    cls=GlobalOptionsGroup,
    help="Keep a stock-market OHLCV data lake: fetch daily bars, compact them, derive N-day bars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"condvest {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="CONDVEST_CONFIG", help=CONFIG_HELP),
    ] = None,
    lake: Annotated[
        str | None,
        typer.Option("--lake", help=LAKE_HELP),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help=OUTPUT_HELP)
    ] = OutputFormat.TEXT,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help=VERBOSE_HELP)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Global options apply to every command; they may also follow it (cli/global_options)."""
    ctx.obj = CliState(config=config, lake=lake, output=output, verbose=verbose, quiet=quiet)
    configure_logging(verbose=verbose, quiet=quiet)


def _register() -> None:
    from condvest.cli import consolidate, fetch, read, report, resample, run, status, vacuum

    for module in (fetch, consolidate, resample, vacuum, status, run, report, read):
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 success, 1 failure, 2 usage/config error."""
    args = sys.argv[1:] if argv is None else argv
    # Decided before parsing, so that a parse-time error can show its traceback too; -v may
    # come before or after the command, but not after "--".
    options = args[: args.index("--")] if "--" in args else args
    verbose = any(a == "--verbose" or re.fullmatch(r"-[a-z]*v[a-z]*", a) for a in options)
    command = typer.main.get_command(app)
    try:
        # With standalone_mode off, click returns typer.Exit's code instead of raising it.
        code = command.main(args=args, prog_name="condvest", standalone_mode=False)
        if isinstance(code, int):
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    except click_exc.ClickException as exc:
        exc.show()
        sys.exit(2)
    except CondvestError as exc:
        if verbose:
            sys.stderr.write(redact(traceback.format_exc()))
        sys.stderr.write(f"error: {redact(str(exc))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        logging.getLogger("condvest").debug("internal error", exc_info=True)
        if verbose:
            sys.stderr.write(redact(traceback.format_exc()))
        detail = f"{type(exc).__name__}: {redact(str(exc))}"
        sys.stderr.write(f"error: internal error: {detail} (run with -v for the traceback)\n")
        sys.exit(1)
    sys.exit(0)

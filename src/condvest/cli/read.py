"""``condvest read daily|bars|actions`` and ``condvest sql``: thin commands over ``Lake.daily``,
``Lake.bars``, ``Lake.splits``/``Lake.dividends`` and ``Lake.sql`` (docs/reading.md); the table
is written by cli/tables."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
import typer

from condvest.cli.common import CliState, state_of
from condvest.cli.output import OutputFormat
from condvest.cli.tables import TableFormat, check_out, write_table
from condvest.errors import UsageError
from condvest.jobs.read import ActionKind, combined_actions
from condvest.lake_values import as_date, as_symbols

if TYPE_CHECKING:
    from condvest.lake import Lake

READ_HELP = (
    "Print daily bars (one row per symbol and session, landed files not yet consolidated "
    "included), N-session bars, or corporate actions (splits, dividends), as a table, csv, "
    "json, ndjson or parquet (--out)."
)
SQL_HELP = (
    "Run one read-only SELECT over the views daily, bars_<N>d (one per built interval), "
    "metadata, splits, dividends and factors (corporate-action adjustment factors)."
)


class ReadWhat(StrEnum):
    DAILY = "daily"
    BARS = "bars"
    ACTIONS = "actions"


def _format(state: CliState, fmt: TableFormat | None) -> TableFormat:
    if fmt is not None:
        return fmt
    return TableFormat.JSON if state.output is OutputFormat.JSON else TableFormat.TABLE


def format_option() -> Any:
    return typer.Option(
        "--format",
        "-f",
        help="table (default; json with -o json), csv, json, ndjson, parquet.",
    )


def out_option() -> Any:
    return typer.Option("--out", help="Write to this file (a temporary sibling renamed in place).")


def force_option() -> Any:
    return typer.Option("--force", help="Replace an existing --out file.")


def _say_missing(requested: list[str] | None, table: pa.Table) -> None:
    if not requested or "symbol" not in table.column_names:
        return
    held = set(table.column("symbol").unique().to_pylist())
    missing = [s for s in requested if s not in held]
    if missing:
        sys.stderr.write(f"no rows for: {', '.join(missing)}\n")


def read_actions(
    lake: Lake,
    kind: ActionKind | None,
    symbols: list[str] | None,
    start: str | None,
    end: str | None,
) -> pa.Table:
    """Splits, dividends (each in its own columns) or both (one table, ACTIONS_SCHEMA)."""
    from condvest.jobs.read import filter_actions

    first, last = as_date(start, "--start"), as_date(end, "--end")
    dividends = lake.dividends(symbols, first, last) if kind is not ActionKind.SPLITS else None
    if kind is ActionKind.DIVIDENDS:
        assert dividends is not None
        return dividends
    splits = filter_actions(lake.splits(), "execution_date", symbols, first, last)
    if kind is ActionKind.SPLITS or dividends is None:
        return splits
    return combined_actions(splits, dividends)


def register(app: typer.Typer) -> None:
    # Long only in its flag declarations (typer reads them from the signature); the body is
    # one Lake call and one render.
    @app.command("read", help=READ_HELP)
    def read(
        ctx: typer.Context,
        what: Annotated[ReadWhat, typer.Argument(help="daily, bars or actions.")],
        interval: Annotated[
            int | None, typer.Option("--interval", help="bars: the bar size in sessions, e.g. 5.")
        ] = None,
        symbols: Annotated[
            str | None, typer.Option("--symbols", help="Only these symbols, e.g. AAPL,BRK.A.")
        ] = None,
        start: Annotated[
            str | None, typer.Option("--start", help="From YYYY-MM-DD (bars: start date).")
        ] = None,
        end: Annotated[str | None, typer.Option("--end", help="Through YYYY-MM-DD.")] = None,
        columns: Annotated[
            str | None,
            typer.Option("--columns", help="daily: only these, e.g. date,close."),
        ] = None,
        include_partial: Annotated[
            bool,
            typer.Option("--include-partial", help="bars: add each symbol's unfinished bar."),
        ] = False,
        adjust: Annotated[
            str,
            typer.Option(
                "--adjust", help="split (default, as stored by default), raw or total_return."
            ),
        ] = "split",
        as_of: Annotated[
            str | None,
            typer.Option("--as-of", help="The series as known on YYYY-MM-DD (no look-ahead)."),
        ] = None,
        kind: Annotated[
            ActionKind | None,
            typer.Option("--kind", help="actions: only splits or only dividends (their columns)."),
        ] = None,
        fmt: Annotated[TableFormat | None, format_option()] = None,
        out: Annotated[Path | None, out_option()] = None,
        force: Annotated[bool, force_option()] = False,
    ) -> None:
        state = state_of(ctx)
        chosen = _format(state, fmt)
        check_out(chosen, out, force)
        requested = as_symbols(symbols)
        if kind is not None and what is not ReadWhat.ACTIONS:
            raise UsageError(
                "--kind is for read actions", hint="condvest read actions --kind splits"
            )
        with state.open() as lake:
            if what is ReadWhat.ACTIONS:
                if interval is not None or include_partial or columns is not None:
                    raise UsageError(
                        "--interval, --include-partial and --columns are not for read actions",
                        hint="select columns with condvest sql",
                    )
                table = read_actions(lake, kind, requested, start, end)
            elif what is ReadWhat.DAILY:
                if interval is not None or include_partial:
                    raise UsageError(
                        "--interval and --include-partial are for read bars",
                        hint="condvest read bars --interval 5",
                    )
                table = lake.daily(requested, start, end, columns, adjust=adjust, as_of=as_of)
            else:
                if interval is None:
                    raise UsageError("read bars needs --interval N", hint="e.g. --interval 5")
                if columns is not None:
                    raise UsageError("--columns is for read daily", hint="select with condvest sql")
                table = lake.bars(
                    interval, requested, start, end, include_partial, adjust=adjust, as_of=as_of
                )
        _say_missing(requested, table)
        title = f"condvest read {what.value}" + (f" {interval}d" if interval else "")
        write_table(table, chosen, out, force=force, title=title)

    @app.command("sql", help=SQL_HELP)
    def sql(
        ctx: typer.Context,
        query: Annotated[str, typer.Argument(help='e.g. "SELECT count(*) FROM daily".')],
        fmt: Annotated[TableFormat | None, format_option()] = None,
        out: Annotated[Path | None, out_option()] = None,
        force: Annotated[bool, force_option()] = False,
    ) -> None:
        import duckdb

        from condvest.jobs.read import sql_error

        state = state_of(ctx)
        chosen = _format(state, fmt)
        check_out(chosen, out, force)
        with state.open() as lake:
            relation = lake.sql(query)
            try:
                table = relation.to_arrow_table()
            except duckdb.Error as exc:  # a run-time error (a bad cast, division by zero)
                raise sql_error(exc) from None
        write_table(table, chosen, out, force=force, title="condvest sql")

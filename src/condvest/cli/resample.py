"""``condvest resample``: N-session bars into silver, incremental (default) or full."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import finish, state_of
from condvest.core.bars import BarAlignment
from condvest.lake import DryRun

HELP = (
    "Build N-session bars (default 3,5,8,13,21,34) from bronze into silver. Incremental by "
    "default: only month partitions whose bars changed are rewritten; the result always equals "
    "a full rebuild."
)


def register(app: typer.Typer) -> None:
    @app.command("resample", help=HELP)
    def resample(
        ctx: typer.Context,
        intervals: Annotated[
            str | None,
            typer.Option(
                "--intervals", help="Bar sizes in sessions, e.g. 3,5 (default: settings)."
            ),
        ] = None,
        alignment: Annotated[
            BarAlignment | None,
            typer.Option("--alignment", help="calendar (shared boundaries) or rows (per symbol)."),
        ] = None,
        full: Annotated[
            bool, typer.Option("--full", help="Rebuild every interval; remove stale months.")
        ] = False,
        include_partial: Annotated[
            bool,
            typer.Option("--include-partial", help="Also write bars whose window is not over."),
        ] = False,
        since: Annotated[
            str | None,
            typer.Option("--since", help="Only bars starting on/after YYYY-MM-DD (output only)."),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run", help="Print the plan the real run would execute; change nothing."
            ),
        ] = False,
    ) -> None:
        state = state_of(ctx)
        with state.open() as lake:
            result = lake.resample(
                intervals=intervals,
                alignment=alignment,
                full=full,
                include_partial=include_partial,
                since=since,
                dry_run=dry_run,
            )
        dry = " (dry run)" if isinstance(result, DryRun) else ""
        finish(state, result, title=f"condvest resample{dry}")

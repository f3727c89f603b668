"""``condvest resample``: N-session bars into silver, incremental (default) or full."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import emit, finish, state_of
from condvest.core.bars import BarAlignment
from condvest.core.calendar import parse_date
from condvest.errors import UsageError
from condvest.jobs.resample import ResampleOptions, plan_resample, run_resample

HELP = (
    "Build N-session bars (default 3,5,8,13,21,34) from bronze into silver. Incremental by "
    "default: only month partitions whose bars changed are rewritten; the result always equals "
    "a full rebuild."
)


def _intervals(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(
            f"--intervals {text!r} is not a list of numbers", hint="pass e.g. --intervals 3,5,8"
        ) from None
    if not values or any(n < 2 or n > 1000 for n in values):
        raise UsageError(
            f"--intervals {text!r}: each interval must be between 2 and 1000 sessions",
            hint="pass e.g. --intervals 3,5,8",
        )
    return values


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
        options = ResampleOptions(
            intervals=_intervals(intervals),
            alignment=alignment,
            full=full,
            include_partial=include_partial,
            since=parse_date(since, option="--since") if since is not None else None,
            dry_run=dry_run,
        )
        job = state.context()
        plan = plan_resample(job, options)
        if dry_run:
            emit(state, plan.to_dict(), title="condvest resample (dry run)")
            raise typer.Exit(0)
        finish(state, run_resample(job, plan), title="condvest resample")

"""``condvest run``: the daily pipeline (fetch → consolidate → resample → vacuum if asked)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from condvest.cli.common import dry_run_option, emit, finish, source_option, state_of
from condvest.jobs.run import RunOptions, plan_run, preview_run, run_run
from condvest.settings import SourceKind

HELP = (
    "The daily pipeline in one process: fetch, consolidate, resample (and vacuum with "
    "--vacuum), stopping at the first failed stage with exit 1 and a result per stage."
)


def register(app: typer.Typer) -> None:
    @app.command("run", help=HELP)
    def run(
        ctx: typer.Context,
        source: SourceKind | None = source_option(),
        vacuum: Annotated[
            bool, typer.Option("--vacuum", help="Run vacuum after resample.")
        ] = False,
        dry_run: bool = dry_run_option(),
    ) -> None:
        state = state_of(ctx)
        overrides: dict[str, dict[str, Any]] = {"fetch": {"source": source}}
        job = state.context(overrides)
        plan = plan_run(job, RunOptions(vacuum=vacuum))
        if dry_run:
            emit(
                state,
                {"dry_run": True, "stages": list(plan.stages), "plans": preview_run(job, plan)},
                title="condvest run (plan; --output json shows each stage's plan in full)",
            )
            raise typer.Exit(0)
        finish(
            state,
            run_run(job, plan),
            title="condvest run",
            text_hidden=frozenset({"results"}),
        )

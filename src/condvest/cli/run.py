"""``condvest run``: the daily pipeline (fetch → consolidate → resample → vacuum if asked)."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import dry_run_option, finish, source_option, state_of
from condvest.lake import DryRun
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
        with state.open() as lake:
            result = lake.run(source=source, vacuum=vacuum, dry_run=dry_run)
        if isinstance(result, DryRun):
            finish(
                state,
                result,
                title="condvest run (plan; --output json shows each stage's plan in full)",
            )
        finish(state, result, title="condvest run", text_hidden=frozenset({"results"}))

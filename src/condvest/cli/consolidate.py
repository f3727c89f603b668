"""``condvest consolidate``: merge date= files into data.parquet, then clean up."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import dry_run_option, finish, state_of
from condvest.settings import ConsolidateMode

HELP = (
    "Merge each symbol's date= files into its data.parquet (verified, atomic), record it in the "
    "manifest, then delete merged date files older than the retention window."
)


def register(app: typer.Typer) -> None:
    @app.command("consolidate", help=HELP)
    def consolidate(
        ctx: typer.Context,
        mode: Annotated[
            ConsolidateMode | None,
            typer.Option(
                "--mode", help="incremental (pending files only) or full (every file; lists all)."
            ),
        ] = None,
        symbols: Annotated[
            str | None, typer.Option("--symbols", help="Only these symbols, e.g. AAPL,BRK.A.")
        ] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", help="Symbols merged in parallel.")
        ] = None,
        retention_days: Annotated[
            int | None,
            typer.Option("--retention-days", help="Keep merged date= files this many days."),
        ] = None,
        skip_cleanup: Annotated[
            bool, typer.Option("--skip-cleanup", help="Merge only; delete no date= file.")
        ] = False,
        shard: Annotated[
            str | None,
            typer.Option(
                "--shard",
                help="K/N: only shard K of N (default: K from AWS_BATCH_JOB_ARRAY_INDEX when "
                "--shards is given).",
            ),
        ] = None,
        shards: Annotated[
            int | None,
            typer.Option(
                "--shards",
                help="N: the shard count of an AWS Batch array job (its size); each child takes "
                "shard AWS_BATCH_JOB_ARRAY_INDEX, a job without one takes every symbol "
                "(consolidate.shards).",
            ),
        ] = None,
        dry_run: bool = dry_run_option(),
    ) -> None:
        state = state_of(ctx)
        with state.open() as lake:
            result = lake.consolidate(
                mode=mode,
                symbols=symbols,
                workers=workers,
                retention_days=retention_days,
                skip_cleanup=skip_cleanup,
                shard=shard,
                shards=shards,
                dry_run=dry_run,
            )
        finish(state, result, title="condvest consolidate")

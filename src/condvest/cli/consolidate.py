"""``condvest consolidate``: merge date= files into data.parquet, then clean up."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import dry_run_option, finish, state_of
from condvest.core.layout import parse_symbols
from condvest.core.retention import parse_shard
from condvest.jobs.consolidate import ConsolidateOptions, plan_consolidate, run_consolidate
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
        options = ConsolidateOptions(
            mode=mode,
            symbols=parse_symbols(symbols),
            workers=workers,
            retention_days=retention_days,
            skip_cleanup=True if skip_cleanup else None,
            shard=parse_shard(shard) if shard is not None else None,
            shards=shards,
            dry_run=dry_run,
        )
        job = state.context()
        result = run_consolidate(job, plan_consolidate(job, options))
        finish(state, result, title="condvest consolidate")

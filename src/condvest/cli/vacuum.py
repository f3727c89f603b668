"""``condvest vacuum``: delete superseded date= files and stale temporary files."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import dry_run_option, finish, state_of

HELP = (
    "Delete date= files older than the retention window whose rows are verified in data.parquet, "
    "and temporary files of crashed writes. Never deletes the only copy of a row."
)


def register(app: typer.Typer) -> None:
    @app.command("vacuum", help=HELP)
    def vacuum(
        ctx: typer.Context,
        symbols: Annotated[
            str | None, typer.Option("--symbols", help="Only these symbols, e.g. AAPL,BRK.A.")
        ] = None,
        retention_days: Annotated[
            int | None,
            typer.Option(
                "--retention-days",
                help="Delete verified date= files older than this many days "
                "(default: consolidate.retention_days).",
            ),
        ] = None,
        force: Annotated[
            bool,
            typer.Option("--force", help="Allow a retention below vacuum.min_retention_days."),
        ] = False,
        db_retention_days: Annotated[
            int | None,
            typer.Option(
                "--db-retention-days",
                min=1,
                help="Also delete PostgreSQL raw_ohlcv rows older than this many days "
                "(the lake keeps them; default: vacuum.db_retention_days).",
            ),
        ] = None,
        dry_run: bool = dry_run_option(),
    ) -> None:
        state = state_of(ctx)
        with state.open() as lake:
            result = lake.vacuum(
                symbols=symbols,
                retention_days=retention_days,
                force=force,
                db_retention_days=db_retention_days,
                dry_run=dry_run,
            )
        finish(state, result, title="condvest vacuum")

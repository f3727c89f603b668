"""``condvest status``: freshness, missing sessions, pending files, silver coverage, last runs."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import emit, state_of
from condvest.jobs.status import check_failed, run_status

HELP = (
    "One health view: freshness, missing sessions, pending files, silver coverage, last runs, "
    "quarantine, and the PostgreSQL cache when on. --check exits 1 when the lake is stale, a "
    "last run failed or the database is behind (for alarms)."
)


def register(app: typer.Typer) -> None:
    @app.command("status", help=HELP)
    def status(
        ctx: typer.Context,
        check: Annotated[
            bool,
            typer.Option("--check", help="Exit 1 when the lake is stale or a last run failed."),
        ] = False,
        init_db: Annotated[
            bool,
            typer.Option(
                "--init-db",
                help="Create or upgrade the PostgreSQL tables first (needs postgres.dsn or "
                "RDS_SECRET_ARN); reports the schema version.",
            ),
        ] = False,
    ) -> None:
        state = state_of(ctx)
        result = run_status(state.context(), init_db=init_db)
        emit(state, result.to_dict(), title="condvest status")
        raise typer.Exit(1 if check and check_failed(result) else 0)

"""``condvest status``: freshness, missing sessions, pending files, silver coverage, last runs."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from condvest.cli.common import emit, state_of
from condvest.cli.output import OutputFormat
from condvest.lake import check_failed
from condvest.metrics import health_metrics, openmetrics_text

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
        with state.open() as lake:
            result = lake.status(init_db=init_db)
        data = result.to_dict()
        if state.output is OutputFormat.OPENMETRICS:
            sys.stdout.write(openmetrics_text(result.lake, health_metrics(data)))
            sys.stdout.flush()
            raise typer.Exit(1 if check and check_failed(result) else 0)
        if state.output is OutputFormat.TEXT:
            data = _compact_parts(data)
            data.pop("problem_list", None)  # the problems' kinds: JSON only (text shows them)
        emit(state, data, title="condvest status")
        raise typer.Exit(1 if check and check_failed(result) else 0)


def _compact_parts(data: dict[str, Any]) -> dict[str, Any]:
    """For the terminal: each shard's last run as one line ("shard-0-of-2 failed (<run id>)")
    instead of a nested dict in a table cell, and a stage's last success only when its last
    run did not succeed; JSON keeps the full records."""
    runs = {}
    for stage, view in (data.get("runs") or {}).items():
        view = view or {}
        if view.get("outcome") == "success" or not view.get("last_success_at"):
            # says something only when the last run did not succeed (a column fewer)
            view = {k: v for k, v in view.items() if k != "last_success_at"}
        parts = view.get("parts")
        if isinstance(parts, dict):
            lines = [
                f"{scope} {p.get('outcome')} ({p.get('run_id')})" for scope, p in parts.items()
            ]
            view = {**view, "parts": lines}
        runs[stage] = view
    return {**data, "runs": runs} if runs else data

"""``condvest fetch``: daily sessions (backfill planner), --history, --meta,
--corporate-actions; see docs/commands/fetch.md."""

from __future__ import annotations

from typing import Annotated

import typer

from condvest.cli.common import dry_run_option, finish, source_option, state_of
from condvest.lake import DryRun
from condvest.settings import SourceKind

HELP = (
    "Fetch daily OHLCV for missing trading sessions (one grouped-daily request per session), "
    "per-symbol history (--history), symbol metadata (--meta), splits and dividends "
    "(--corporate-actions); restate split symbols."
)


def register(app: typer.Typer) -> None:
    @app.command("fetch", help=HELP)
    def fetch(
        ctx: typer.Context,
        date: Annotated[
            str | None, typer.Option("--date", help="Fetch this one session (YYYY-MM-DD).")
        ] = None,
        start: Annotated[
            str | None,
            typer.Option("--start", help="First session of a bounded backfill / history start."),
        ] = None,
        end: Annotated[
            str | None,
            typer.Option("--end", help="Last session of the range (default: latest completed)."),
        ] = None,
        max_backfill_days: Annotated[
            int | None,
            typer.Option(
                "--max-backfill-days",
                min=1,
                help="Largest gap (sessions) fetched without --start; a larger one is reported.",
            ),
        ] = None,
        symbols: Annotated[
            str | None,
            typer.Option("--symbols", help="Comma-separated tickers: restrict what is written."),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Re-fetch sessions already landed.")
        ] = False,
        source: SourceKind | None = source_option(),
        history: Annotated[
            bool,
            typer.Option("--history", help="Fetch --symbols' daily history into data.parquet."),
        ] = False,
        meta: Annotated[
            bool, typer.Option("--meta", help="Fetch the ticker list and symbol details.")
        ] = False,
        corporate_actions: Annotated[
            bool,
            typer.Option(
                "--corporate-actions",
                help="Backfill splits and dividends over --start/--end for the whole lake "
                "(or --symbols).",
            ),
        ] = False,
        sync_db: Annotated[
            bool,
            typer.Option(
                "--sync-db",
                help="Copy landed sessions the PostgreSQL cache lacks from the lake "
                "(with --start/--end: re-sync that range).",
            ),
        ] = False,
        dry_run: bool = dry_run_option(),
    ) -> None:
        state = state_of(ctx)
        with state.open() as lake:
            if sync_db:
                synced = lake.sync_db(start=start, end=end, dry_run=dry_run)
                plan = " (plan)" if isinstance(synced, DryRun) else ""
                finish(state, synced, title=f"condvest fetch --sync-db{plan}")
            result = lake.fetch(
                date=date,
                start=start,
                end=end,
                max_backfill_days=max_backfill_days,
                symbols=symbols,
                force=force,
                source=source,
                history=history,
                meta=meta,
                corporate_actions=corporate_actions,
                dry_run=dry_run,
            )
        plan = " (plan)" if isinstance(result, DryRun) else ""
        finish(state, result, title=f"condvest fetch{plan}")

"""``condvest fetch``: daily sessions (backfill planner), --history, --meta; see
docs/commands/fetch.md."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from condvest.cli.common import CliState, dry_run_option, emit, finish, source_option, state_of
from condvest.core.calendar import parse_date
from condvest.core.layout import parse_symbols
from condvest.errors import UsageError
from condvest.jobs.base import JobContext, run_stage
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.settings import SourceKind

HELP = (
    "Fetch daily OHLCV for missing trading sessions (one grouped-daily request per session), "
    "per-symbol history (--history), symbol metadata (--meta); restate split symbols."
)


def _sync_db(
    state: CliState, job: JobContext, start: str | None, end: str | None, dry_run: bool
) -> NoReturn:
    from condvest.jobs.dbsync import plan_db_sync, run_db_sync

    sink = job.sink()
    if sink is None:
        raise UsageError("--sync-db needs PostgreSQL", hint="set postgres.dsn or RDS_SECRET_ARN")
    first = parse_date(start, option="--start") if start else None
    last = parse_date(end, option="--end") if end else None
    plan = plan_db_sync(job, sink, start=first, end=last)
    if dry_run:
        emit(
            state,
            {
                "dry_run": True,
                "db_watermark": plan.db_watermark,
                "sessions": [d.isoformat() for d in plan.sessions],
                "symbols": len(plan.work),
                "date_files": plan.date_files,
                "data_files": plan.data_files,
            },
            title="condvest fetch --sync-db (plan)",
        )
        raise typer.Exit(0)
    result = run_stage(job, "fetch", lambda _lock: run_db_sync(job, sink, plan=plan))
    finish(state, result, title="condvest fetch --sync-db")


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
        overrides: dict[str, dict[str, Any]] = {"fetch": {"source": source}}
        job = state.context(overrides)
        if sync_db:
            _sync_db(state, job, start, end, dry_run)
        options = FetchOptions(
            day=parse_date(date, option="--date") if date else None,
            start=parse_date(start, option="--start") if start else None,
            end=parse_date(end, option="--end") if end else None,
            max_backfill_days=max_backfill_days,
            symbols=parse_symbols(symbols),
            force=force,
            history=history,
            meta=meta,
        )
        plan = plan_fetch(job, options)
        if dry_run:
            emit(state, {"dry_run": True, **plan.to_dict()}, title="condvest fetch (plan)")
            raise typer.Exit(0)
        finish(state, run_fetch(job, plan), title="condvest fetch")

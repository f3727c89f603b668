"""The front door: :func:`open_lake` and :class:`Lake` run every stage from Python.

The CLI (``condvest.cli``) and the Lambda handler (``condvest.aws``) are thin layers over this
module: each command parses its flags, calls one :class:`Lake` method and renders the result.
See docs/python-api.md for examples and docs/design.md for what the stages guarantee.

The ``@overload`` stubs (about 200 lines) only tell a type checker that ``dry_run=True`` returns a
:class:`DryRun` and the default the stage's result; each stage's code is its last definition."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from condvest.core.bars import BarAlignment
from condvest.errors import UsageError
from condvest.jobs.base import DEADLINE, JobContext, new_run_id, run_stage
from condvest.jobs.consolidate import ConsolidatePlan, ConsolidateResult
from condvest.jobs.fetch import DbSyncPlan, DbSyncResult, FetchPlan, FetchResult
from condvest.jobs.resample import ResamplePlan, ResampleResult
from condvest.jobs.run import RunPlan, RunResult
from condvest.jobs.status import StatusResult, check_failed
from condvest.jobs.vacuum import VacuumPlan, VacuumResult
from condvest.lake_read import LakeReads
from condvest.lake_values import (
    DryRun,
    as_date,
    as_enum,
    as_intervals,
    as_positive,
    as_shard,
    as_symbols,
    settings_overrides,
)
from condvest.logging import register_secret
from condvest.report import HealthReport
from condvest.settings import ConsolidateMode, Settings, SourceKind, load_settings


def open_lake(
    uri: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    **settings: Any,
) -> Lake:
    """Open the lake at ``uri`` (a local path, ``file:///path`` or ``s3://bucket/prefix``).

    Settings come, highest first, from the keyword arguments, the environment
    (``CONDVEST_<SECTION>__<KEY>``), the TOML file ``config`` (default ``$CONDVEST_CONFIG`` or
    ``./condvest.toml``) and the defaults: the CLI's precedence, with keyword arguments in the
    place of flags. ``uri`` None means ``lake.uri`` from those settings.

    Overrides are flat, ``fetch__source="synthetic"``, or one mapping per section,
    ``fetch={"source": "synthetic"}``; an unknown name raises :class:`TypeError` and a bad
    value :class:`condvest.errors.ConfigError`.

    Use it as a context manager (``with open_lake(...) as lake:``), or call
    :meth:`Lake.close`: the lake owns its storage and database connection."""
    overrides = settings_overrides(settings)
    if uri is not None:
        if "uri" in overrides.get("lake", {}):
            raise TypeError("the lake URI is given twice: as uri and as lake__uri / lake=")
        overrides.setdefault("lake", {})["uri"] = os.fspath(uri)
    loaded = load_settings(
        config_path=Path(config) if config is not None else None, overrides=overrides
    )
    for secret in (loaded.polygon.api_key, loaded.postgres.dsn):
        if secret is not None:
            register_secret(secret.get_secret_value())  # never printed or logged in clear
    return Lake(JobContext.from_settings(loaded))


class Lake(LakeReads):
    """An open lake: one method per stage, returning the result the CLI renders.

    Each stage method takes keyword arguments named as the CLI's flags (``--max-backfill-days``
    is ``max_backfill_days``); dates may be :class:`datetime.date` or ``"YYYY-MM-DD"``, lists a
    sequence or ``"A,B"``. A failed stage returns a result with ``ok`` False (``exit_code``
    1), as the CLI exits 1; a refused call (bad value, lock held, clock behind) raises a
    :class:`condvest.errors.CondvestError` subclass whose ``exit_code`` the CLI would exit
    with. The read methods (``daily``, ``bars``, ``sql``, ...) come from
    :class:`condvest.lake_read.LakeReads` (docs/reading.md)."""

    def __init__(self, context: JobContext) -> None:
        """Wrap a job context (tests swap its ``clock``); :func:`open_lake` builds one."""
        self._ctx = context
        self._calls = 0
        self._closed = False

    # -- lifetime ----------------------------------------------------------------------------
    def __enter__(self) -> Lake:
        """``with open_lake(...) as lake:`` — the lake is closed when the block ends."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the lake, whether the block ended normally or raised (the error propagates)."""
        self.close()

    def close(self) -> None:
        """Release the database connection (if one was opened); safe to call twice."""
        self._ctx.close()
        self._closed = True

    def __repr__(self) -> str:
        state = " (closed)" if self._closed else ""
        return f"<condvest.Lake {self.uri}{state}>"

    @property
    def uri(self) -> str:
        """The lake's URI, as configured."""
        return self._ctx.settings.lake.uri

    @property
    def settings(self) -> Settings:
        """The settings in effect (defaults < config file < environment < overrides)."""
        return self._ctx.settings

    @property
    def context(self) -> JobContext:
        """The job context the stages run in (storage, calendar, clock, sinks)."""
        return self._ctx

    def _job(self) -> JobContext:
        """The context for the next call: each call after the first is a run of its own."""
        if self._closed:
            raise UsageError(f"the lake {self.uri} is closed", hint="open it again")
        self._calls += 1
        if self._calls > 1:
            self._ctx.run_id = new_run_id()
        deadline = DEADLINE.get()
        if deadline is not None:  # set by the Lambda handler around the call
            self._ctx.deadline = deadline
        return self._ctx

    def _with_source(self, source: SourceKind | str | None) -> _SourceSwap:
        return _SourceSwap(self._ctx, as_enum(SourceKind, source, "--source"))

    # -- stages ------------------------------------------------------------------------------
    @overload
    def fetch(
        self,
        *,
        date: dt.date | str | None = ...,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        max_backfill_days: int | None = ...,
        symbols: str | Sequence[str] | None = ...,
        force: bool = ...,
        source: SourceKind | str | None = ...,
        history: bool = ...,
        meta: bool = ...,
        corporate_actions: bool = ...,
        dry_run: Literal[False] = ...,
    ) -> FetchResult: ...
    @overload
    def fetch(
        self,
        *,
        date: dt.date | str | None = ...,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        max_backfill_days: int | None = ...,
        symbols: str | Sequence[str] | None = ...,
        force: bool = ...,
        source: SourceKind | str | None = ...,
        history: bool = ...,
        meta: bool = ...,
        corporate_actions: bool = ...,
        dry_run: Literal[True],
    ) -> DryRun[FetchPlan]: ...
    @overload
    def fetch(
        self,
        *,
        date: dt.date | str | None = ...,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        max_backfill_days: int | None = ...,
        symbols: str | Sequence[str] | None = ...,
        force: bool = ...,
        source: SourceKind | str | None = ...,
        history: bool = ...,
        meta: bool = ...,
        corporate_actions: bool = ...,
        dry_run: bool = ...,
    ) -> FetchResult | DryRun[FetchPlan]: ...
    def fetch(
        self,
        *,
        date: dt.date | str | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        max_backfill_days: int | None = None,
        symbols: str | Sequence[str] | None = None,
        force: bool = False,
        source: SourceKind | str | None = None,
        history: bool = False,
        meta: bool = False,
        corporate_actions: bool = False,
        dry_run: bool = False,
    ) -> FetchResult | DryRun[FetchPlan]:
        """Land daily bars (``condvest fetch``; docs/commands/fetch.md).

        Without arguments: every completed session the lake lacks, up to
        ``fetch.max_backfill_days``. ``date`` fetches one session, ``start``/``end`` a bounded
        range; ``history`` fetches ``symbols``' daily history into their data files, ``meta`` the
        ticker list and details, ``corporate_actions`` the splits and dividends of
        ``start``..``end`` (default: ``fetch.history_years`` back) for the whole lake (or
        ``symbols``). ``force`` re-fetches landed sessions; ``source`` is ``"polygon"`` or
        ``"synthetic"`` (default ``fetch.source``)."""
        from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch

        options = FetchOptions(
            day=as_date(date, "--date"),
            start=as_date(start, "--start"),
            end=as_date(end, "--end"),
            max_backfill_days=as_positive(max_backfill_days, "--max-backfill-days"),
            symbols=as_symbols(symbols),
            force=force,
            history=history,
            meta=meta,
            corporate_actions=corporate_actions,
        )
        job = self._job()
        with self._with_source(source):
            plan = plan_fetch(job, options)
            if dry_run:
                return DryRun("fetch", plan, {"dry_run": True, **plan.to_dict()})
            return run_fetch(job, plan)

    @overload
    def sync_db(
        self,
        *,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        dry_run: Literal[False] = ...,
    ) -> DbSyncResult: ...
    @overload
    def sync_db(
        self,
        *,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        dry_run: Literal[True],
    ) -> DryRun[DbSyncPlan]: ...
    @overload
    def sync_db(
        self,
        *,
        start: dt.date | str | None = ...,
        end: dt.date | str | None = ...,
        dry_run: bool = ...,
    ) -> DbSyncResult | DryRun[DbSyncPlan]: ...
    def sync_db(
        self,
        *,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        dry_run: bool = False,
    ) -> DbSyncResult | DryRun[DbSyncPlan]:
        """Copy landed sessions the PostgreSQL cache lacks from the lake (``fetch --sync-db``);
        ``start``/``end`` re-sync that range. Needs ``postgres.dsn`` or ``RDS_SECRET_ARN``."""
        from condvest.jobs.fetch import plan_db_sync, run_db_sync

        job = self._job()
        sink = job.sink()
        if sink is None:
            raise UsageError(
                "--sync-db needs PostgreSQL", hint="set postgres.dsn or RDS_SECRET_ARN"
            )
        plan = plan_db_sync(job, sink, start=as_date(start, "--start"), end=as_date(end, "--end"))
        if dry_run:
            preview = {
                "dry_run": True,
                "db_watermark": plan.db_watermark,
                "sessions": [d.isoformat() for d in plan.sessions],
                "symbols": len(plan.work),
                "date_files": plan.date_files,
                "data_files": plan.data_files,
            }
            return DryRun("fetch", plan, preview)
        return run_stage(job, "fetch", lambda _lock: run_db_sync(job, sink, plan=plan))

    @overload
    def consolidate(
        self,
        *,
        mode: ConsolidateMode | str | None = ...,
        symbols: str | Sequence[str] | None = ...,
        workers: int | None = ...,
        retention_days: int | None = ...,
        skip_cleanup: bool = ...,
        shard: str | tuple[int, int] | None = ...,
        shards: int | None = ...,
        dry_run: Literal[False] = ...,
    ) -> ConsolidateResult: ...
    @overload
    def consolidate(
        self,
        *,
        mode: ConsolidateMode | str | None = ...,
        symbols: str | Sequence[str] | None = ...,
        workers: int | None = ...,
        retention_days: int | None = ...,
        skip_cleanup: bool = ...,
        shard: str | tuple[int, int] | None = ...,
        shards: int | None = ...,
        dry_run: Literal[True],
    ) -> DryRun[ConsolidatePlan]: ...
    @overload
    def consolidate(
        self,
        *,
        mode: ConsolidateMode | str | None = ...,
        symbols: str | Sequence[str] | None = ...,
        workers: int | None = ...,
        retention_days: int | None = ...,
        skip_cleanup: bool = ...,
        shard: str | tuple[int, int] | None = ...,
        shards: int | None = ...,
        dry_run: bool = ...,
    ) -> ConsolidateResult | DryRun[ConsolidatePlan]: ...
    def consolidate(
        self,
        *,
        mode: ConsolidateMode | str | None = None,
        symbols: str | Sequence[str] | None = None,
        workers: int | None = None,
        retention_days: int | None = None,
        skip_cleanup: bool = False,
        shard: str | tuple[int, int] | None = None,
        shards: int | None = None,
        dry_run: bool = False,
    ) -> ConsolidateResult | DryRun[ConsolidatePlan]:
        """Merge date files into each symbol's data file (``condvest consolidate``).

        ``mode`` is ``"incremental"`` (pending files only) or ``"full"``; ``retention_days`` keeps
        merged date files that long, ``skip_cleanup`` deletes none. ``shard`` (``"K/N"`` or
        ``(K, N)``) takes one shard of the symbols; ``shards`` N takes the shard of
        ``AWS_BATCH_JOB_ARRAY_INDEX`` (docs/commands/consolidate.md)."""
        from condvest.jobs.consolidate import (
            ConsolidateOptions,
            plan_consolidate,
            run_consolidate,
        )

        options = ConsolidateOptions(
            mode=as_enum(ConsolidateMode, mode, "--mode"),
            symbols=as_symbols(symbols),
            workers=workers,
            retention_days=retention_days,
            skip_cleanup=True if skip_cleanup else None,
            shard=as_shard(shard),
            shards=shards,
            dry_run=dry_run,
        )
        job = self._job()
        plan = plan_consolidate(job, options)
        if dry_run:
            preview = run_consolidate(job, plan).to_dict()  # a dry plan only renders
            return DryRun("consolidate", dataclasses.replace(plan, dry_run=False), preview)
        return run_consolidate(job, plan)

    @overload
    def resample(
        self,
        *,
        intervals: str | Sequence[int] | None = ...,
        alignment: BarAlignment | str | None = ...,
        full: bool = ...,
        include_partial: bool = ...,
        since: dt.date | str | None = ...,
        dry_run: Literal[False] = ...,
    ) -> ResampleResult: ...
    @overload
    def resample(
        self,
        *,
        intervals: str | Sequence[int] | None = ...,
        alignment: BarAlignment | str | None = ...,
        full: bool = ...,
        include_partial: bool = ...,
        since: dt.date | str | None = ...,
        dry_run: Literal[True],
    ) -> DryRun[ResamplePlan]: ...
    @overload
    def resample(
        self,
        *,
        intervals: str | Sequence[int] | None = ...,
        alignment: BarAlignment | str | None = ...,
        full: bool = ...,
        include_partial: bool = ...,
        since: dt.date | str | None = ...,
        dry_run: bool = ...,
    ) -> ResampleResult | DryRun[ResamplePlan]: ...
    def resample(
        self,
        *,
        intervals: str | Sequence[int] | None = None,
        alignment: BarAlignment | str | None = None,
        full: bool = False,
        include_partial: bool = False,
        since: dt.date | str | None = None,
        dry_run: bool = False,
    ) -> ResampleResult | DryRun[ResamplePlan]:
        """Build N-session bars into silver (``condvest resample``).

        ``intervals`` (e.g. ``(3, 5)`` or ``"3,5"``; default ``resample.intervals``),
        ``alignment`` ``"calendar"`` or ``"rows"``; ``full`` rebuilds every interval,
        ``include_partial`` also writes bars whose window is not over, ``since`` limits the
        output to bars starting on or after that date (docs/commands/resample.md)."""
        from condvest.jobs.resample import ResampleOptions, plan_resample, run_resample

        options = ResampleOptions(
            intervals=as_intervals(intervals),
            alignment=as_enum(BarAlignment, alignment, "--alignment"),
            full=full,
            include_partial=include_partial,
            since=as_date(since, "--since"),
            dry_run=dry_run,
        )
        job = self._job()
        plan = plan_resample(job, options)
        if dry_run:
            return DryRun("resample", dataclasses.replace(plan, dry_run=False), plan.to_dict())
        return run_resample(job, plan)

    @overload
    def vacuum(
        self,
        *,
        symbols: str | Sequence[str] | None = ...,
        retention_days: int | None = ...,
        force: bool = ...,
        db_retention_days: int | None = ...,
        dry_run: Literal[False] = ...,
    ) -> VacuumResult: ...
    @overload
    def vacuum(
        self,
        *,
        symbols: str | Sequence[str] | None = ...,
        retention_days: int | None = ...,
        force: bool = ...,
        db_retention_days: int | None = ...,
        dry_run: Literal[True],
    ) -> DryRun[VacuumPlan]: ...
    @overload
    def vacuum(
        self,
        *,
        symbols: str | Sequence[str] | None = ...,
        retention_days: int | None = ...,
        force: bool = ...,
        db_retention_days: int | None = ...,
        dry_run: bool = ...,
    ) -> VacuumResult | DryRun[VacuumPlan]: ...
    def vacuum(
        self,
        *,
        symbols: str | Sequence[str] | None = None,
        retention_days: int | None = None,
        force: bool = False,
        db_retention_days: int | None = None,
        dry_run: bool = False,
    ) -> VacuumResult | DryRun[VacuumPlan]:
        """Delete verified date files older than ``retention_days`` and temporary files of
        crashed writes (``condvest vacuum``); never the only copy of a row. ``force`` allows a
        retention below ``vacuum.min_retention_days``; ``db_retention_days`` also trims the
        PostgreSQL cache (docs/commands/vacuum.md)."""
        from condvest.jobs.vacuum import VacuumOptions, plan_vacuum, run_vacuum

        options = VacuumOptions(
            symbols=as_symbols(symbols),
            retention_days=retention_days,
            force=force,
            dry_run=dry_run,
            db_retention_days=as_positive(db_retention_days, "--db-retention-days"),
        )
        job = self._job()
        plan = plan_vacuum(job, options)
        if dry_run:
            preview = run_vacuum(job, plan).to_dict()  # a dry plan only renders
            return DryRun("vacuum", dataclasses.replace(plan, dry_run=False), preview)
        return run_vacuum(job, plan)

    def status(self, *, init_db: bool = False) -> StatusResult:
        """The health view (``condvest status``): freshness, missing sessions, pending files,
        silver coverage, last runs, the PostgreSQL cache when on. Read-only, except that
        ``init_db`` first creates or upgrades the PostgreSQL tables. ``status --check``'s
        verdict on it is :func:`check_failed`."""
        from condvest.jobs.status import run_status

        return run_status(self._job(), init_db=init_db)

    def report(self, *, sessions: int = 60, runs: int = 30) -> HealthReport:
        """The health report page (``condvest report``): symbols landed and rows quarantined
        over the last ``sessions`` sessions, each stage's last ``runs`` durations, silver
        coverage, freshness and open problems; ``.html`` is the self-contained page. Read-only.
        Needs matplotlib (``pip install 'condvest[report]'``; UsageError naming it otherwise)."""
        from condvest.report import build_report

        return build_report(self._job(), sessions=sessions, runs=runs)

    @overload
    def run(
        self,
        *,
        source: SourceKind | str | None = ...,
        vacuum: bool = ...,
        dry_run: Literal[False] = ...,
    ) -> RunResult: ...
    @overload
    def run(
        self,
        *,
        source: SourceKind | str | None = ...,
        vacuum: bool = ...,
        dry_run: Literal[True],
    ) -> DryRun[RunPlan]: ...
    @overload
    def run(
        self,
        *,
        source: SourceKind | str | None = ...,
        vacuum: bool = ...,
        dry_run: bool = ...,
    ) -> RunResult | DryRun[RunPlan]: ...
    def run(
        self,
        *,
        source: SourceKind | str | None = None,
        vacuum: bool = False,
        dry_run: bool = False,
    ) -> RunResult | DryRun[RunPlan]:
        """The daily pipeline (``condvest run``): fetch, consolidate, resample (and vacuum with
        ``vacuum=True``), stopping at the first failed stage; the result holds each stage's.
        A dry run previews each stage's plan on the lake as it is now."""
        from condvest.jobs.run import RunOptions, plan_run, preview_run, run_run

        job = self._job()
        with self._with_source(source):
            plan = plan_run(job, RunOptions(vacuum=vacuum))
            if dry_run:
                preview = {
                    "dry_run": True,
                    "stages": list(plan.stages),
                    "plans": preview_run(job, plan),
                }
                return DryRun("run", plan, preview)
            return run_run(job, plan)


class _SourceSwap:
    """``source=`` of fetch and run: the settings with ``fetch.source`` replaced for one call
    (the CLI's ``--source`` is a settings override of that one key)."""

    def __init__(self, ctx: JobContext, source: SourceKind | None) -> None:
        self.ctx, self.source, self.saved = ctx, source, ctx.settings

    def __enter__(self) -> None:
        if self.source is not None and self.source != self.saved.fetch.source:
            fetch = self.saved.fetch.model_copy(update={"source": self.source})
            self.ctx.settings = self.saved.model_copy(update={"fetch": fetch})

    def __exit__(self, *exc: object) -> None:
        self.ctx.settings = self.saved


__all__ = ["DryRun", "Lake", "check_failed", "open_lake", "settings_overrides"]

"""The stage methods of :class:`condvest.Lake`: one :func:`condvest.jobs.base.run_job` call
each, with keyword arguments named as the CLI's flags (docs/python-api.md).

The ``@overload`` stubs (most of this module) only tell a type checker that ``dry_run=True``
returns a :class:`DryRun` and the default the stage's result; each stage's code is its last
definition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal, overload

from condvest.core.bars import BarAlignment
from condvest.jobs.base import DryRun, run_job
from condvest.jobs.consolidate import (
    CONSOLIDATE,
    ConsolidateOptions,
    ConsolidatePlan,
    ConsolidateResult,
)
from condvest.jobs.context import JobContext
from condvest.jobs.fetch import (
    DB_SYNC,
    FETCH,
    DbSyncOptions,
    DbSyncPlan,
    DbSyncResult,
    FetchOptions,
    FetchPlan,
    FetchResult,
)
from condvest.jobs.resample import RESAMPLE, ResampleOptions, ResamplePlan, ResampleResult
from condvest.jobs.run import RUN, RunOptions, RunPlan, RunResult
from condvest.jobs.status import (
    INIT_DB,
    STATUS,
    InitDbOptions,
    InitDbResult,
    StatusOptions,
    StatusResult,
    with_schema_upgrade,
)
from condvest.jobs.vacuum import VACUUM, VacuumOptions, VacuumPlan, VacuumResult
from condvest.lake_values import (
    as_date,
    as_enum,
    as_intervals,
    as_positive,
    as_shard,
    as_symbols,
)
from condvest.report import HealthReport
from condvest.settings import ConsolidateMode, SourceKind


class LakeStages:
    """Stage methods mixed into :class:`condvest.Lake` (they need its ``_job`` and
    ``context``)."""

    def _job(self) -> JobContext:  # pragma: no cover - Lake's
        raise NotImplementedError

    @property
    def context(self) -> JobContext:  # pragma: no cover - Lake's
        raise NotImplementedError

    def _with_source(self, source: SourceKind | str | None) -> _SourceSwap:
        return _SourceSwap(self.context, as_enum(SourceKind, source, "--source"))

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
            return run_job(job, FETCH, options, dry_run=dry_run)

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
        options = DbSyncOptions(as_date(start, "--start"), as_date(end, "--end"))
        return run_job(self._job(), DB_SYNC, options, dry_run=dry_run)

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
        options = ConsolidateOptions(
            mode=as_enum(ConsolidateMode, mode, "--mode"),
            symbols=as_symbols(symbols),
            workers=workers,
            retention_days=retention_days,
            skip_cleanup=True if skip_cleanup else None,
            shard=as_shard(shard),
            shards=shards,
        )
        return run_job(self._job(), CONSOLIDATE, options, dry_run=dry_run)

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
        options = ResampleOptions(
            intervals=as_intervals(intervals),
            alignment=as_enum(BarAlignment, alignment, "--alignment"),
            full=full,
            include_partial=include_partial,
            since=as_date(since, "--since"),
        )
        return run_job(self._job(), RESAMPLE, options, dry_run=dry_run)

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
        options = VacuumOptions(
            symbols=as_symbols(symbols),
            retention_days=retention_days,
            force=force,
            db_retention_days=as_positive(db_retention_days, "--db-retention-days"),
        )
        return run_job(self._job(), VACUUM, options, dry_run=dry_run)

    def status(self, *, init_db: bool = False) -> StatusResult:
        """The health view (``condvest status``): freshness, missing sessions, pending files,
        silver coverage, last runs, the PostgreSQL cache when on. Read-only; ``init_db`` first
        runs :meth:`init_db` (``status --init-db``: the view then says which schema version the
        tables were upgraded from). ``status --check``'s verdict on it is
        :func:`condvest.jobs.status.check_failed`."""
        if not init_db:
            return run_job(self._job(), STATUS, StatusOptions())
        upgraded = self.init_db()
        return with_schema_upgrade(run_job(self._job(), STATUS, StatusOptions()), upgraded)

    def init_db(self) -> InitDbResult:
        """Create or upgrade the PostgreSQL tables (``condvest status --init-db``): schema
        version ``schema_version_before`` → ``schema_version``, in one transaction, safe when
        two processes run it at once. Needs ``postgres.dsn`` or ``RDS_SECRET_ARN``
        (:class:`condvest.errors.UsageError` otherwise)."""
        return run_job(self._job(), INIT_DB, InitDbOptions())

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
        job = self._job()
        with self._with_source(source):
            return run_job(job, RUN, RunOptions(vacuum=vacuum), dry_run=dry_run)


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

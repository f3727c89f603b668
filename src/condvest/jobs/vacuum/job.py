"""``condvest vacuum`` (docs/design.md §8): delete ``date=`` files older than the retention window
whose rows are verified inside the symbol's ``data.parquet`` (a date file whose row differs from, or
is newer than, the consolidated row is pending, not superseded, and stays), and temporary files of
crashed writes older than ``vacuum.temp_grace_hours``. Keeps cumulative totals in
``processing_metadata/cleanup_manifest.json`` (compare-and-swap; not in a dry run).

Only in a condvest lake (state.marker), only under the lake's own directories, and only names
condvest writes (date files, and temp files of its exact shape: layout.is_condvest_temp). A
file that cannot be deleted does not stop the others: the result counts what really went and
names each failure (exit 1)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from condvest.core import layout
from condvest.core.retention import retention_cutoff
from condvest.errors import (
    CondvestError,
    DeleteFailedError,
    DiskFullError,
    NotFoundError,
    StorageError,
    UsageError,
)
from condvest.jobs.base import Failure, Job, JobResult, run_planned, to_jsonable
from condvest.jobs.bronze import index
from condvest.jobs.context import JobContext
from condvest.jobs.selection import DateFile, superseded_files
from condvest.state.marker import require_lake
from condvest.storage.base import ObjectInfo, Storage, json_bytes

log = logging.getLogger("condvest.vacuum")

STAGE = "vacuum"


@dataclass(frozen=True)
class VacuumOptions:
    symbols: Sequence[str] | None = None
    retention_days: int | None = None
    """Default: consolidate.retention_days."""
    force: bool = False
    """Allow a retention below vacuum.min_retention_days."""
    db_retention_days: int | None = None
    """Delete PostgreSQL raw_ohlcv rows older than this (default: vacuum.db_retention_days)."""


@dataclass(frozen=True)
class SymbolVacuum:
    symbol: str
    delete: tuple[DateFile, ...]
    """Old date files whose rows are verified in data.parquet."""
    kept: int
    """Old date files kept: pending (not, or differently, in data.parquet) or no data.parquet."""
    error: str | None = None


@dataclass(frozen=True)
class VacuumPlan:
    retention_days: int
    delete_before: date
    temp_before: datetime
    symbols: tuple[SymbolVacuum, ...]
    temp_files: tuple[ObjectInfo, ...]
    db_retention_days: int | None = None
    db_rows: int | None = None
    """Rows of the PostgreSQL cache older than the database retention (counted when planning)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_jsonable(self))


@dataclass(frozen=True)
class VacuumResult(JobResult):
    retention_days: int = 0
    delete_before: date | None = None
    symbols_scanned: int = 0
    symbols_cleaned: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0
    files_kept_pending: int = 0
    temp_files_deleted: int = 0
    temp_bytes_freed: int = 0
    per_symbol: dict[str, dict[str, int]] = field(default_factory=dict)
    """Symbols with something deleted or kept: {deleted, bytes, kept}."""
    files: list[str] = field(default_factory=list)
    """--dry-run only: the keys that would be deleted."""
    failures: list[dict[str, str]] = field(default_factory=list)
    delete_failures: int = 0
    """Files that were to go but could not be deleted (each also in ``failures``)."""
    db_retention_days: int | None = None
    db_rows_deleted: int | None = None
    """PostgreSQL raw_ohlcv rows deleted (dry run: that would be); None when not asked."""

    def stage_failures(self) -> tuple[Failure, ...]:
        return tuple(Failure(str(f.get("symbol")), str(f.get("reason"))) for f in self.failures)


def plan_vacuum(ctx: JobContext, options: VacuumOptions) -> VacuumPlan:
    """List and verify what may go. Reads only."""
    floor = ctx.settings.vacuum.min_retention_days
    retention = (
        options.retention_days
        if options.retention_days is not None
        else ctx.settings.consolidate.retention_days
    )
    if retention < 0:
        raise UsageError(f"--retention-days {retention} must be 0 or more")
    if retention < floor and not options.force:
        raise UsageError(
            f"retention {retention} days is below the minimum of {floor} "
            "(vacuum.min_retention_days); pass --force to override"
        )
    symbols = [layout.validate_symbol(s) for s in options.symbols] if options.symbols else None
    require_lake(ctx.storage, "vacuum")
    # the lake's own directories only (and the marker's temp files at the root)
    prefixes = (
        [layout.symbol_prefix(s) for s in symbols]
        if symbols
        else [*(d + "/" for d in layout.LAKE_DIRS), layout.TEMP_MARKER]
    )
    workers = ctx.settings.consolidate.workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        objects = [o for listing in pool.map(ctx.storage.list_objects, prefixes) for o in listing]
        now = ctx.now()
        temp_before = now - timedelta(hours=ctx.settings.vacuum.temp_grace_hours)
        temps = tuple(
            o for o in objects if layout.is_condvest_temp(o.key) and o.mtime < temp_before
        )
        cutoff = retention_cutoff(now.date(), retention)
        old = _old_date_files(objects, cutoff)
        progress = ctx.progress("vacuum", sum(map(len, old.values())), "files checked").start()

        def verify(symbol: str, files: list[DateFile]) -> SymbolVacuum:
            checked = _verify(ctx.storage, symbol, files)
            progress.advance(len(files))
            return checked

        per_symbol = tuple(pool.map(lambda item: verify(*item), sorted(old.items())))
        progress.close()
    db_days = options.db_retention_days or ctx.settings.vacuum.db_retention_days
    db_rows = _count_db_rows(ctx, db_days) if db_days else None
    return VacuumPlan(retention, cutoff, temp_before, per_symbol, temps, db_days, db_rows)


def _count_db_rows(ctx: JobContext, days: int) -> int:
    """PostgreSQL retention: the cache may be trimmed, the lake keeps every row."""
    sink = ctx.sink()
    if sink is None:
        raise UsageError(
            f"database retention of {days} days asked for, but PostgreSQL is off",
            hint="set postgres.dsn (or RDS_SECRET_ARN), or drop --db-retention-days",
        )
    return sink.delete_older_than(days, dry_run=True, today=ctx.now().date())


def _old_date_files(objects: Sequence[ObjectInfo], cutoff: date) -> dict[str, list[DateFile]]:
    out: dict[str, list[DateFile]] = {}
    for symbol, files in index(objects).symbols.items():
        old = [
            DateFile(obj.key, day, obj.size, obj.mtime, False, obj.version)
            for day, obj in files.dates.items()
            if day < cutoff
        ]
        if old:
            out[symbol] = old
    return out


def _verify(storage: Storage, symbol: str, files: list[DateFile]) -> SymbolVacuum:
    try:
        deletable = superseded_files(storage, symbol, files)
    except NotFoundError:
        return SymbolVacuum(symbol, (), len(files))  # never consolidated: every file is pending
    except CondvestError as exc:
        # said on stderr too: under -q the exit 1 must not come without a word
        log.error("vacuum %s: keeping its %d date files: %s", symbol, len(files), exc)
        return SymbolVacuum(symbol, (), len(files), f"data.parquet unreadable: {exc}")
    return SymbolVacuum(symbol, tuple(deletable), len(files) - len(deletable))


def run_vacuum(ctx: JobContext, plan: VacuumPlan) -> VacuumResult:
    """Delete what ``plan`` verified and update the cleanup manifest, under the stage lock."""
    return run_planned(ctx, VACUUM, plan)


def _preview(ctx: JobContext, plan: VacuumPlan) -> dict[str, Any]:
    """``--dry-run``: the result the run would report, with the keys it would delete."""
    return _result(ctx, plan, 0.0, dry_run=True).to_dict()


def _make_room(ctx: JobContext, plan: VacuumPlan, exc: DiskFullError) -> None:
    """The tool that frees space must run on a full disk, where it cannot write its lock:
    first delete what is safe without one — temporaries of crashed writes, older than
    vacuum.temp_grace_hours (no live writer owns them) — then the runner takes the lock as
    usual. The plan is unchanged: deleting an absent key is a no-op, and the result counts the
    temporaries freed here with the rest."""
    freed = _free_crashed_temporaries(ctx, plan)
    if not freed:
        raise DiskFullError(
            f"{exc.message}; vacuum found no crashed temporaries to delete first",
            hint="free space on the lake's disk by hand, then run vacuum again",
        ) from None
    log.warning(
        "disk full: deleted %d crashed temporary file(s) (%d bytes) before taking the lock",
        len(freed),
        sum(o.size for o in freed),
    )


def _free_crashed_temporaries(ctx: JobContext, plan: VacuumPlan) -> tuple[ObjectInfo, ...]:
    """Delete ``plan``'s temp files (old, condvest-named: verified when planned) without the
    lock; returns those deleted."""
    try:
        ctx.storage.delete_many(o.key for o in plan.temp_files)
    except DeleteFailedError as exc:
        return tuple(o for o in plan.temp_files if o.key not in exc.failed)
    return plan.temp_files


def _execute(ctx: JobContext, plan: VacuumPlan) -> VacuumResult:
    started = time.monotonic()
    failures: list[dict[str, str]] = []
    not_deleted: dict[str, str] = {}
    doomed = [f.info() for s in plan.symbols for f in s.delete]
    try:
        # Only while each file is still the version verified: one rewritten since (a late
        # correction landed over an old date) is pending again and stays.
        changed = _delete_unchanged(ctx, doomed, not_deleted)
        if changed:
            log.warning(
                "vacuum: %d date file(s) changed after they were verified and were kept: %s",
                len(changed),
                ", ".join(changed[:5]),
            )
            plan = _keep(plan, set(changed))
        not_deleted.update(_restore_graves(ctx, plan))
        try:
            ctx.storage.delete_many(o.key for o in plan.temp_files if o.key not in not_deleted)
        except DeleteFailedError as exc:
            not_deleted.update(exc.failed)
    except StorageError as exc:
        # Deleting is idempotent: a re-run finishes the job. Totals below may overcount.
        log.error("vacuum: delete failed: %s", exc)
        failures.append({"symbol": "*", "reason": f"delete failed: {exc}"})
    if not_deleted:
        plan = _without(plan, not_deleted, failures)
    db_deleted = _trim_database(ctx, plan, failures)

    def result() -> VacuumResult:
        return _result(
            ctx,
            plan,
            time.monotonic() - started,
            dry_run=False,
            extra=failures,
            db_deleted=db_deleted,
            delete_failures=len(not_deleted),
        )

    try:
        _update_cleanup_manifest(ctx, result())
    except CondvestError as exc:
        log.error("could not update %s: %s", layout.CLEANUP_MANIFEST, exc)
        failures.append({"symbol": "*", "reason": f"cleanup manifest: {exc}"})
    return result()


_DELETE_CHUNK = 1000


def _delete_unchanged(
    ctx: JobContext, doomed: list[ObjectInfo], not_deleted: dict[str, str]
) -> list[str]:
    """Delete ``doomed`` (each only while unchanged) in chunks, so progress can be shown and
    one failed chunk stops nothing; returns the keys kept because they changed, and adds the
    ones that could not be deleted to ``not_deleted``."""
    changed: list[str] = []
    with ctx.progress("vacuum", len(doomed), "files deleted") as progress:
        for start in range(0, len(doomed), _DELETE_CHUNK):
            chunk = doomed[start : start + _DELETE_CHUNK]
            try:
                changed += ctx.storage.delete_unchanged(chunk)
            except DeleteFailedError as exc:
                changed += exc.kept
                not_deleted.update(exc.failed)
            progress.advance(len(chunk))
    return changed


def _without(
    plan: VacuumPlan, failed: dict[str, str], failures: list[dict[str, str]]
) -> VacuumPlan:
    """``plan`` without the files that could not be deleted (they are still there, so neither
    deleted nor freed), each reported in ``failures`` (and logged: exit 1 needs a word)."""
    for key, reason in sorted(failed.items()):
        log.error("vacuum: could not delete %s: %s", key, reason)
        symbol = layout.parse_symbol_dir(key)
        failures.append({"symbol": symbol or "*", "reason": f"could not delete {key}: {reason}"})
    symbols = tuple(
        replace(s, delete=tuple(f for f in s.delete if f.key not in failed)) for s in plan.symbols
    )
    temps = tuple(o for o in plan.temp_files if o.key not in failed)
    return replace(plan, symbols=symbols, temp_files=temps)


def _keep(plan: VacuumPlan, keys: set[str]) -> VacuumPlan:
    """``plan`` with the files ``keys`` counted as kept (pending) instead of deleted."""
    symbols = tuple(
        replace(
            s,
            delete=tuple(f for f in s.delete if f.key not in keys),
            kept=s.kept + sum(1 for f in s.delete if f.key in keys),
        )
        for s in plan.symbols
    )
    return replace(plan, symbols=symbols)


def _restore_graves(ctx: JobContext, plan: VacuumPlan) -> dict[str, str]:
    """A local conditional delete that crashed between its rename and its check leaves the file
    under a "grave" name: put it back where it was if nothing took its place (consolidate then
    sees it as landed again; newest fetched_at still wins), then let it go as a temp file.
    Returns the graves that could not be restored (kept, with the reason)."""
    failed: dict[str, str] = {}
    for obj in plan.temp_files:
        origin = layout.grave_origin(obj.key)
        if origin is None:
            continue
        try:
            data = ctx.storage.read_bytes(obj.key)
            if ctx.storage.create(origin, data):
                log.warning("vacuum: restored %s (left by an interrupted delete)", origin)
        except NotFoundError:
            continue
        except StorageError as exc:  # the only copy may be this grave: it stays
            failed[obj.key] = f"could not restore it to {origin}: {exc}"
    return failed


def _trim_database(ctx: JobContext, plan: VacuumPlan, failures: list[dict[str, str]]) -> int | None:
    if not plan.db_retention_days:
        return None
    sink = ctx.sink()
    if sink is None:  # planned with a sink; it cannot vanish, but stay safe
        return None
    try:
        return sink.delete_older_than(plan.db_retention_days, today=ctx.now().date())
    except CondvestError as exc:
        failures.append({"symbol": "*", "reason": f"database retention: {exc}"})
        return None


def _result(
    ctx: JobContext,
    plan: VacuumPlan,
    elapsed: float,
    *,
    dry_run: bool,
    extra: list[dict[str, str]] | None = None,
    db_deleted: int | None = None,
    delete_failures: int = 0,
) -> VacuumResult:
    per_symbol = {
        s.symbol: {
            "deleted": len(s.delete),
            "bytes": sum(f.size for f in s.delete),
            "kept": s.kept,
        }
        for s in plan.symbols
        if s.delete or s.kept
    }
    failures = [{"symbol": s.symbol, "reason": s.error} for s in plan.symbols if s.error]
    failures += extra or []
    return VacuumResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=dry_run,
        ok=not failures,
        duration_s=round(elapsed, 3),
        retention_days=plan.retention_days,
        delete_before=plan.delete_before,
        symbols_scanned=len(plan.symbols),
        symbols_cleaned=sum(1 for s in plan.symbols if s.delete),
        files_deleted=sum(len(s.delete) for s in plan.symbols),
        bytes_freed=sum(f.size for s in plan.symbols for f in s.delete),
        files_kept_pending=sum(s.kept for s in plan.symbols),
        temp_files_deleted=len(plan.temp_files),
        temp_bytes_freed=sum(o.size for o in plan.temp_files),
        per_symbol=per_symbol,
        files=sorted([f.key for s in plan.symbols for f in s.delete])
        + [o.key for o in plan.temp_files]
        if dry_run
        else [],
        failures=failures,
        delete_failures=delete_failures,
        db_retention_days=plan.db_retention_days,
        db_rows_deleted=plan.db_rows if dry_run else db_deleted,
    )


def _update_cleanup_manifest(ctx: JobContext, result: VacuumResult) -> None:
    """Add this run to the cumulative totals (compare-and-swap: concurrent runs add up)."""
    key = layout.CLEANUP_MANIFEST
    for _ in range(20):
        seen = ctx.storage.read_json_versioned(key)
        body: dict[str, Any] = dict(seen[0]) if seen and isinstance(seen[0], dict) else {}
        files = result.files_deleted + result.temp_files_deleted
        freed = result.bytes_freed + result.temp_bytes_freed
        body.update(
            {
                "last_cleanup": ctx.now().isoformat(),
                "symbols_cleaned": result.symbols_cleaned,
                "total_files_deleted": int(body.get("total_files_deleted", 0)) + files,
                "total_bytes_freed": int(body.get("total_bytes_freed", 0)) + freed,
                "total_symbols_cleaned": int(body.get("total_symbols_cleaned", 0))
                + result.symbols_cleaned,
                "runs": int(body.get("runs", 0)) + 1,
                "last_run": {
                    "run_id": result.run_id,
                    "retention_days": result.retention_days,
                    "files_deleted": result.files_deleted,
                    "bytes_freed": result.bytes_freed,
                    "temp_files_deleted": result.temp_files_deleted,
                    "files_kept_pending": result.files_kept_pending,
                    "delete_failures": result.delete_failures,
                    "failures": result.failures[:20],
                },
            }
        )
        data = json_bytes(body)
        if seen is None:
            if ctx.storage.create(key, data):
                return
        elif ctx.storage.replace(key, data, seen[1]):
            return
    raise StorageError(f"could not update {key}: too many concurrent writers")


VACUUM: Job[VacuumOptions, VacuumPlan, VacuumResult] = Job(
    STAGE, plan_vacuum, _execute, preview=_preview, make_room=_make_room
)
"""``condvest vacuum``."""

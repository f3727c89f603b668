"""``condvest consolidate`` (docs/design.md §6): merge each symbol's landed ``date=`` files into its
``data.parquet`` (verified, atomic: :func:`merge_into_data_file`), record it in the manifest,
and only then delete date files past the retention window whose rows are verified present.

Selection (incremental): the fetch log says which symbols landed a file for which session and
when (the entry's modification time, written after all its files). A symbol is a candidate when
some entry listing it is newer than the symbol's manifest ``last_updated``; only the candidates'
prefixes are listed, and their pending files are found with :func:`is_pending` (which also
catches late files older than the manifest date and re-landed corrections). ``--symbols`` lists
just those symbols; ``--mode full`` (and a lake without a fetch log) lists all of bronze."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.retention import (
    ceil_ms,
    check_shard,
    retention_cutoff,
    shard_of,
)
from condvest.core.schema import BRONZE_SCHEMA
from condvest.errors import CondvestError, StorageError, UsageError
from condvest.faults import kill_point
from condvest.jobs.base import Job, run_planned
from condvest.jobs.bronze import list_bronze, read_file
from condvest.jobs.compaction import merge_into_data_file
from condvest.jobs.consolidate.plan import (
    ConsolidateOptions,
    ConsolidatePlan,
    ConsolidateResult,
    SymbolPlan,
)
from condvest.jobs.context import JobContext
from condvest.jobs.selection import (
    candidates,
    date_files,
    read_journals,
    superseded_files,
)
from condvest.progress import Tracker
from condvest.settings import ConsolidateMode
from condvest.state.bronze_tails import TailEntry, keep_rows, record_tails
from condvest.state.manifest import ManifestRow, read_manifest, update_manifest
from condvest.state.marker import require_lake
from condvest.storage.base import Storage

__all__ = [
    "ConsolidateOptions",
    "ConsolidatePlan",
    "ConsolidateResult",
    "SymbolPlan",
    "plan_consolidate",
    "resolve_shard",
    "run_consolidate",
]
log = logging.getLogger("condvest.consolidate")

STAGE = "consolidate"
SHARD_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"
"""Set by AWS Batch in each child of an array job (0-based). The count never comes from the
environment: Batch sets no size variable, and names starting AWS_BATCH are reserved (a job
definition or override cannot set them), so it is condvest's own --shards / consolidate.shards."""
_OUT_OF_TIME_MARGIN_S = 30.0
_MANIFEST_BATCH = 500
"""Symbols merged between manifest updates: bounds the redo work after a crash."""


def resolve_shard(
    shard: tuple[int, int] | None,
    count: int | None = None,
    env: Mapping[str, str] = os.environ,
    *,
    count_from: str = "--shards",
) -> tuple[int, int] | None:
    """Which shard this run is: ``--shard K/N`` as given; else, with a shard count (``--shards
    N`` or ``consolidate.shards``), K from AWS Batch's array index; a run with no array index
    (a plain job, a Lambda invocation, a shell) is unsharded and consolidates the whole lake.
    ``count_from`` names where the count came from, for error messages."""
    if shard is not None:
        if count is not None and count != shard[1]:
            raise UsageError(
                f"--shard {shard[0]}/{shard[1]} and {count_from} {count} disagree on the count",
                hint="pass one of them",
            )
        return check_shard(*shard, shown=f"--shard {shard[0]}/{shard[1]}")
    index_text = env.get(SHARD_INDEX_ENV)
    if count is None:
        if index_text is not None:
            # An array child without a count would consolidate the whole lake N times over.
            raise UsageError(
                f"{SHARD_INDEX_ENV}={index_text} (an AWS Batch array job) but no shard count",
                hint="put --shards N (the array size) in the job's command, "
                "or set CONDVEST_CONSOLIDATE__SHARDS",
            )
        return None
    if count < 1:
        raise UsageError(f"{count_from} {count}: the shard count must be at least 1")
    if index_text is None:
        log.info(
            "%s %d but no %s: not an array job, consolidating every symbol",
            count_from,
            count,
            SHARD_INDEX_ENV,
        )
        return None
    try:
        index = int(index_text)
    except ValueError:
        raise UsageError(
            f"{SHARD_INDEX_ENV}={index_text!r} is not a shard number",
            hint="AWS Batch sets it to the child's 0-based index; do not set it yourself",
        ) from None
    if index >= count:
        raise UsageError(
            f"{SHARD_INDEX_ENV}={index} with {count_from} {count}: the array has more children "
            "than shards",
            hint=f"make {count_from} equal to the array size (arrayProperties.size)",
        )
    return check_shard(index, count, shown=f"{SHARD_INDEX_ENV}={index} of {count_from} {count}")


def plan_consolidate(ctx: JobContext, options: ConsolidateOptions) -> ConsolidatePlan:
    """Find the symbols with pending date files (see the module docstring) and what to merge."""
    cfg = ctx.settings.consolidate
    mode = options.mode or cfg.mode
    workers = options.workers if options.workers is not None else cfg.workers
    if workers < 1:
        raise UsageError(f"--workers {workers} must be at least 1")
    retention = options.retention_days if options.retention_days is not None else cfg.retention_days
    if retention < 0:
        raise UsageError(f"--retention-days {retention} must be 0 or more")
    count_from = "--shards" if options.shards is not None else "consolidate.shards"
    # An explicit --shard K/N beats the setting (a flag beats configuration); only --shards
    # given beside it must agree.
    count = options.shards if options.shards is not None or options.shard else cfg.shards
    shard = resolve_shard(options.shard, count, count_from=count_from)
    require_lake(ctx.storage, "consolidate")  # its cleanup deletes date files
    manifest, _ = read_manifest(ctx.storage, rebuild=mode is ConsolidateMode.FULL)
    symbols, selection = candidates(ctx.storage, manifest, mode, options.symbols, workers)
    journals = read_journals(ctx.storage) if options.symbols is None else ()
    if symbols is not None:
        symbols = sorted({*symbols, *(s for _, names in journals for s in names)})
    skip_cleanup = options.skip_cleanup if options.skip_cleanup is not None else cfg.skip_cleanup
    cleanup_before = retention_cutoff(ctx.now().date(), retention)
    listed = list_bronze(ctx.storage, symbols, workers=workers).symbols
    plans: list[SymbolPlan] = []
    for symbol in sorted(listed):
        if shard is not None and shard_of(symbol, shard[1]) != shard[0]:
            continue
        files = date_files(listed[symbol], manifest.get(symbol), mode)
        has_data = listed[symbol].data is not None
        old = not skip_cleanup and has_data and any(f.day < cleanup_before for f in files)
        if any(f.pending for f in files) or (mode is ConsolidateMode.FULL and has_data) or old:
            plans.append(SymbolPlan(symbol, tuple(files), manifest.get(symbol)))
    return ConsolidatePlan(
        mode=mode,
        selection=selection,
        shard=shard,
        workers=workers,
        retention_days=retention,
        cleanup_before=cleanup_before,
        skip_cleanup=skip_cleanup,
        symbols=tuple(plans),
        journals=journals,
    )


# -- running --------------------------------------------------------------------------------------
@dataclass
class _Tally:
    done: int = 0
    changed: int = 0
    rows_added: int = 0
    rows_replaced: int = 0
    files_merged: int = 0
    bytes_written: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    tails: list[TailEntry] = field(default_factory=list)
    """The bronze tail index entries of the data files recorded (written at the end)."""


@dataclass(frozen=True)
class _Merged:
    symbol: str
    row: ManifestRow | None
    """The manifest row to record; None when the symbol failed."""
    changed: bool = False
    rows_added: int = 0
    rows_replaced: int = 0
    files: int = 0
    bytes_written: int = 0
    error: str | None = None
    previous: ManifestRow | None = None
    tail: TailEntry | None = None


def run_consolidate(ctx: JobContext, plan: ConsolidatePlan) -> ConsolidateResult:
    """Execute ``plan`` under the stage lock, recording the run. Exit code 1 when any symbol
    failed."""
    return run_planned(ctx, CONSOLIDATE, plan)


def _scope(plan: ConsolidatePlan) -> str | None:
    """A shard runs on its own: its own lock and run records."""
    return None if plan.shard is None else f"shard-{plan.shard[0]}-of-{plan.shard[1]}"


def _preview(ctx: JobContext, plan: ConsolidatePlan) -> dict[str, Any]:
    """``--dry-run``: the result the run would report, with one row per symbol."""
    return _dry_result(ctx, plan).to_dict()


def _advance_bytes(size: Tracker, symbol: SymbolPlan) -> Callable[[Future[Any]], None]:
    """A done-callback advancing ``size`` by the bytes of ``symbol``'s pending date files."""
    pending = sum(f.size for f in symbol.pending)
    return lambda _future: size.advance(pending)


def _execute(ctx: JobContext, plan: ConsolidatePlan) -> ConsolidateResult:
    started = time.monotonic()
    tally = _Tally()
    partial = False
    todo = list(plan.symbols)
    journal = _write_journal(ctx, plan)
    cleanups: list[Future[tuple[str, Any]]] = []
    progress = ctx.progress("consolidate", len(todo), "symbols").start()
    # Symbols differ in size by orders of magnitude: bytes give the honest ETA.
    size = ctx.progress("consolidate", plan.summary()["bytes"], "bytes merged").start()
    with ThreadPoolExecutor(max_workers=_threads(ctx, plan.workers)) as pool:
        previous: _Batch | None = None
        for start in range(0, len(todo), _MANIFEST_BATCH):
            if partial or ctx.out_of_time(_OUT_OF_TIME_MARGIN_S):
                partial = True
                break
            batch = todo[start : start + _MANIFEST_BATCH]
            # Queued before the previous batch is recorded: the workers merge on while the
            # manifest is written (the pool used to idle for every manifest update).
            current = _Batch(batch, [pool.submit(_merge_symbol, ctx, p) for p in batch])
            for symbol_plan, merge in zip(batch, current.merges, strict=True):
                merge.add_done_callback(lambda _: progress.advance())
                merge.add_done_callback(_advance_bytes(size, symbol_plan))
            if previous is not None:
                partial = _finish_batch(ctx, plan, pool, previous, tally, cleanups) or partial
            previous = current
        if previous is not None:
            partial = _finish_batch(ctx, plan, pool, previous, tally, cleanups) or partial
        for future in cleanups:
            _count_cleanup(tally, *future.result())
    progress.close()
    size.close()
    record_tails(ctx.storage, [e for e in tally.tails if e.directory not in tally.failures])
    if not partial:
        _retire_journals(ctx.storage, plan, journal, tally)
    elapsed = time.monotonic() - started
    return _result(ctx, plan, tally, partial, elapsed)


@dataclass(frozen=True)
class _Batch:
    symbols: list[SymbolPlan]
    merges: list[Future[_Merged | None]]


def _finish_batch(
    ctx: JobContext,
    plan: ConsolidatePlan,
    pool: ThreadPoolExecutor,
    batch: _Batch,
    tally: _Tally,
    cleanups: list[Future[tuple[str, Any]]],
) -> bool:
    """Wait for a batch's merges, record them in the manifest, then queue the cleanup of the
    symbols recorded. True when symbols were left out (deadline)."""
    merged = [m for m in (f.result() for f in batch.merges) if m is not None]
    _record(ctx.storage, merged, tally, rebuild=plan.mode is ConsolidateMode.FULL)
    # Only symbols whose manifest row is recorded may lose date files.
    ok = {m.symbol for m in merged if m.row is not None and m.symbol not in tally.failures}
    if not plan.skip_cleanup:
        cleanups.extend(
            pool.submit(_cleanup, ctx, plan, s) for s in batch.symbols if s.symbol in ok
        )
    return len(merged) < len(batch.symbols)


def _threads(ctx: JobContext, workers: int) -> int:
    """On local disk merging is CPU-bound: beyond 2 threads per CPU they only contend for the
    GIL (measured: 4 threads 218 symbols/s, 10 threads 161 on 2 CPUs). S3 is latency-bound and
    gets every worker asked for."""
    if ctx.storage.local_path("") is None:
        return workers
    return max(1, min(workers, 2 * (os.cpu_count() or 1)))


def _write_journal(ctx: JobContext, plan: ConsolidatePlan) -> str | None:
    names = [s.symbol for s in plan.symbols if plan.needs_cleanup(s)]
    if not names:
        return None
    key = layout.cleanup_journal(ctx.run_id)
    ctx.storage.write_json(key, {"run_id": ctx.run_id, "symbols": names})
    return key


def _retire_journals(
    storage: Storage, plan: ConsolidatePlan, own: str | None, tally: _Tally
) -> None:
    """Remove journals whose every symbol (of this shard) is now clean."""
    planned = {s.symbol for s in plan.symbols}
    journals = [*plan.journals, *([(own, tuple(planned))] if own else [])]
    done = []
    for i, (key, names) in enumerate(journals):
        mine = [
            n for n in names if plan.shard is None or shard_of(n, plan.shard[1]) == plan.shard[0]
        ]
        if any(n in tally.failures for n in mine):
            continue
        others = [n for n in names if n not in mine]
        if others:  # hand the other shards' symbols on, in a journal of their own
            rest = layout.cleanup_journal(f"{_journal_id(key)}-rest{i}")
            storage.write_json(rest, {"symbols": others})
        done.append(key)
    if done:
        storage.delete_many(done)


def _journal_id(journal_key: str) -> str:
    return journal_key.rsplit("/", 1)[-1].removesuffix(".json")


def _merge_symbol(ctx: JobContext, plan: SymbolPlan) -> _Merged | None:
    if ctx.out_of_time(_OUT_OF_TIME_MARGIN_S):
        return None
    storage = ctx.storage
    pending = plan.pending
    try:
        tables = [read_file(storage, f.key) for f in pending]
        incoming = pa.concat_tables(tables) if tables else BRONZE_SCHEMA.empty_table()
        keep = keep_rows(ctx.settings.resample.intervals)
        report = merge_into_data_file(storage, plan.symbol, incoming, keep_tail=keep)
    except CondvestError as exc:
        log.error("consolidate %s failed: %s", plan.symbol, exc)
        return _Merged(plan.symbol, None, error=str(exc))
    except Exception as exc:  # one symbol's surprise must not sink the others
        log.exception("consolidate %s failed unexpectedly", plan.symbol)
        return _Merged(plan.symbol, None, error=f"{type(exc).__name__}: {exc}")
    # last_updated: the newest storage mtime merged (see core.retention); never moved back.
    stamps = [ceil_ms(f.mtime) for f in pending]
    if plan.previous is not None and plan.previous.last_updated is not None:
        stamps.append(plan.previous.last_updated)
    row = ManifestRow(
        symbol=plan.symbol,
        last_consolidated_date=report.last_date,
        row_count=report.stats.merged_rows,
        last_updated=max(stamps, default=None),
        first_date=report.first_date,
    )
    return _Merged(
        plan.symbol,
        row,
        report.changed,
        report.stats.added_dates,
        report.stats.replaced_dates,
        len(pending),
        report.bytes_written,
        previous=plan.previous,
        tail=report.tail,
    )


def _record(storage: Storage, merged: list[_Merged], tally: _Tally, *, rebuild: bool) -> None:
    """Record the batch in the manifest (one CAS update), then count it. ``rebuild``: a full
    run replaces an unreadable manifest with the rows it recomputes."""
    rows = {m.symbol: m.row for m in merged if m.row is not None and m.row != m.previous}
    if rows:
        try:
            update_manifest(storage, rows, rebuild=rebuild)
        except StorageError as exc:
            for m in merged:
                if m.row is not None:
                    tally.failures[m.symbol] = f"manifest update failed: {exc}"
            return
        kill_point("after-manifest", layout.CONSOLIDATION_MANIFEST)
    for m in merged:
        if m.row is None:
            tally.failures[m.symbol] = m.error or "failed"
            continue
        tally.done += 1
        tally.changed += int(m.changed)
        tally.rows_added += m.rows_added
        tally.rows_replaced += m.rows_replaced
        tally.files_merged += m.files
        tally.bytes_written += m.bytes_written
        if m.tail is not None:
            tally.tails.append(m.tail)


def _cleanup(ctx: JobContext, plan: ConsolidatePlan, symbol: SymbolPlan) -> tuple[str, Any]:
    """Delete the symbol's date files older than the retention window whose rows are verified
    in the data.parquet just swapped in (re-read here). Returns (symbol, (files, bytes) | error)."""
    old = [f for f in symbol.files if f.day < plan.cleanup_before]
    if not old:
        return symbol.symbol, (0, 0)
    try:
        deletable = superseded_files(ctx.storage, symbol.symbol, old)
        if deletable:
            # only while each is still the version verified (a correction landed since stays)
            changed = set(ctx.storage.delete_unchanged([f.info() for f in deletable]))
            deletable = [f for f in deletable if f.key not in changed]
            kill_point("mid-cleanup", symbol.symbol)
    except CondvestError as exc:
        return symbol.symbol, f"cleanup failed: {exc}"
    return symbol.symbol, (len(deletable), sum(f.size for f in deletable))


def _count_cleanup(tally: _Tally, symbol: str, freed: Any) -> None:
    if isinstance(freed, str):
        tally.failures[symbol] = freed
        return
    tally.files_deleted += freed[0]
    tally.bytes_deleted += freed[1]


def _shard_text(plan: ConsolidatePlan) -> str | None:
    return None if plan.shard is None else f"{plan.shard[0]}/{plan.shard[1]}"


def _result(
    ctx: JobContext, plan: ConsolidatePlan, tally: _Tally, partial: bool, elapsed: float
) -> ConsolidateResult:
    summary = plan.summary()
    return ConsolidateResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=not tally.failures,
        duration_s=round(elapsed, 3),
        mode=plan.mode.value,
        selection=plan.selection,
        shard=_shard_text(plan),
        partial=partial,
        symbols_planned=summary["symbols"],
        files_planned=summary["files"],
        bytes_planned=summary["bytes"],
        symbols_done=tally.done,
        symbols_changed=tally.changed,
        symbols_failed=len(tally.failures),
        rows_added=tally.rows_added,
        rows_replaced=tally.rows_replaced,
        files_merged=tally.files_merged,
        bytes_written=tally.bytes_written,
        files_deleted=tally.files_deleted,
        bytes_deleted=tally.bytes_deleted,
        symbols_per_s=round(tally.done / elapsed, 1) if elapsed > 0 else 0.0,
        failures=[{"symbol": s, "reason": r} for s, r in sorted(tally.failures.items())],
    )


def _dry_result(ctx: JobContext, plan: ConsolidatePlan) -> ConsolidateResult:
    summary = plan.summary()
    rows = []
    for s in plan.symbols:
        pending = s.pending
        rows.append(
            {
                "symbol": s.symbol,
                "files": len(pending),
                "rows": len(pending),
                "bytes": sum(f.size for f in pending),
                "first": min((f.day for f in pending), default=None),
                "last": max((f.day for f in pending), default=None),
                "cleanup_candidates": sum(1 for f in s.files if f.day < plan.cleanup_before),
            }
        )
    base = _result(ctx, plan, _Tally(), False, 0.0)
    return replace(
        base,
        dry_run=True,
        symbols_planned=summary["symbols"],
        plan=[
            {k: (v.isoformat() if isinstance(v, date) else v) for k, v in r.items()} for r in rows
        ],
    )


CONSOLIDATE: Job[ConsolidateOptions, ConsolidatePlan, ConsolidateResult] = Job(
    STAGE, plan_consolidate, _execute, scope=_scope, parts=True, preview=_preview
)
"""``condvest consolidate``: a shard takes its own lock, and excludes a whole run."""

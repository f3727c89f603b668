"""``condvest resample``: N-session bars into silver (docs/design.md §7), incremental or full.

Two ways to plan a run:

* The tail path (resample_tail), for the daily incremental run: when every interval's checkpoint
  proves that no symbol's rows on or before its ``through`` changed, only rows dated from the
  cutoff are read, the bars that can have changed are recomputed and merged into the months they
  start in (the rows of those months that start earlier are kept). A symbol whose older rows
  changed (a restatement, a correction) has its whole history read and all its bars replaced.
* The full read, otherwise: the whole lake is read, in parts of whole symbols (resample_full:
  one DuckDB scan per part on disk), the bars of every interval computed in vectorised passes
  (condvest.core.bars), and each month partition's content digest compared with the interval's
  checkpoint. The run
  then writes only the months whose bars changed (or whose file is missing or was changed by
  someone else), each as a complete file — the rows of every symbol in that month, so nothing
  already there is lost — and removes months no bar maps to any more.

Either way every month written holds exactly what a full rebuild would hold, so silver after any
sequence of runs equals a full rebuild (tests/test_resample_property.py).

An existing month file about to be replaced is read first: if it is unreadable the interval fails
with a message naming it (a corrupt file is reported, never silently replaced); ``--full`` is the
explicit way to rebuild over it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa

from condvest.core import bars
from condvest.core.bars import BarAlignment
from condvest.core.memory import release_freed_memory
from condvest.errors import CondvestError
from condvest.jobs.base import Job, run_planned
from condvest.jobs.bronze import list_bronze
from condvest.jobs.context import JobContext
from condvest.jobs.resample import full as resample_full
from condvest.jobs.resample import tail as resample_tail
from condvest.jobs.resample.checkpoint import Checkpoint, options_key
from condvest.jobs.resample.incremental import bar_options_of, month_order, plan_tail, session_days
from condvest.jobs.resample.plan import IntervalPlan, ResampleOptions, ResamplePlan, ResampleResult
from condvest.jobs.resample.write import existing_months, write_interval
from condvest.progress import Tracker
from condvest.state.manifest import read_manifest
from condvest.state.marker import require_lake
from condvest.storage.base import ObjectInfo

__all__ = [
    "RESAMPLE",
    "IntervalPlan",
    "ResampleOptions",
    "ResamplePlan",
    "ResampleResult",
    "plan_resample",
    "run_resample",
]
log = logging.getLogger("condvest.resample")
_MARGIN_S = 20.0


# -- planning -----------------------------------------------------------------------------------
def plan_resample(ctx: JobContext, options: ResampleOptions) -> ResamplePlan:
    """Read the lake, compute every interval's bars, and decide which months change."""
    started = time.perf_counter()
    settings = ctx.settings.resample
    intervals = tuple(sorted(set(options.intervals or settings.intervals)))
    alignment = options.alignment or BarAlignment(str(settings.alignment.value))
    full = options.full or settings.force_full
    through = ctx.latest_completed_session()
    require_lake(ctx.storage, "resample")  # it deletes silver months that no longer exist
    listing = list_bronze(ctx.storage).with_files()
    local = ctx.storage.local_path("") is not None
    wanted = options_key(alignment.value, options.include_partial, options.since)
    checkpoints = {n: Checkpoint.load(ctx.storage, n) for n in intervals}
    existing = {n: existing_months(ctx, n) for n in intervals}
    usable = {n: c for n, c in checkpoints.items() if isinstance(c, Checkpoint)}
    if not any(_full_reason(checkpoints[n], full, wanted) for n in intervals):
        tail = plan_tail(ctx, options, alignment, through, listing, usable, existing)
        if tail is not None:
            return tail
    bar_options = bar_options_of(ctx, options, alignment, through)
    parts = resample_full.split_listing(listing, _known_rows(ctx), settings.full_read_rows)
    progress = ctx.progress("resample", len(parts), "parts read").start()
    got = resample_full.read_and_compute(
        ctx.storage,
        parts,
        intervals,
        bar_options,
        alignment,
        session_days(ctx),
        through,
        # Local reads are CPU-bound (parquet decoding); S3 reads wait on the network.
        workers=4 if local else 32,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
        on_part=_part_read(ctx, progress),
    )
    progress.close()
    sym_hash = bars.symbol_hashes(got.symbols)

    def plan_one(n: int) -> IntervalPlan:
        table, codes = got.bars.pop(n)
        return _plan_interval(
            n, table, codes, got.symbols, sym_hash, checkpoints[n], existing[n], full, wanted
        )

    with ThreadPoolExecutor(2) as pool:
        plans = list(pool.map(plan_one, intervals))
    release_freed_memory()  # the parts' combining and hashing temporaries
    return ResamplePlan(
        alignment=alignment,
        through=through,
        include_partial=options.include_partial,
        since=options.since,
        symbols=len(got.symbols),
        input_rows=got.input_rows,
        files_read=got.files_read,
        bytes_read=got.bytes_read,
        off_calendar_rows=got.off_calendar_rows if alignment is BarAlignment.CALENDAR else 0,
        intervals=tuple(plans),
        compute_s=time.perf_counter() - started,
        bronze_state=got.state,
        read_parts=got.parts,
    )


def _part_read(ctx: JobContext, progress: Tracker) -> Callable[[], None]:
    """After each part of the full read: progress, and the lock renewed (the plan is made under
    it: RESAMPLE.lock_first)."""

    def done() -> None:
        progress.advance()
        ctx.renew_lock()

    return done


def _known_rows(ctx: JobContext) -> dict[str, int]:
    """Rows per symbol from the consolidation manifest (to size the full read's parts); an
    unreadable manifest only makes the sizes guesses."""
    try:
        manifest = read_manifest(ctx.storage)[0]
    except CondvestError as exc:
        log.warning("sizing the read without the consolidation manifest: %s", exc)
        return {}
    return {name: row.row_count for name, row in manifest.items()}


def _plan_interval(
    interval: int,
    table: pa.Table,
    codes: np.ndarray,
    symbols: tuple[str, ...],
    sym_hash: np.ndarray,
    checkpoint: Checkpoint | str,
    existing: dict[str, ObjectInfo],
    full: bool,
    wanted: dict[str, Any],
) -> IntervalPlan:
    hashes = bars.row_hashes(table, codes, sym_hash)
    # Symbol digests (bars are sorted by symbol): which symbols' bars changed since last time.
    sym_starts = (
        np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        if len(codes)
        else np.zeros(0, np.int64)
    )
    symbol_digests = dict(
        zip(
            [symbols[c] for c in codes[sym_starts]],
            bars.group_digests(hashes, sym_starts),
            strict=True,
        )
    )
    # The month order is kept, not applied: each month's rows are taken from the bars as that
    # month is written (in the writer threads), instead of a sorted copy of every bar up front.
    order, m_starts, month_slices = month_order(table)
    hashes = hashes[order]
    month_digests = {
        lab: f"{dig}:{b - a}"
        for (lab, (a, b)), dig in zip(
            month_slices.items(), bars.group_digests(hashes, m_starts), strict=True
        )
    }
    reason = _full_reason(checkpoint, full, wanted)
    if reason:
        to_write = sorted(month_slices)
        affected = sorted(symbol_digests)
    else:
        assert isinstance(checkpoint, Checkpoint)
        old_months = checkpoint.months
        to_write = [
            lab
            for lab in sorted(month_slices)
            if lab not in old_months
            or old_months[lab][0] != month_digests[lab]
            or lab not in existing
            or existing[lab].version != old_months[lab][1]
        ]
        old_symbols = checkpoint.symbols
        affected = sorted(
            s
            for s in set(symbol_digests) | set(old_symbols)
            if symbol_digests.get(s) != old_symbols.get(s)
        )
    to_delete = sorted(lab for lab in existing if lab not in month_slices)
    return IntervalPlan(
        interval=interval,
        mode="full" if reason else "incremental",
        reason=reason or "checkpoint found",
        bars=table.num_rows,
        months_to_write=tuple(to_write),
        months_to_delete=tuple(to_delete),
        symbols_affected=tuple(affected),
        rows_to_write=sum(month_slices[m][1] - month_slices[m][0] for m in to_write),
        table=table,
        month_slices=month_slices,
        month_digests=month_digests,
        symbol_digests=symbol_digests,
        existing=existing,
        month_order=order,
        symbol_spans=resample_tail.bar_spans(table, codes, symbols),
    )


def _full_reason(checkpoint: Checkpoint | str, full: bool, wanted: dict[str, Any]) -> str:
    """Why the interval is rebuilt in full ('' when its checkpoint can be used)."""
    if full:
        return "--full"
    if isinstance(checkpoint, str):
        return checkpoint  # none, or another format
    changed = checkpoint.options_changed(wanted)
    if changed:
        return "options changed since the checkpoint: " + ", ".join(changed)
    return ""


# -- running ------------------------------------------------------------------------------------
def run_resample(ctx: JobContext, plan: ResamplePlan) -> ResampleResult:
    """Execute a plan made beforehand under the stage lock, recording the run (the runner
    plans under the lock: :data:`RESAMPLE`)."""
    return run_planned(ctx, RESAMPLE, plan)


def _check(ctx: JobContext, options: ResampleOptions) -> None:
    """Before the lock (whose write would land in it): refuse a location that is not a lake."""
    require_lake(ctx.storage, "resample")


def _preview(ctx: JobContext, plan: ResamplePlan) -> dict[str, Any]:
    return {"stage": "resample", "dry_run": True, **plan.to_dict()}


def _execute(ctx: JobContext, plan: ResamplePlan) -> ResampleResult:
    started = time.perf_counter() - plan.compute_s
    done: dict[int, dict[str, Any]] = {}
    partial = False
    months = sum(len(i.months_to_write) for i in plan.intervals)
    progress = ctx.progress("resample", months, "months written").start()
    for iplan in plan.intervals:
        if ctx.out_of_time(_MARGIN_S):
            partial = True
            log.warning("stopping before the %sd interval: out of time", iplan.interval)
            break
        try:
            done[iplan.interval] = write_interval(ctx, plan, iplan)
        except CondvestError as exc:
            log.error("resample %sd failed: %s", iplan.interval, exc)
            done[iplan.interval] = {"error": str(exc)}
        progress.advance(len(iplan.months_to_write))
        release_freed_memory()  # the interval's sorted copy and encode buffers
        ctx.renew_lock()
    progress.close()
    return _result(ctx, plan, done, partial=partial, started=started)


def _result(
    ctx: JobContext,
    plan: ResamplePlan,
    done: dict[int, dict[str, Any]],
    *,
    partial: bool,
    started: float,
) -> ResampleResult:
    intervals: dict[str, dict[str, Any]] = {}
    for iplan in plan.intervals:
        if iplan.interval in done:
            intervals[f"{iplan.interval}d"] = done[iplan.interval]
        else:
            intervals[f"{iplan.interval}d"] = {"mode": "skipped (out of time)"}
    failed = [n for n, d in done.items() if "error" in d]
    return ResampleResult(
        stage="resample",
        run_id=ctx.run_id,
        dry_run=False,
        ok=not failed,
        duration_s=round(time.perf_counter() - started, 3),
        partial=partial,
        alignment=plan.alignment.value,
        through=plan.through.isoformat(),
        symbols=plan.symbols,
        input_rows=plan.input_rows,
        bars=sum(p.bars for p in plan.intervals),
        months_written=sum(int(d.get("months_written", 0)) for d in done.values()),
        months_deleted=sum(int(d.get("months_deleted", 0)) for d in done.values()),
        rows_written=sum(int(d.get("rows_written", 0)) for d in done.values()),
        files_read=plan.files_read,
        data_files_from_index=plan.data_files_from_index,
        bytes_read=plan.bytes_read + sum(int(d.get("bytes_read", 0)) for d in done.values()),
        failed_intervals=failed,
        intervals=intervals,
    )


RESAMPLE: Job[ResampleOptions, ResamplePlan, ResampleResult] = Job(
    "resample", plan_resample, _execute, lock_first=True, check=_check, preview=_preview
)
"""``condvest resample``: planning computes every bar, so the lock comes first."""

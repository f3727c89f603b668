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
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import bars, layout
from condvest.core.bars import BarAlignment, BarOptions
from condvest.core.memory import release_freed_memory
from condvest.core.schema import SILVER_SCHEMA
from condvest.errors import CondvestError, CorruptFileError
from condvest.jobs.base import Job, JobContext, run_planned
from condvest.jobs.resample import full as resample_full
from condvest.jobs.resample import tail as resample_tail
from condvest.jobs.resample.plan import IntervalPlan, ResampleOptions, ResamplePlan, ResampleResult
from condvest.jobs.resample.reader import SymbolFiles, list_bronze
from condvest.progress import Tracker
from condvest.state.checkpoints import read_checkpoint, write_checkpoint
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
CHECKPOINT_FORMAT = 2
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
    listing = list_bronze(ctx.storage)
    local = ctx.storage.local_path("") is not None
    options_key = {
        "alignment": alignment.value,
        "include_partial": options.include_partial,
        "since": options.since.isoformat() if options.since else None,
    }
    checkpoints = {n: read_checkpoint(ctx.storage, n) for n in intervals}
    existing = {n: _existing_months(ctx, n) for n in intervals}
    if not any(_full_reason(checkpoints[n], full, options_key) for n in intervals):
        tail = _plan_tail(ctx, options, alignment, through, listing, checkpoints, existing)
        if tail is not None:
            return tail
    session_days = np.array(
        [bars.day_number(d) for d in ctx.calendar.all_sessions()], dtype=np.int64
    )

    def bar_options(n: int) -> BarOptions:
        return BarOptions(
            interval=n,
            alignment=alignment,
            latest_index=ctx.calendar.session_index(through),
            include_partial=options.include_partial,
            since_day=bars.day_number(options.since) if options.since else None,
        )

    parts = resample_full.split_listing(listing, _known_rows(ctx), settings.full_read_rows)
    progress = ctx.progress("resample", len(parts), "parts read").start()
    got = resample_full.read_and_compute(
        ctx.storage,
        parts,
        intervals,
        bar_options,
        alignment,
        session_days,
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
            n, table, codes, got.symbols, sym_hash, checkpoints[n], existing[n], full, options_key
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
    checkpoint: dict[str, Any] | None,
    existing: dict[str, ObjectInfo],
    full: bool,
    options_key: dict[str, Any],
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
    order, m_starts, month_slices = _month_order(table)
    hashes = hashes[order]
    month_digests = {
        lab: f"{dig}:{b - a}"
        for (lab, (a, b)), dig in zip(
            month_slices.items(), bars.group_digests(hashes, m_starts), strict=True
        )
    }
    reason = _full_reason(checkpoint, full, options_key)
    if reason:
        to_write = sorted(month_slices)
        affected = sorted(symbol_digests)
    else:
        assert checkpoint is not None
        old_months: dict[str, list[Any]] = checkpoint.get("months", {})
        to_write = [
            lab
            for lab in sorted(month_slices)
            if lab not in old_months
            or old_months[lab][0] != month_digests[lab]
            or lab not in existing
            or existing[lab].version != old_months[lab][1]
        ]
        old_symbols: dict[str, str] = checkpoint.get("symbols", {})
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


def _month_order(table: pa.Table) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """The row order grouping bars by start month — a stable sort keeps (symbol, start_date)
    order inside —, each month's first position in it, and each month's (start, end)."""
    months = bars.month_keys(table.column("start_date").cast(pa.int32()).to_numpy())
    if len(months) and months.min() >= -(2**15) and months.max() < 2**15:
        months = months.astype(np.int16)  # numpy's stable sort is a radix sort on 16 bits
    order = np.argsort(months, kind="stable")
    months = months[order]
    m_starts = (
        np.flatnonzero(np.concatenate([[True], months[1:] != months[:-1]]))
        if len(months)
        else np.zeros(0, np.int64)
    )
    m_ends = np.append(m_starts[1:], len(months))[: len(m_starts)]
    labels = [bars.month_label(int(k)) for k in months[m_starts]]
    slices = {lab: (int(a), int(b)) for lab, a, b in zip(labels, m_starts, m_ends, strict=True)}
    return order, m_starts, slices


def _by_month(
    table: pa.Table,
) -> tuple[pa.Table, np.ndarray, np.ndarray, dict[str, tuple[int, int]]]:
    """:func:`_month_order` applied: the bars sorted by month, the order, the month starts and
    slices (the tail path's tables are small; the full path keeps the order instead)."""
    order, m_starts, slices = _month_order(table)
    return table.take(pa.array(order)), order, m_starts, slices


def _plan_tail(
    ctx: JobContext,
    options: ResampleOptions,
    alignment: BarAlignment,
    through: date,
    listing: dict[str, SymbolFiles],
    checkpoints: dict[int, dict[str, Any] | None],
    existing: dict[int, dict[str, ObjectInfo]],
) -> ResamplePlan | None:
    """The incremental plan that reads only the tail of bronze (resample_tail) — and the whole
    history of the symbols whose older rows changed —, or None when it cannot be used (then
    everything is read)."""
    started = time.perf_counter()
    reason = resample_tail.why_not_tail(checkpoints, existing, alignment, through)
    got: Any = None
    first: dict[str, Any] = next((c for c in checkpoints.values() if c), {})
    workers = 4 if ctx.storage.local_path("") is not None else 32
    if not reason:
        previous = date.fromisoformat(first["through"])
        starts = resample_tail.cutoffs(ctx.calendar, previous, tuple(checkpoints))
        got = resample_tail.read_tail(
            ctx, listing, first["bronze"], previous, min(starts.values()), workers
        )
        reason = got if isinstance(got, str) else ""
    if not reason and got.changed and any("spans" not in (c or {}) for c in checkpoints.values()):
        reason = f"rows of {got.changed[0]} on or before {previous} changed (no bar spans)"
    session_days = np.array(
        [bars.day_number(d) for d in ctx.calendar.all_sessions()], dtype=np.int64
    )

    def bar_options(n: int) -> BarOptions:
        return BarOptions(
            interval=n,
            alignment=alignment,
            latest_index=ctx.calendar.session_index(through),
            include_partial=options.include_partial,
            since_day=bars.day_number(options.since) if options.since else None,
        )

    restated = None
    if not reason and got.changed:
        restated = _read_restated(ctx, listing, got.changed, tuple(checkpoints), bar_options)
        reason = restated if isinstance(restated, str) else ""
    if reason:
        log.info("incremental run reads all of bronze: %s", reason)
        return None
    assert not isinstance(restated, str)
    source = got.bronze
    log.info("incremental run reads bronze from %s", bars.EPOCH + timedelta(min(starts.values())))
    if restated is not None:
        log.info("incremental run reads the whole history of %s", ", ".join(restated.symbols))
    daily = bars.daily_arrays(source.table, source.symbols, source.counts)
    positions = bars.session_positions(daily.day, session_days)
    state = resample_tail.advance_state(
        first["bronze"], source, bars.day_number(previous), bars.day_number(through)
    )
    if restated is not None:
        state.update(restated.state)  # their rows counted afresh, every one of them read
    plans = [
        _tail_interval(
            checkpoint,
            resample_tail.tail_bars(daily, session_days, positions, bar_options(n), starts[n]),
            daily.symbols,
            starts,
            n,
            existing[n],
            restated,
        )
        for n, checkpoint in checkpoints.items()
    ]
    return ResamplePlan(
        alignment=alignment,
        through=through,
        include_partial=options.include_partial,
        since=options.since,
        symbols=len(set(source.symbols) | set(restated.symbols if restated else ())),
        input_rows=source.table.num_rows + (restated.input_rows if restated else 0),
        files_read=source.files_read + (restated.files_read if restated else 0),
        bytes_read=got.bytes_read + (restated.bytes_read if restated else 0),
        off_calendar_rows=int(np.count_nonzero(positions < 0)),
        intervals=tuple(plans),
        compute_s=time.perf_counter() - started,
        bronze_state=state,
        full_history=restated.symbols if restated else (),
    )


def _read_restated(
    ctx: JobContext,
    listing: dict[str, SymbolFiles],
    changed: tuple[str, ...],
    intervals: tuple[int, ...],
    bar_options: Callable[[int], BarOptions],
) -> resample_full.FullBars | str:
    """Every bar of the symbol directories ``changed`` (their whole history read, the way the
    full read does), or why the tail path cannot be used."""
    settings = ctx.settings.resample
    sub = {name: listing[name] for name in changed}
    through = ctx.latest_completed_session()
    got = resample_full.read_and_compute(
        ctx.storage,
        resample_full.split_listing(sub, {}, settings.full_read_rows),
        intervals,
        bar_options,
        BarAlignment.CALENDAR,
        np.array([bars.day_number(d) for d in ctx.calendar.all_sessions()], dtype=np.int64),
        through,
        workers=4 if ctx.storage.local_path("") is not None else 32,
        threads=settings.threads,
        memory_limit=settings.memory_limit,
    )
    if got.symbols != changed:
        return "a changed symbol's directory holds another symbol's rows"
    return got


def _tail_interval(
    checkpoint: dict[str, Any] | None,
    computed: tuple[pa.Table, np.ndarray],
    symbols: tuple[str, ...],
    starts: dict[int, int],
    n: int,
    existing: dict[str, ObjectInfo],
    restated: resample_full.FullBars | None,
) -> IntervalPlan:
    """Interval ``n``'s tail plan: the bars from its cutoff (``computed``) — for a restated
    symbol every bar instead — and the months they, or a restated symbol's old bars, are in."""
    assert checkpoint is not None
    table, codes = computed
    names = frozenset(restated.symbols) if restated is not None else frozenset()
    spans: dict[str, list[int]] | None = checkpoint.get("spans")
    if restated is not None:
        drop = np.isin(codes, [i for i, s in enumerate(symbols) if s in names])
        table = pa.concat_tables(
            [
                table.filter(pa.array(~drop)).cast(SILVER_SCHEMA),
                restated.bars[n][0].cast(SILVER_SCHEMA),
            ]
        )
    table, _, _, slices = _by_month(table)
    first_month = bars.month_label(int(bars.month_keys(np.array([starts[n]]))[0]))
    to_write = set(slices) | {m for m in existing if m >= first_month}
    for lo, hi in resample_tail.span_months(spans or {}, names):
        to_write |= {m for m in existing if lo <= m <= hi}  # the restated symbols' old bars
    return IntervalPlan(
        interval=n,
        mode="incremental",
        reason=f"bars from {bars.EPOCH + timedelta(days=starts[n])} (rows read from "
        f"{bars.EPOCH + timedelta(days=min(starts.values()))})"
        + (f"; every bar of {len(names)} symbols whose older rows changed" if names else ""),
        bars=table.num_rows,
        months_to_write=tuple(sorted(to_write)),
        months_to_delete=(),
        symbols_affected=tuple(sorted(map(str, pc.unique(table.column("symbol")).to_pylist()))),
        rows_to_write=table.num_rows,
        table=table,
        month_slices=slices,
        month_digests={},
        symbol_digests=checkpoint.get("symbols", {}),
        existing=existing,
        replace_from=starts[n],
        previous=checkpoint,
        symbol_spans=None if spans is None else resample_tail.advance_spans(spans, table, names),
        restated=names,
    )


def _full_reason(checkpoint: dict[str, Any] | None, full: bool, options_key: dict[str, Any]) -> str:
    if full:
        return "--full"
    if checkpoint is None:
        return "no checkpoint"
    if checkpoint.get("format") != CHECKPOINT_FORMAT or "months" not in checkpoint:
        return "checkpoint from another format"
    changed = [k for k, v in options_key.items() if checkpoint.get(k) != v]
    if changed:
        return "options changed since the checkpoint: " + ", ".join(changed)
    return ""


def _existing_months(ctx: JobContext, interval: int) -> dict[str, ObjectInfo]:
    out: dict[str, ObjectInfo] = {}
    for obj in ctx.storage.list_objects(layout.silver_prefix(interval)):
        parsed = layout.parse_silver_file(obj.key)
        if parsed is None or layout.is_temp_key(obj.key) or parsed[0] != interval:
            continue
        if obj.key != layout.silver_file(*parsed):
            continue  # a stray name; not ours to touch
        out[f"{parsed[1]:04d}{parsed[2]:02d}"] = obj
    return out


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
            done[iplan.interval] = _write_interval(ctx, plan, iplan)
        except CondvestError as exc:
            log.error("resample %sd failed: %s", iplan.interval, exc)
            done[iplan.interval] = {"error": str(exc)}
        progress.advance(len(iplan.months_to_write))
        release_freed_memory()  # the interval's sorted copy and encode buffers
        ctx.renew_lock()
    progress.close()
    return _result(ctx, plan, done, partial=partial, started=started)


def _write_interval(ctx: JobContext, plan: ResamplePlan, iplan: IntervalPlan) -> dict[str, Any]:
    if iplan.replace_from is not None:
        return _write_tail(ctx, plan, iplan)
    storage = ctx.storage
    checked = 0
    if iplan.mode == "incremental":
        # Every existing file about to be replaced must be readable: a corrupt month is reported
        # (the interval fails, nothing of it is written), never silently replaced.
        for label in iplan.months_to_write:
            if label in iplan.existing:
                _check_readable(ctx, iplan.existing[label].key)
                checked += iplan.existing[label].size

    # The months' rows in one take and one cast per batch of months, then zero-copy slices:
    # per-file takes and casts in the writer threads were mostly Python calls contending for
    # the GIL. Batches of about _WRITE_BATCH_BARS bound the sorted copy (the whole interval at
    # once was the peak of a 38 M-row rebuild).
    def write_batch(labels: tuple[str, ...], pool: ThreadPoolExecutor) -> int:
        table, slices = iplan.months_table(labels)
        table = table.cast(SILVER_SCHEMA)

        def write(label: str) -> int:
            key = layout.silver_file(iplan.interval, int(label[:4]), int(label[4:]))
            a, b = slices[label]
            storage.write_parquet(key, table.slice(a, b - a))
            return b - a

        return sum(pool.map(write, labels))

    with ThreadPoolExecutor(8) as pool:
        rows = sum(
            write_batch(labels, pool)
            for labels in _month_batches(iplan.months_to_write, iplan.month_slices)
        )
    stale = [iplan.existing[label].key for label in iplan.months_to_delete]
    if stale:
        storage.delete_many(stale)
    _write_checkpoint(ctx, plan, iplan, iplan.month_digests, iplan.bars)
    return {
        "mode": iplan.mode,
        "bars": iplan.bars,
        "months_written": len(iplan.months_to_write),
        "months_deleted": len(stale),
        "rows_written": rows,
        "symbols_affected": len(iplan.symbols_affected),
        "bytes_read": checked,
    }


_WRITE_BATCH_BARS = 2_000_000


def _month_batches(
    labels: tuple[str, ...], slices: dict[str, tuple[int, int]]
) -> list[tuple[str, ...]]:
    """``labels`` in consecutive groups of about _WRITE_BATCH_BARS bars."""
    out: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for label in labels:
        a, b = slices.get(label, (0, 0))
        if current and size + (b - a) > _WRITE_BATCH_BARS:
            out.append(tuple(current))
            current, size = [], 0
        current.append(label)
        size += b - a
    if current:
        out.append(tuple(current))
    return out


def _write_checkpoint(
    ctx: JobContext, plan: ResamplePlan, iplan: IntervalPlan, digests: dict[str, str], n_bars: int
) -> None:
    versions = {label: obj.version for label, obj in _existing_months(ctx, iplan.interval).items()}
    write_checkpoint(
        ctx.storage,
        iplan.interval,
        {
            "format": CHECKPOINT_FORMAT,
            "through": plan.through.isoformat(),
            "alignment": plan.alignment.value,
            "include_partial": plan.include_partial,
            "since": plan.since.isoformat() if plan.since else None,
            "bars": n_bars,
            "run_id": ctx.run_id,
            "updated_at": ctx.now().isoformat(),
            "months": {label: [digest, versions.get(label)] for label, digest in digests.items()},
            "symbols": iplan.symbol_digests,
            # Per symbol: [first, last] bar start day (where a restated symbol's bars are).
            **({"spans": iplan.symbol_spans} if iplan.symbol_spans is not None else {}),
            # Per symbol: rows dated `through` or earlier and their newest fetched_at (the
            # next run's proof that nothing before its cutoff changed; resample_tail).
            "bronze": plan.bronze_state,
        },
    )


def _write_tail(ctx: JobContext, plan: ResamplePlan, iplan: IntervalPlan) -> dict[str, Any]:
    """Merge the recomputed bars into their months (rows starting before replace_from kept,
    a restated symbol's rows all replaced)."""
    assert iplan.replace_from is not None and iplan.previous is not None
    storage = ctx.storage
    labels = iplan.months_to_write

    def read(label: str) -> pa.Table | None:
        return _check_readable(ctx, iplan.existing[label].key) if label in iplan.existing else None

    # Every month is read before any is written: a corrupt month fails the interval untouched.
    with ThreadPoolExecutor(8) as pool:
        olds = list(pool.map(read, labels))
    new, where = iplan.months_table(labels)
    merged, slices, month_digests, removed = resample_tail.merge_months(
        olds, new, where, labels, iplan.replace_from, iplan.restated
    )
    del olds, new

    def write(label: str) -> int:
        key = layout.silver_file(iplan.interval, int(label[:4]), int(label[4:]))
        a, b = slices[label]
        storage.write_parquet(key, merged.slice(a, b - a))
        return b - a

    digests = {label: v[0] for label, v in iplan.previous.get("months", {}).items()}
    to_write = []
    for label in labels:
        if label not in month_digests:
            digests.pop(label, None)
            continue
        if digests.get(label) != month_digests[label] or label not in iplan.existing:
            to_write.append(label)  # a month whose content digest is unchanged is not rewritten
        digests[label] = month_digests[label]
    with ThreadPoolExecutor(8) as pool:
        rows = sum(pool.map(write, to_write))
    stale = [
        iplan.existing[m].key for m in labels if m not in month_digests and m in iplan.existing
    ]
    if stale:
        storage.delete_many(stale)
    n_bars = int(iplan.previous.get("bars", 0)) - removed + iplan.bars
    _write_checkpoint(ctx, plan, iplan, digests, n_bars)
    return {
        "mode": iplan.mode,
        "bars": n_bars,
        "months_written": len(to_write),
        "months_deleted": len(stale),
        "rows_written": rows,
        "symbols_affected": len(iplan.symbols_affected),
        "bytes_read": sum(iplan.existing[m].size for m in labels if m in iplan.existing),
    }


def _check_readable(ctx: JobContext, key: str) -> pa.Table:
    try:
        existing = ctx.storage.read_parquet(key)
    except CorruptFileError as exc:
        raise CorruptFileError(
            f"silver month file {ctx.storage.url(key)} is unreadable ({exc}); it was left as is",
            hint="inspect or move it aside, or rebuild the interval with --full",
        ) from None
    missing = set(SILVER_SCHEMA.names) - set(existing.schema.names)
    if missing or existing.schema.field("start_date").type != pa.date32():
        raise CorruptFileError(
            f"silver month file {ctx.storage.url(key)} does not have the silver schema",
            hint="inspect or move it aside, or rebuild the interval with --full",
        )
    return existing


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
        bytes_read=plan.bytes_read + sum(int(d.get("bytes_read", 0)) for d in done.values()),
        failed_intervals=failed,
        intervals=intervals,
    )


RESAMPLE: Job[ResampleOptions, ResamplePlan, ResampleResult] = Job(
    "resample", plan_resample, _execute, lock_first=True, check=_check, preview=_preview
)
"""``condvest resample``: planning computes every bar, so the lock comes first."""

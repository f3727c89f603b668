"""Writing a resample plan's months into silver, and the checkpoint after each interval.

An existing month file about to be replaced is read first: if it is unreadable the interval fails
with a message naming it (a corrupt file is reported, never silently replaced)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.schema import SILVER_SCHEMA
from condvest.errors import CorruptFileError
from condvest.jobs.base import JobContext
from condvest.jobs.resample import tail as resample_tail
from condvest.jobs.resample.checkpoint import Checkpoint
from condvest.jobs.resample.plan import IntervalPlan, ResamplePlan
from condvest.storage.base import ObjectInfo


def existing_months(ctx: JobContext, interval: int) -> dict[str, ObjectInfo]:
    out: dict[str, ObjectInfo] = {}
    for obj in ctx.storage.list_objects(layout.silver_prefix(interval)):
        parsed = layout.parse_silver_file(obj.key)
        if parsed is None or layout.is_temp_key(obj.key) or parsed[0] != interval:
            continue
        if obj.key != layout.silver_file(*parsed):
            continue  # a stray name; not ours to touch
        out[f"{parsed[1]:04d}{parsed[2]:02d}"] = obj
    return out


def write_interval(ctx: JobContext, plan: ResamplePlan, iplan: IntervalPlan) -> dict[str, Any]:
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
    _write_checkpoint(ctx, plan, iplan, iplan.month_digests, iplan.bars, iplan.months_to_write)
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


_STAT_AT_MOST = 32
"""Up to this many months written, their new versions come from one stat each; more, from one
listing of the interval."""


def _write_checkpoint(
    ctx: JobContext,
    plan: ResamplePlan,
    iplan: IntervalPlan,
    digests: dict[str, str],
    n_bars: int,
    written: Sequence[str],
) -> None:
    """The interval's checkpoint: a month not written keeps the version listed when the run
    planned (had anyone replaced it since, the next run sees another version and reads in
    full); a written one gets the version it has now."""
    versions = {label: obj.version for label, obj in iplan.existing.items()}
    if len(written) > _STAT_AT_MOST:
        now = existing_months(ctx, iplan.interval)
        versions.update({label: now[label].version for label in written if label in now})
    else:
        for label in written:
            key = layout.silver_file(iplan.interval, int(label[:4]), int(label[4:]))
            info = ctx.storage.stat(key)
            versions[label] = info.version if info is not None else None
    Checkpoint(
        through=plan.through,
        alignment=plan.alignment.value,
        include_partial=plan.include_partial,
        since=plan.since,
        bars=n_bars,
        run_id=ctx.run_id,
        updated_at=ctx.now().isoformat(),
        months={label: (digest, versions.get(label)) for label, digest in digests.items()},
        symbols=iplan.symbol_digests,
        spans=iplan.symbol_spans,
        bronze=plan.bronze_state,
    ).save(ctx.storage, iplan.interval)


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

    digests = iplan.previous.month_digests
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
    n_bars = iplan.previous.bars - removed + iplan.bars
    _write_checkpoint(ctx, plan, iplan, digests, n_bars, to_write)
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

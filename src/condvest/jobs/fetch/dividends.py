"""Dividends in the fetch job (docs/corporate-actions.md): landing an answer, the daily window's
request, ``--history``'s, and ``fetch --corporate-actions`` (splits and dividends over date
windows for the whole lake).

An answer lands as one ``bronze/corporate_actions/dividends/date=<ex-date>.parquet`` per
ex-date, merged with what the file already holds (one row per vendor ``id``, the newest fetch
winning), so re-fetching a window rewrites the same content and two overlapping fetches never
duplicate a dividend. Bad vendor rows go to quarantine with the reason; the rest land."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import layout
from condvest.core.actions import latest_dividends
from condvest.core.calendar import years_before
from condvest.core.schema import DIVIDEND_SCHEMA
from condvest.errors import AuthError, CondvestError, CorruptFileError, NotFoundError, UsageError
from condvest.jobs.context import JobContext
from condvest.jobs.fetch.landing import restrict, write_quarantine, write_splits
from condvest.jobs.fetch.model import (
    STAGE,
    CorporateActionsPlan,
    FetchOptions,
    FetchResult,
    estimate_s,
    pacing,
)
from condvest.sinks import Sink, open_sink
from condvest.sources.base import Source
from condvest.sources.dividends import DividendBatch
from condvest.storage import Storage

log = logging.getLogger("condvest.jobs.fetch")
WINDOW_DAYS = 92
"""--corporate-actions asks for one quarter at a time: a market-wide quarter of dividends is a
few thousand rows (a handful of pages), and a failed window costs only itself."""
_MARGIN_S = 60.0
"""Stop a backfill with this much of a Lambda's time left (one window takes seconds)."""


@dataclass
class Landed:
    """What one dividends answer put into the lake."""

    dividends: int = 0
    bytes: int = 0
    quarantined: int = 0
    messages: list[str] = field(default_factory=list)
    sink_errors: list[str] = field(default_factory=list)


# -- writing ----------------------------------------------------------------------------------
def _read_existing(storage: Storage, key: str) -> pa.Table:
    try:
        table = storage.read_parquet(key)
    except NotFoundError:
        return DIVIDEND_SCHEMA.empty_table()
    try:
        return table.select(DIVIDEND_SCHEMA.names).cast(DIVIDEND_SCHEMA)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CorruptFileError(
            f"{storage.url(key)} is not a dividends file ({exc})",
            hint="move it aside; the next fetch --corporate-actions writes it again",
        ) from None


def write_dividends(storage: Storage, rows: pa.Table, *, workers: int = 8) -> int:
    """Merge ``rows`` (:data:`DIVIDEND_SCHEMA`) into their ex-date files. Returns bytes written
    (a file whose content would not change is not rewritten)."""
    if rows.num_rows == 0:
        return 0
    days = sorted(set(rows.column("ex_dividend_date").to_pylist()))

    def one(day: date) -> int:
        part = rows.filter(pc.equal(rows.column("ex_dividend_date"), pa.scalar(day, pa.date32())))
        key = layout.corporate_actions_file("dividends", day)
        old = _read_existing(storage, key)
        merged = latest_dividends([old, part])
        if old.num_rows and merged.equals(latest_dividends([old])):
            return 0
        return storage.write_parquet(key, merged)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(days)))) as pool:
        return sum(pool.map(one, days))


def _reasons(rejected: pa.Table) -> str:
    counts = Counter(str(r) for r in rejected.column("reason").to_pylist())
    return ", ".join(f"{n} × {reason}" for reason, n in counts.most_common(3))


def land_dividends(
    ctx: JobContext,
    batch: DividendBatch,
    symbols: Sequence[str] | None,
    *,
    day: date,
    tag: str,
    sink: Sink | None,
) -> Landed:
    """Quarantine the refused rows (under ``day``), land the others, upsert them into the
    database when one is configured (a database failure is reported, the lake write stands)."""
    out = Landed()
    rows = latest_dividends([restrict(batch.rows, symbols)])
    rejected = restrict(batch.rejected, symbols)
    out.quarantined = write_quarantine(ctx.storage, day, f"{ctx.run_id}-{tag}", [rejected])
    if out.quarantined:
        out.messages.append(f"{out.quarantined} dividend row(s) quarantined: {_reasons(rejected)}")
    out.bytes = write_dividends(ctx.storage, rows, workers=ctx.settings.fetch.write_concurrency)
    out.dividends = rows.num_rows
    if sink is not None and rows.num_rows:
        try:
            sink.upsert_dividends(rows)
        except CondvestError as exc:
            out.sink_errors.append(
                f"PostgreSQL dividends upsert failed: {exc}; the lake holds them, copy them with "
                "condvest fetch --corporate-actions over the same dates"
            )
    return out


# -- the daily window and --history ---------------------------------------------------------------
def daily_dividends(
    ctx: JobContext,
    source: Source,
    landed: Sequence[date],
    symbols: Sequence[str] | None,
    sink: Sink | None,
    failed: dict[str, str],
    messages: list[str],
) -> tuple[Landed, dict[date, str]]:
    """The dividends with an ex-date in the run's landed sessions (one paginated request).

    Returns (what landed, sessions held back → why): a failed request holds every landed
    session back, like a failed splits request — the next run lands them and asks again."""
    if not landed:
        return Landed(), {}
    window = (min(landed), max(landed))
    try:
        batch = source.dividends(*window)
    except AuthError:
        raise
    except CondvestError as exc:
        failed["dividends"] = str(exc)
        why = f"the dividends request for {window[0]}..{window[1]} failed: {exc}"
        messages.append(
            f"{why}; the landed sessions are not recorded and the next run fetches them again"
        )
        log.error("%s", why)
        return Landed(), dict.fromkeys(landed, why)
    out = land_dividends(ctx, batch, symbols, day=window[1], tag="dividends", sink=sink)
    messages.extend(out.messages)
    return out, {}


def history_dividends(
    ctx: JobContext, source: Source, symbols: Sequence[str], start: date, end: date
) -> tuple[Landed, dict[str, str]]:
    """``--history``'s dividends: ``symbols``' over ``[start, end]`` (a request per symbol).
    Returns (what landed, failures)."""
    try:
        batch = source.dividends(start, end, list(symbols))
    except AuthError:
        raise
    except CondvestError as exc:
        return Landed(messages=[f"dividends: {exc}"]), {"dividends": str(exc)}
    sink = open_sink(ctx.settings)
    try:
        out = land_dividends(ctx, batch, symbols, day=end, tag="history-dividends", sink=sink)
    finally:
        if sink is not None:
            sink.close()
    return out, {}


# -- fetch --corporate-actions ----------------------------------------------------------------
def date_windows(start: date, end: date, days: int = WINDOW_DAYS) -> list[tuple[date, date]]:
    """``[start, end]`` cut into consecutive windows of at most ``days`` days."""
    out = []
    lo = start
    while lo <= end:
        hi = min(end, lo + timedelta(days=days - 1))
        out.append((lo, hi))
        lo = hi + timedelta(days=1)
    return out


def plan_corporate_actions(
    ctx: JobContext, opts: FetchOptions, base: dict[str, Any]
) -> CorporateActionsPlan:
    if opts.day is not None:
        raise UsageError("--corporate-actions takes --start/--end, not --date")
    latest: date = base["latest_completed"]
    end = min(opts.end or latest, latest)
    start = opts.start or years_before(end, ctx.settings.fetch.history_years)
    if end < start:
        raise UsageError(f"--start {start} is after --end {end}")
    windows = date_windows(start, end)
    dividend_requests = len(opts.symbols) if opts.symbols else len(windows)
    requests = len(windows) + dividend_requests
    rpm = pacing(ctx, base["source"])
    notes = [
        f"{len(windows)} window(s) of up to {WINDOW_DAYS} days: one splits request each (paged)",
        (
            f"dividends: one request per symbol over {start}..{end}"
            if opts.symbols
            else "dividends: one request per window (paged)"
        ),
        "splits are landed, not applied: a split is restated when a daily fetch sees it",
    ]
    return CorporateActionsPlan(
        start=start,
        end=end,
        requests=requests,
        estimated_s=estimate_s(requests, rpm),
        force=opts.force,
        notes=notes,
        **base,
    )


def _backfill_splits(
    ctx: JobContext, source: Source, windows: list[tuple[date, date]], t: Landed
) -> tuple[int, dict[str, str], int]:
    """Splits of every window (market-wide: a splits file holds the full set of its date).
    Returns (splits landed, failures, windows done)."""
    failures: dict[str, str] = {}
    count = done = 0
    progress = ctx.progress(STAGE, len(windows), "split windows").start()
    try:
        for lo, hi in windows:
            if ctx.out_of_time(_MARGIN_S):
                failures["time limit"] = f"stopped before the time limit at {lo}"
                break
            progress.advance()
            try:
                answer = source.splits(lo, hi)
            except AuthError:
                raise
            except CondvestError as exc:
                failures[f"splits {lo}..{hi}"] = str(exc)
                continue
            tag = f"{ctx.run_id}-splits-{lo.isoformat()}"
            t.quarantined += write_quarantine(ctx.storage, hi, tag, [answer.rejected])
            t.bytes += write_splits(ctx.storage, answer.splits, source.name)
            count += len(answer.splits)
            done += 1
    finally:
        progress.close()
    return count, failures, done


def _backfill_dividends(
    ctx: JobContext,
    source: Source,
    plan: CorporateActionsPlan,
    windows: list[tuple[date, date]],
    t: Landed,
) -> dict[str, str]:
    failures: dict[str, str] = {}
    sink = open_sink(ctx.settings)
    asks: list[tuple[date, date]] = [(windows[0][0], windows[-1][1])] if plan.symbols else windows
    try:
        for lo, hi in asks:
            if ctx.out_of_time(_MARGIN_S):
                failures["time limit"] = f"stopped before the time limit at {lo}"
                break
            try:
                batch = source.dividends(lo, hi, plan.symbols)
            except AuthError:
                raise
            except CondvestError as exc:
                failures[f"dividends {lo}..{hi}"] = str(exc)
                continue
            tag = f"dividends-{lo.isoformat()}"
            got = land_dividends(ctx, batch, plan.symbols, day=hi, tag=tag, sink=sink)
            t.dividends += got.dividends
            t.bytes += got.bytes
            t.quarantined += got.quarantined
            t.messages.extend(got.messages)
            t.sink_errors.extend(got.sink_errors)
    finally:
        if sink is not None:
            sink.close()
    return failures


def run_corporate_actions(
    ctx: JobContext, plan: CorporateActionsPlan, source: Source
) -> FetchResult:
    """Backfill splits and dividends over the plan's range, window by window; a failed window
    is named in ``failed`` (exit 1) and the others still land."""
    windows = date_windows(plan.start, plan.end)
    t = Landed()
    splits, failures, done = _backfill_splits(ctx, source, windows, t)
    if "time limit" not in failures:
        failures.update(_backfill_dividends(ctx, source, plan, windows, t))
    for what, error in failures.items():
        t.messages.append(f"{what}: {error}")
    return FetchResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=not failures and not t.sink_errors,
        duration_s=0.0,
        mode="corporate_actions",
        source=source.name,
        partial="time limit" in failures,
        failed=failures,
        quarantined=t.quarantined,
        bytes=t.bytes,
        splits=splits,
        dividends=t.dividends,
        corporate_actions={
            "splits": splits,
            "dividends": t.dividends,
            "quarantined": t.quarantined,
            "windows": len(windows),
            "windows_done": done,
        },
        sink_errors=t.sink_errors,
        messages=t.messages,
    )

"""``fetch --history`` and split restatement: per-ticker ranges merged straight into each
symbol's data.parquet through the shared verified, atomic merge (never thousands of one-row
date files), and ``fetch --meta`` (in :mod:`condvest.jobs.fetch.metadata`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import layout
from condvest.core.calendar import years_before
from condvest.core.validate import rejected_table, validate_rows
from condvest.errors import AuthError, CondvestError, NotFoundError, UsageError
from condvest.jobs.bronze import list_bronze, read_file
from condvest.jobs.compaction import merge_into_data_file
from condvest.jobs.context import JobContext, today_ny
from condvest.jobs.fetch.dividends import history_dividends
from condvest.jobs.fetch.landing import write_quarantine
from condvest.jobs.fetch.model import (
    STAGE,
    STOP_MARGIN_S,
    FetchOptions,
    FetchResult,
    HistoryPlan,
    estimate_s,
    paced_per_s,
    pacing,
    row_bounds,
)
from condvest.jobs.fetch.split_sanity import check_split, stored_closes
from condvest.sinks import open_sink
from condvest.sources.base import Source, Split

log = logging.getLogger("condvest.jobs.fetch")
_CHUNK = 20
"""Symbols requested concurrently between deadline checks."""


def plan_history(ctx: JobContext, opts: FetchOptions, base: dict[str, Any]) -> HistoryPlan:
    if not opts.symbols:
        raise UsageError("--history needs --symbols", hint="e.g. --history --symbols AAPL,BRK.A")
    if opts.day is not None:
        raise UsageError("--history takes --start/--end, not --date")
    latest: date = base["latest_completed"]
    start = opts.start or years_before(today_ny(ctx), ctx.settings.fetch.history_years)
    end = min(opts.end or latest, latest)
    if end < start:
        raise UsageError(f"--start {start} is after the end of the history {end}")
    requests = 2 * len(opts.symbols)  # a range and a dividends request per symbol
    return HistoryPlan(
        start=start,
        end=end,
        requests=requests,
        estimated_s=estimate_s(requests, pacing(ctx, base["source"])),
        force=opts.force,
        notes=["rows merge straight into each symbol's data.parquet (newest fetch wins)"],
        **base,
    )


def checked_history(
    ctx: JobContext, rows: pa.Table, start: date, end: date, rejected: list[pa.Table]
) -> pa.Table:
    """Validated rows of a history answer that are sessions in ``[start, end]``; the others
    (weekends, holidays, dates outside the range asked for) go to ``rejected`` with the reason."""
    good, bad = validate_rows(rows, row_bounds(ctx))
    rejected.append(bad)
    if good.num_rows == 0:
        return good
    sessions = pa.array(ctx.calendar.sessions_between(start, end), pa.date32())
    inside = pc.is_in(good.column("date"), sessions)
    outside = good.filter(pc.invert(inside))
    if outside.num_rows:
        reasons = [
            (
                row["symbol"],
                row["date"],
                f"not a {ctx.calendar.exchange} session in the requested {start}..{end}",
                {k: row[k] for k in ("open", "high", "low", "close", "volume")},
            )
            for row in outside.to_pylist()
        ]
        source = str(outside.column("source")[0])
        fetched = outside.column("fetched_at")[0].as_py()
        rejected.append(rejected_table(reasons, source=source, fetched_at=fetched))
    return good.filter(inside)


def _merge_history(
    ctx: JobContext, symbol: str, rows: pa.Table, span: tuple[date, date], rejected: list[pa.Table]
) -> tuple[pa.Table, int]:
    """Validate + merge one symbol's history. Returns (rows merged, bytes written)."""
    good = checked_history(ctx, rows, span[0], span[1], rejected)
    if good.num_rows == 0:
        raise CondvestError(
            f"none of the rows the source returned for {span[0]}..{span[1]} is a valid session "
            "(see bronze/quarantine)"
        )
    report = merge_into_data_file(ctx.storage, symbol, good)
    return good, report.bytes_written


def land_histories(
    ctx: JobContext, source: Source, symbols: Sequence[str], start: date | None, end: date
) -> tuple[dict[str, str], int, int, list[str], list[str]]:
    """Fetch and merge histories. Returns (failures, rows, bytes, messages, symbols without a
    single bar in the range — failures too)."""
    start = start or years_before(end, ctx.settings.fetch.history_years)
    failures: dict[str, str] = {}
    missing: list[str] = []
    messages: list[str] = []
    rejected: list[pa.Table] = []
    rows = size = 0
    sink = open_sink(ctx.settings)
    rate = paced_per_s(ctx, source.name)  # one range request per symbol (more when paged)
    progress = ctx.progress(STAGE, len(symbols), "history symbols", rate_per_s=rate).start()
    try:
        for i in range(0, len(symbols), _CHUNK):
            if ctx.out_of_time(STOP_MARGIN_S):
                left = symbols[i:]
                messages.append(f"stopped before the time limit; {len(left)} symbol(s) left")
                failures.update({s: "not fetched (time limit)" for s in left})
                break
            chunk = list(symbols[i : i + _CHUNK])
            for symbol, got in source.histories(chunk, start, end).items():
                progress.advance()
                if isinstance(got, CondvestError):
                    failures[symbol] = str(got)
                    continue
                if got.empty:
                    missing.append(symbol)
                    failures[symbol] = (
                        f"no bars from {source.name} for {start}..{end} (check the ticker; "
                        "a symbol not trading in that range has none)"
                    )
                    continue
                rejected.append(got.rejected)
                try:
                    good, b = _merge_history(ctx, symbol, got.rows, (start, end), rejected)
                except AuthError:
                    raise
                except CondvestError as exc:
                    failures[symbol] = str(exc)
                    continue
                rows += good.num_rows
                size += b
                if sink is not None:
                    try:
                        sink.upsert_rows(good)
                    except CondvestError as exc:
                        failures[f"{symbol} (postgres)"] = str(exc)
    finally:
        progress.close()
        if sink is not None:
            sink.close()
        write_quarantine(ctx.storage, end, f"{ctx.run_id}-history", rejected)
    for symbol, error in failures.items():
        messages.append(f"history {symbol}: {error}")
    if missing:
        log.warning(
            "no bars from %s for %s..%s: %s", source.name, start, end, ", ".join(missing[:20])
        )
    return failures, rows, size, messages, missing


def run_history(ctx: JobContext, plan: HistoryPlan, source: Source) -> FetchResult:
    assert plan.symbols  # plan_history refuses a history without --symbols
    failures, rows, size, messages, missing = land_histories(
        ctx, source, plan.symbols, plan.start, plan.end
    )
    dividends, failed = history_dividends(ctx, source, plan.symbols, plan.start, plan.end)
    failures.update(failed)
    messages.extend(dividends.messages)
    return FetchResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=not failures and not dividends.sink_errors,
        duration_s=0.0,
        mode="history",
        source=source.name,
        partial=any("time limit" in e for e in failures.values()),
        failed=failures,
        rows=rows,
        symbols=len(plan.symbols) - len([f for f in failures if f != "dividends"]),
        symbols_missing=missing,
        bytes=size + dividends.bytes,
        quarantined=dividends.quarantined,
        dividends=dividends.dividends,
        sink_errors=dividends.sink_errors,
        messages=messages,
    )


# -- split restatement ------------------------------------------------------------------------
def _history_start(ctx: JobContext, symbol: str, date_files: dict[date, str]) -> date | None:
    """The earliest date the lake holds for ``symbol`` (None if nothing before)."""
    firsts = [min(date_files)] if date_files else []
    try:
        data = read_file(ctx.storage, layout.data_file(symbol))
        if data.num_rows:
            firsts.append(data.column("date")[0].as_py())
    except NotFoundError:
        pass
    return min(firsts) if firsts else None


def _restate_one(
    ctx: JobContext, source: Source, split: Split, end: date, rejected: list[pa.Table]
) -> str:
    """Re-fetch the split symbol's adjusted history, merge it, then drop superseded date files.
    Returns a message ('' when the symbol has nothing on the old scale)."""
    symbol = split.symbol
    listed = list_bronze(ctx.storage, [symbol]).symbols.get(symbol)
    date_files = {d: o.key for d, o in listed.dates.items()} if listed else {}
    start = _history_start(ctx, symbol, date_files)
    if start is None or start >= split.execution_date:
        return ""
    got = source.histories([symbol], start, end)[symbol]
    if isinstance(got, CondvestError):
        raise got
    rejected.append(got.rejected)
    good = checked_history(ctx, got.rows, start, end, rejected)
    old = stored_closes(ctx, symbol, start, split.execution_date)
    merge_into_data_file(ctx.storage, symbol, good)  # re-fetched rows are newer: they win
    suspicious = check_split(ctx, split, old, good)  # before the marker: it reads the last one
    covered = set(good.column("date").to_pylist())
    stale = [d for d in date_files if d < split.execution_date]
    gone = [date_files[d] for d in stale if d in covered]
    kept = [d for d in stale if d not in covered]
    # Only now, with the adjusted history in place and covering them, the pre-split files go.
    ctx.storage.delete_many(gone)
    marker = {
        "symbol": symbol,
        "split_date": split.execution_date.isoformat(),
        "ratio": split.ratio,
        "run_id": ctx.run_id,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "history_start": start.isoformat(),
        "history_end": end.isoformat(),
    }
    ctx.storage.write_json(layout.restated_marker(symbol), marker)
    note = f"restated {symbol} (split {split.split_to:g}:{split.split_from:g} on "
    note += f"{split.execution_date}): {good.num_rows} rows, {len(gone)} stale date file(s) removed"
    if kept:
        note += f"; {len(kept)} pre-split date file(s) NOT covered by the new history were kept"
    return note + (f"; {suspicious}" if suspicious else "")


def restate_symbols(
    ctx: JobContext, source: Source, splits: Sequence[Split], end: date
) -> tuple[list[str], dict[str, str], list[str]]:
    """Restate every symbol with a split. Returns (restated, failures, messages)."""
    latest: dict[str, Split] = {}
    for split in sorted(splits, key=lambda s: s.execution_date):
        if layout.is_valid_symbol(split.symbol) and split.split_from > 0 and split.split_to > 0:
            latest[split.symbol] = split
    restated: list[str] = []
    failures: dict[str, str] = {}
    messages: list[str] = []
    rejected: list[pa.Table] = []
    try:
        for symbol, split in sorted(latest.items()):
            try:
                note = _restate_one(ctx, source, split, end, rejected)
            except AuthError:
                raise
            except CondvestError as exc:
                failures[f"restate {symbol}"] = str(exc)
                messages.append(f"restating {symbol} failed: {exc}; its date files are kept")
                continue
            if note:
                restated.append(symbol)
                messages.append(note)
    finally:
        write_quarantine(ctx.storage, end, f"{ctx.run_id}-restate", rejected)
    return restated, failures, messages

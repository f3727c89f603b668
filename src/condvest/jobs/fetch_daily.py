"""Daily landing: one grouped-daily request per session → validated per-symbol date files →
quarantine → fetch log (only after every file is written) → optional PostgreSQL → splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

from condvest.core.validate import validate_rows
from condvest.errors import AuthError, CondvestError, DatabaseError
from condvest.jobs.base import JobContext
from condvest.jobs.fetch import (
    _STOP_MARGIN_S,
    STAGE,
    FetchPlan,
    FetchResult,
    fetched_at_iso,
    finish_watermark,
)
from condvest.jobs.fetch_write import (
    lake_symbols,
    restrict,
    write_date_files,
    write_quarantine,
    write_splits,
)
from condvest.sinks import Sink
from condvest.sources.base import Source
from condvest.state.fetchlog import SessionEntry, record_session

log = logging.getLogger("condvest.jobs.fetch")


@dataclass
class _Tally:
    landed: list[date] = field(default_factory=list)
    empty: list[date] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    quarantined: int = 0
    files: int = 0
    bytes: int = 0
    symbols: set[str] = field(default_factory=set)
    messages: list[str] = field(default_factory=list)
    sink_errors: list[str] = field(default_factory=list)


def sink_upsert_session(sink: Sink | None, session: date, rows: pa.Table, run_id: str) -> str:
    """Upsert one landed session into PostgreSQL; '' on success, else the error line.

    The lake is the source of truth: a database failure never undoes the lake write; it is
    reported and makes the run exit 1."""
    if sink is None or rows.num_rows == 0:
        return ""
    try:
        sink.upsert_session(session, rows, run_id=run_id)
    except DatabaseError as exc:
        return f"{session}: PostgreSQL upsert failed: {exc}"
    return ""


def _heal_database(ctx: JobContext, sink: Sink, t: _Tally) -> None:
    """Before landing anything, bring the database up to the lake's watermark (a previous run's
    database write may have failed while its lake write stood)."""
    from condvest.jobs.dbsync import sync_if_behind

    try:
        healed = sync_if_behind(ctx, sink)
    except DatabaseError as exc:
        t.sink_errors.append(f"PostgreSQL sync from the lake failed: {exc}")
        return
    if healed is not None and not healed.ok:
        t.sink_errors.append(
            "PostgreSQL is behind the lake and the sync did not complete; "
            "run: condvest fetch --sync-db"
        )


def _land(
    ctx: JobContext, plan: FetchPlan, source: Source, session: date, sink: Sink | None, t: _Tally
) -> None:
    batch = source.grouped_daily(session)
    restricted = plan.symbols is not None
    if batch.empty:
        t.empty.append(session)
        t.messages.append(
            f"{session}: the source returned no rows — possibly an unscheduled closure. If the "
            f"exchange was closed, add {session} to calendar.closures_file; if data appears "
            f"later, run: condvest fetch --date {session} --force"
        )
        if not restricted:
            entry = SessionEntry(session, "empty", 0, ctx.run_id, fetched_at_iso(), source.name)
            record_session(ctx.storage, entry)
        return
    good, bad = validate_rows(batch.rows)
    good = restrict(good, plan.symbols)
    rejected = [restrict(batch.rejected, plan.symbols), restrict(bad, plan.symbols)]
    symbols, size = write_date_files(
        ctx.storage, session, good, workers=ctx.settings.fetch.write_concurrency
    )
    quarantined = write_quarantine(ctx.storage, session, ctx.run_id, rejected)
    if not restricted:
        entry = SessionEntry(
            session,
            "landed",
            good.num_rows,
            ctx.run_id,
            fetched_at_iso(),
            source.name,
            symbols,
            quarantined,
        )
        record_session(ctx.storage, entry)  # only now: every file of the session is written
    if not t.sink_errors:
        # After a database failure, later sessions are not upserted: the database watermark
        # must never pass a session the database lacks. The next run heals it from the lake.
        error = sink_upsert_session(sink, session, good, ctx.run_id)
        if error:
            t.sink_errors.append(error)
    t.landed.append(session)
    t.rows += good.num_rows
    t.quarantined += quarantined
    t.files += len(symbols)
    t.bytes += size
    t.symbols.update(symbols)
    log.info(
        "landed %s: %d rows, %d symbols, %d quarantined",
        session,
        good.num_rows,
        len(symbols),
        quarantined,
    )


def run_daily(ctx: JobContext, plan: FetchPlan, source: Source) -> FetchResult:
    t = _Tally()
    known = lake_symbols(ctx.storage)
    sink = ctx.sink()
    partial = False
    if sink is not None:
        _heal_database(ctx, sink, t)
    try:
        for i, session in enumerate(plan.sessions):
            if ctx.out_of_time(_STOP_MARGIN_S):
                partial = True
                t.messages.append(
                    f"stopped before the time limit; {len(plan.sessions) - i} session(s) left "
                    "for the next run"
                )
                break
            try:
                _land(ctx, plan, source, session, sink, t)
            except AuthError:
                raise
            except CondvestError as exc:
                t.failed[session.isoformat()] = str(exc)
                left = len(plan.sessions) - i - 1
                t.messages.append(
                    f"{session} failed: {exc}"
                    + (f"; {left} later session(s) left for the next run" if left else "")
                )
                break
        splits, restated = _splits_and_restatement(ctx, plan, source, t, known)
    finally:
        ctx.close()
    new = sorted(t.symbols - known) if known else []
    _report_new_symbols(ctx, plan, source, new, t)
    watermark = finish_watermark(ctx) if plan.symbols is None else None
    if plan.gap is not None:
        t.messages.append(
            f"{plan.gap.sessions} missing session(s) {plan.gap.start}..{plan.gap.end} were not "
            f"fetched (over max_backfill_days); fill them with: {plan.gap.command}"
        )
    missing = _missing_symbols(plan, source, t)
    ok = not (t.failed or t.empty or plan.gap or t.sink_errors)
    return FetchResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=ok,
        duration_s=0.0,
        mode="daily",
        source=source.name,
        partial=partial,
        sessions_planned=len(plan.sessions),
        sessions=t.landed,
        empty_sessions=t.empty,
        failed=t.failed,
        rows=t.rows,
        symbols=len(t.symbols),
        new_symbols=len(new),
        quarantined=t.quarantined,
        files=t.files,
        bytes=t.bytes,
        splits=splits,
        restated=restated,
        symbols_missing=missing,
        gap=plan.gap,
        watermark=watermark,
        sink_errors=t.sink_errors,
        messages=t.messages,
    )


def _missing_symbols(plan: FetchPlan, source: Source, t: _Tally) -> list[str]:
    """--symbols the source delivered no bar for in any session landed this run, named in the
    result and a warning (a typo, a ticker spelled otherwise — Polygon writes BRK.A — or one
    not trading then); it does not fail the run."""
    if plan.symbols is None or not t.landed:
        return []
    missing = sorted(set(plan.symbols) - t.symbols)
    if missing:
        span = f"{min(t.landed)}" + (f"..{max(t.landed)}" if len(t.landed) > 1 else "")
        message = (
            f"{len(missing)} of {len(plan.symbols)} requested symbol(s) got no bars from "
            f"{source.name} for {span}: {', '.join(missing[:20])}"
            f"{', …' if len(missing) > 20 else ''} (check the tickers)"
        )
        log.warning("%s", message)
        t.messages.append(message)
    return missing


def _splits_and_restatement(
    ctx: JobContext, plan: FetchPlan, source: Source, t: _Tally, known: set[str]
) -> tuple[int, list[str]]:
    """Ask for splits executed in the landed sessions; restate split symbols already in the lake."""
    if not t.landed or t.failed:
        return 0, []
    from condvest.jobs.fetch_extra import restate_symbols

    try:
        splits = source.splits(min(t.landed), max(t.landed))
        t.bytes += write_splits(ctx.storage, splits, source.name)
    except AuthError:
        raise
    except CondvestError as exc:
        t.failed["splits"] = str(exc)
        t.messages.append(f"splits could not be fetched: {exc}; re-run to restate split symbols")
        return 0, []
    relevant = [s for s in splits if s.symbol in known]
    if plan.symbols is not None:
        relevant = [s for s in relevant if s.symbol in plan.symbols]
    restated, failures, messages = restate_symbols(ctx, source, relevant, max(t.landed))
    t.failed.update(failures)
    t.messages.extend(messages)
    return len(splits), restated


def _report_new_symbols(
    ctx: JobContext, plan: FetchPlan, source: Source, new: list[str], t: _Tally
) -> None:
    if not new or not t.landed:
        return
    s = ctx.settings.fetch
    if not s.backfill_new_symbols:
        shown = ",".join(new[:5]) + ("…" if len(new) > 5 else "")
        t.messages.append(
            f"{len(new)} new symbol(s) seen ({shown}); their history is not fetched "
            "(fetch.backfill_new_symbols is off): condvest fetch --history --symbols "
            f"{','.join(new[:20])}{',…' if len(new) > 20 else ''} costs one request per symbol"
        )
        return
    from condvest.jobs.fetch_extra import land_histories

    failures, rows, size, messages, _ = land_histories(ctx, source, new, None, max(t.landed))
    t.failed.update(failures)
    t.bytes += size
    t.messages.extend(messages)
    t.messages.append(f"history for {len(new)} new symbol(s): {rows} rows merged")

"""Daily landing: one grouped-daily request per session → validated per-symbol date files →
quarantine → optional PostgreSQL → splits → dividends → fetch log.

A session is complete — recorded in the fetch log, so the watermark may pass it — only when its
files are written *and* the split check and the dividends request of the run's window succeeded
(a split restatement that failed keeps its execution session open). A session the source
answered with no rows, or with far fewer accepted rows than the recent sessions, is a failed
session: nothing of it is written, it stays missing (status shows the reason) and the next run
asks again."""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

from condvest.core.validate import validate_rows
from condvest.errors import AuthError, CondvestError, DatabaseError, SourceError
from condvest.jobs.bronze import symbol_dirs
from condvest.jobs.context import JobContext
from condvest.jobs.fetch.backfill import finish_watermark
from condvest.jobs.fetch.dbsync import sync_if_behind
from condvest.jobs.fetch.dividends import Landed, daily_dividends
from condvest.jobs.fetch.history import land_histories, restate_symbols
from condvest.jobs.fetch.landing import (
    restrict,
    write_date_files,
    write_quarantine,
    write_splits,
)
from condvest.jobs.fetch.model import (
    STAGE,
    STOP_MARGIN_S,
    DailyPlan,
    FetchResult,
    fetched_at_iso,
    paced_per_s,
    row_bounds,
)
from condvest.sinks import Sink
from condvest.sources.base import Batch, Source
from condvest.state.fetchlog import (
    SessionEntry,
    landed_sessions,
    read_session,
    record_session,
    update_failures,
)

log = logging.getLogger("condvest.jobs.fetch")
_MAX_CONSECUTIVE_FAILURES = 3
"""After this many failed sessions in a row the source is taken to be down: stop, leave the
rest for the next run (each failure already spent its own retries)."""


class SessionRejected(SourceError):
    """The source answered, but the answer cannot be this session's data (nothing accepted, or
    far fewer rows than the recent sessions): nothing is written, the session stays missing."""


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
    pending: list[SessionEntry] = field(default_factory=list)
    """Landed sessions whose fetch-log entry waits for the split check."""
    reasons: dict[date, str] = field(default_factory=dict)
    """Sessions not completed by this run → why (kept for status)."""
    recent_rows: list[int] = field(default_factory=list)
    """Accepted rows of the latest landed sessions (the min_session_fraction baseline)."""
    wait_left_s: float = 0.0


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


def _recent_rows(ctx: JobContext, before: date) -> list[int]:
    """Accepted rows of the last ``fetch.session_lookback`` landed sessions before ``before``
    (a few small reads; entries of empty sessions, which older versions wrote, are skipped)."""
    lookback = ctx.settings.fetch.session_lookback
    days = sorted((d for d in landed_sessions(ctx.storage) if d < before), reverse=True)
    out: list[int] = []
    for day in days[: 2 * lookback]:
        try:
            entry = read_session(ctx.storage, day)
        except CondvestError:
            continue  # a corrupt entry is status's business, not a baseline
        if entry is not None and entry.status == "landed" and entry.rows > 0:
            out.append(entry.rows)
        if len(out) == lookback:
            break
    return out[::-1]


def _ask(ctx: JobContext, source: Source, session: date, t: _Tally) -> Batch:
    """The session's grouped daily; an empty answer is re-asked while ``unpublished_wait_s``
    (and the run's time budget) allow — a run just after the close may beat the vendor."""
    batch = source.grouped_daily(session)
    pause = ctx.settings.fetch.unpublished_retry_s
    while batch.empty and t.wait_left_s > 0 and not ctx.out_of_time(STOP_MARGIN_S + pause):
        nap = min(pause, t.wait_left_s)
        log.info("%s: not published yet; asking again in %.0fs", session, nap)
        time.sleep(nap)
        t.wait_left_s -= nap
        batch = source.grouped_daily(session)
    return batch


def _why_rejected(rejected: list[pa.Table]) -> str:
    reasons: Counter[str] = Counter()
    sample = ""
    for table in rejected:
        for row in table.select(["reason", "raw"]).to_pylist():
            reasons[str(row["reason"])] += 1
            sample = sample or str(row["raw"])[:160]
    if not reasons:
        return ""
    top = ", ".join(f"{n} × {reason}" for reason, n in reasons.most_common(3))
    return f"; rejected: {top}" + (f"; e.g. {sample}" if sample else "")


def _check_size(
    ctx: JobContext,
    session: date,
    good: pa.Table,
    rejected: list[pa.Table],
    t: _Tally,
    *,
    restricted: bool,
) -> None:
    """Raise SessionRejected when the accepted rows cannot be the whole session."""
    total = good.num_rows + sum(r.num_rows for r in rejected)
    accepted = good.num_rows
    if restricted:
        if accepted == 0 and total:
            raise SessionRejected(
                f"{session}: none of the {total} row(s) for the requested symbols was accepted"
                + _why_rejected(rejected)
            )
        return
    fraction = ctx.settings.fetch.min_session_fraction
    median = statistics.median(t.recent_rows) if t.recent_rows else 0.0
    floor = fraction * median
    if accepted == 0 or accepted < floor:
        baseline = (
            f", below {fraction:g} × the median {median:g} of the last {len(t.recent_rows)} "
            "landed sessions (fetch.min_session_fraction)"
            if accepted
            else ""
        )
        raise SessionRejected(
            f"{session}: {accepted} of {total} row(s) accepted{baseline}" + _why_rejected(rejected),
            hint="nothing of it was written; the next run asks again",
        )


def _land(
    ctx: JobContext, plan: DailyPlan, source: Source, session: date, sink: Sink | None, t: _Tally
) -> None:
    batch = _ask(ctx, source, session, t)
    restricted = plan.symbols is not None
    if batch.empty:
        t.empty.append(session)
        t.reasons[session] = "the source returned no rows (not published yet, or a closure)"
        log.warning("%s: the source returned no rows; it stays missing", session)
        t.messages.append(
            f"{session}: the source returned no rows — not published yet, or an unscheduled "
            "closure. It stays missing and every run asks again; if the exchange was closed, "
            f"add {session} to calendar.closures_file"
        )
        return
    good, bad = validate_rows(batch.rows, row_bounds(ctx))
    good = restrict(good, plan.symbols)
    rejected = [restrict(batch.rejected, plan.symbols), restrict(bad, plan.symbols)]
    _check_size(ctx, session, good, rejected, t, restricted=restricted)
    symbols, size = write_date_files(
        ctx.storage, session, good, workers=ctx.settings.fetch.write_concurrency
    )
    quarantined = write_quarantine(ctx.storage, session, ctx.run_id, rejected)
    if not restricted:
        t.pending.append(
            SessionEntry(
                session,
                "landed",
                good.num_rows,
                ctx.run_id,
                fetched_at_iso(),
                source.name,
                symbols,
                quarantined,
            )
        )
        t.recent_rows = [*t.recent_rows, good.num_rows][-ctx.settings.fetch.session_lookback :]
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


def _record(ctx: JobContext, t: _Tally, held: dict[date, str]) -> list[date]:
    """Write the fetch-log entries of the landed sessions the split check did not hold back
    (only now: every file of the session is written and its splits are applied)."""
    done = []
    for entry in t.pending:
        if entry.session in held:
            t.reasons[entry.session] = held[entry.session]
            continue
        record_session(ctx.storage, entry)
        done.append(entry.session)
    return done


def run_daily(ctx: JobContext, plan: DailyPlan, source: Source) -> FetchResult:
    t = _Tally()
    dividends = Landed()
    known = symbol_dirs(ctx.storage)
    sink = ctx.sink()
    if sink is not None:
        _heal_database(ctx, sink, t)
    t.wait_left_s = ctx.settings.fetch.unpublished_wait_s
    if plan.sessions and plan.symbols is None:
        t.recent_rows = _recent_rows(ctx, plan.sessions[0])
    try:
        partial = _land_sessions(ctx, plan, source, sink, t)
        splits, restated, held = _splits_and_restatement(ctx, plan, source, t, known)
        dividends, held_back = daily_dividends(
            ctx, source, t.landed, plan.symbols, sink, t.failed, t.messages
        )
        held = held_back | held  # a session held by both keeps the split check's reason
        t.bytes += dividends.bytes
        t.quarantined += dividends.quarantined
        t.sink_errors.extend(dividends.sink_errors)
        if plan.symbols is None:
            recorded = _record(ctx, t, held)
            try:
                update_failures(ctx.storage, t.reasons, set(recorded), run_id=ctx.run_id)
            except CondvestError as exc:  # it only explains; the sessions' own errors matter
                log.warning("could not keep why sessions failed: %s", exc)
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
    ok = not (t.failed or t.empty or plan.gap or t.sink_errors or t.reasons)
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
        dividends=dividends.dividends,
        restated=restated,
        symbols_missing=missing,
        gap=plan.gap,
        watermark=watermark,
        sink_errors=t.sink_errors,
        messages=t.messages,
    )


def _land_sessions(
    ctx: JobContext, plan: DailyPlan, source: Source, sink: Sink | None, t: _Tally
) -> bool:
    """Land the plan's sessions in order, into ``t``; True when the time limit stopped it."""
    rate = paced_per_s(ctx, plan.source)  # one grouped-daily request per session
    progress = ctx.progress(STAGE, len(plan.sessions), "sessions", rate_per_s=rate).start()
    in_a_row = 0
    try:
        for i, session in enumerate(plan.sessions):
            if ctx.out_of_time(STOP_MARGIN_S):
                t.messages.append(
                    f"stopped before the time limit; {len(plan.sessions) - i} session(s) left "
                    "for the next run"
                )
                return True
            try:
                _land(ctx, plan, source, session, sink, t)
                in_a_row = 0
            except AuthError:
                raise
            except CondvestError as exc:
                # Sessions are independent: one bad answer does not block the later ones (the
                # watermark stays at the contiguous frontier, so this one is asked again).
                t.failed[session.isoformat()] = str(exc)
                t.reasons[session] = str(exc)
                t.messages.append(f"{session} failed: {exc}")
                # on stderr too: with --output json (or -q) an exit 1 must not come without a word
                log.error("%s failed: %s", session, exc)
                in_a_row += 1
                left = len(plan.sessions) - i - 1
                if in_a_row >= _MAX_CONSECUTIVE_FAILURES and left:
                    t.messages.append(
                        f"{in_a_row} sessions failed in a row: the source looks down; "
                        f"{left} later session(s) left for the next run"
                    )
                    break
            finally:
                progress.advance()
    finally:
        progress.close()
    return False


def _missing_symbols(plan: DailyPlan, source: Source, t: _Tally) -> list[str]:
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
    ctx: JobContext, plan: DailyPlan, source: Source, t: _Tally, known: set[str]
) -> tuple[int, list[str], dict[date, str]]:
    """Ask for splits executed in the landed sessions; restate split symbols already in the lake.

    Returns (splits seen, symbols restated, sessions held back → why): when the splits request
    fails every landed session is held back (the next run lands it and asks again); when one
    symbol's restatement fails, its execution session is."""
    if not t.landed:
        return 0, [], {}
    window = (min(t.landed), max(t.landed))
    try:
        answer = source.splits(*window)
    except AuthError:
        raise
    except CondvestError as exc:
        t.failed["splits"] = str(exc)
        why = f"the split check for {window[0]}..{window[1]} failed: {exc}"
        t.messages.append(
            f"{why}; the landed sessions are not recorded and the next run fetches them again"
        )
        return 0, [], dict.fromkeys(t.landed, why)
    splits, bad = answer.splits, answer.rejected
    if bad.num_rows:
        t.quarantined += write_quarantine(ctx.storage, window[1], f"{ctx.run_id}-splits", [bad])
        t.messages.append(f"{bad.num_rows} split row(s) quarantined{_why_rejected([bad])}")
    t.bytes += write_splits(ctx.storage, splits, source.name)
    if not ctx.settings.polygon.adjusted:
        if splits:  # a raw lake: the rows stay as traded, the factors carry the splits on read
            t.messages.append(
                f"{len(splits)} split(s) recorded; no history re-fetched: the lake stores raw "
                "prices (polygon.adjusted = false), so a split needs no restatement"
            )
        return len(splits), [], {}
    # symbols landed by this run too: their rows before the split are on the old scale
    relevant = [s for s in splits if s.symbol in known | t.symbols]
    if plan.symbols is not None:
        relevant = [s for s in relevant if s.symbol in plan.symbols]
    restated, failures, messages = restate_symbols(ctx, source, relevant, max(t.landed))
    t.failed.update(failures)
    t.messages.extend(messages)
    held: dict[date, str] = {}
    for split in relevant:
        error = failures.get(f"restate {split.symbol}")
        if error and split.execution_date in t.landed:
            held[split.execution_date] = f"restating {split.symbol} failed: {error}"
    return len(splits), restated, held


def _report_new_symbols(
    ctx: JobContext, plan: DailyPlan, source: Source, new: list[str], t: _Tally
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
    failures, rows, size, messages, _ = land_histories(ctx, source, new, None, max(t.landed))
    t.failed.update(failures)
    t.bytes += size
    t.messages.extend(messages)
    t.messages.append(f"history for {len(new)} new symbol(s): {rows} rows merged")

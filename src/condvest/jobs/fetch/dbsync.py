"""Heal lake → PostgreSQL divergence (``condvest fetch --sync-db``, docs/design.md §9, issue 6).

The lake is the source of truth. When a database write failed after the lake write stood, the
database watermark stays behind the fetch log; this job re-reads the sessions the database lacks
from the lake — each symbol's ``date=`` file when it is still there, else the rows of that date in
its ``data.parquet`` — upserts them, and only then advances the database watermark, through the
sessions that are complete (never past a session with a row it could not find).

How fetch must use the sink so the watermark never skips a session the database lacks:
call :func:`sync_if_behind` first (the database catches up with the lake before new sessions
are written on top), then ``upsert_session`` per landed session, and after the first
DatabaseError write nothing more to the database in that run (report it, exit 1): the next
run's ``sync_if_behind`` heals from the lake."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from condvest.core import layout
from condvest.errors import CondvestError, UsageError
from condvest.jobs.base import Failure, Job, JobResult
from condvest.jobs.bronze import list_bronze, read_file
from condvest.jobs.context import JobContext
from condvest.sinks import Sink
from condvest.state.fetchlog import SessionEntry, landed_sessions, read_session, read_watermark

log = logging.getLogger("condvest.jobs.dbsync")

BATCH_ROWS = 200_000
"""Rows per upsert transaction: large enough for COPY to pay off, small enough for memory."""
READ_WORKERS = 16
MISSING_SHOWN = 20


@dataclass(frozen=True)
class SymbolWork:
    """What to read for one symbol: its date files, and the dates to take from data.parquet."""

    symbol: str
    date_keys: tuple[str, ...]
    data_dates: tuple[date, ...]


@dataclass(frozen=True)
class DbSyncOptions:
    """``fetch --sync-db [--start A] [--end B]``: a range re-syncs its landed sessions."""

    start: date | None = None
    end: date | None = None


@dataclass(frozen=True)
class DbSyncPlan:
    db_watermark: date | None
    landed_after_watermark: tuple[date, ...]
    sessions: tuple[date, ...]
    expected: frozenset[tuple[str, date]]
    work: tuple[SymbolWork, ...]

    @property
    def date_files(self) -> int:
        return sum(len(w.date_keys) for w in self.work)

    @property
    def data_files(self) -> int:
        return sum(1 for w in self.work if w.data_dates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "db_watermark": self.db_watermark.isoformat() if self.db_watermark else None,
            "sessions": [d.isoformat() for d in self.sessions],
            "symbols": len(self.work),
            "date_files": self.date_files,
            "data_files": self.data_files,
        }


@dataclass(frozen=True)
class DbSyncResult(JobResult):
    sessions: int = 0
    first_session: str | None = None
    last_session: str | None = None
    date_files_read: int = 0
    data_files_read: int = 0
    rows_read: int = 0
    rows_changed: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None
    missing_rows: int = 0
    missing_examples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    partial: bool = False

    def stage_failures(self) -> tuple[Failure, ...]:
        return tuple(Failure("", error) for error in self.errors)


def _read_entries(ctx: JobContext, days: Iterable[date]) -> dict[date, SessionEntry]:
    days = list(days)
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        found = list(pool.map(lambda d: read_session(ctx.storage, d), days))
    return {d: e for d, e in zip(days, found, strict=True) if e is not None}


def plan_db_sync(
    ctx: JobContext, sink: Sink, *, start: date | None = None, end: date | None = None
) -> DbSyncPlan:
    """Which landed sessions the database lacks, and which lake files hold their rows.

    Without ``start``/``end``: every landed session after the database watermark (all of them
    when the database has none). With a range: the landed sessions in it, whatever the watermark.
    """
    if start and end and start > end:
        raise UsageError(f"--start {start} is after --end {end}")
    db_wm = sink.watermark()
    landed = sorted(landed_sessions(ctx.storage))
    after = tuple(d for d in landed if db_wm is None or d > db_wm)
    if start is None and end is None:
        targets = after
    else:
        targets = tuple(
            d for d in landed if (start is None or d >= start) and (end is None or d <= end)
        )
    entries = _read_entries(ctx, targets)
    wanted = set(targets)
    date_keys: dict[str, list[str]] = defaultdict(list)
    have_file: set[tuple[str, date]] = set()
    data_symbols: set[str] = set()
    for symbol, files in list_bronze(ctx.storage).symbols.items():
        if files.data is not None:
            data_symbols.add(symbol)
        for day, obj in files.dates.items():
            if day in wanted:
                date_keys[symbol].append(obj.key)
                have_file.add((symbol, day))
    expected: set[tuple[str, date]] = set()
    unlisted: list[date] = []  # sessions whose log entry does not name its symbols
    for day in targets:
        entry = entries.get(day)
        if entry is None or entry.status == "empty":
            continue
        if entry.symbols:
            expected.update((s, day) for s in entry.symbols)
        elif entry.rows:
            unlisted.append(day)
    from_data: dict[str, set[date]] = defaultdict(set)
    for symbol, day in expected - have_file:
        from_data[symbol].add(day)
    work = []
    for symbol in sorted(set(date_keys) | set(from_data) | (data_symbols if unlisted else set())):
        dates = from_data.get(symbol, set())
        if unlisted and symbol in data_symbols:
            dates = dates | set(unlisted)
        work.append(
            SymbolWork(
                symbol,
                tuple(sorted(date_keys.get(symbol, []))),
                tuple(sorted(dates)) if symbol in data_symbols else (),
            )
        )
    return DbSyncPlan(db_wm, after, targets, frozenset(expected), tuple(work))


@dataclass(frozen=True)
class _Read:
    """One symbol's rows, and the files that could not be read (with the dates they held)."""

    table: pa.Table
    failures: tuple[tuple[str, tuple[date, ...]], ...] = ()


def _read_symbol(ctx: JobContext, work: SymbolWork) -> _Read:
    # Each file on its own: one corrupt date file must not hide the symbol's other sessions.
    tables = []
    failures: list[tuple[str, tuple[date, ...]]] = []
    for key in work.date_keys:
        try:
            tables.append(read_file(ctx.storage, key))
        except CondvestError as exc:
            day = layout.parse_date_file(key)
            failures.append((str(exc), (day,) if day else ()))
    if work.data_dates:
        key = layout.data_file(work.symbol)
        try:
            history = read_file(ctx.storage, key)
            wanted = pa.array(work.data_dates, pa.date32())
            tables.append(history.filter(pc.is_in(history.column("date"), value_set=wanted)))
        except CondvestError as exc:
            failures.append((str(exc), work.data_dates))
    return _Read(pa.concat_tables(tables) if tables else pa.table({}), tuple(failures))


def _new_watermark(plan: DbSyncPlan, complete: set[date]) -> date | None:
    """The last session of the unbroken run of complete sessions after the DB watermark."""
    last = None
    for day in plan.landed_after_watermark:
        if day not in complete:
            break
        last = day
    return last


@dataclass
class _Copier:
    """Reads the plan's symbols (a bounded window in parallel: memory stays at a few batches
    even on a full-lake load) and upserts them in batches of BATCH_ROWS."""

    ctx: JobContext
    sink: Sink
    found: set[tuple[str, date]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    broken: set[date] = field(default_factory=set)
    rows_read: int = 0
    rows_changed: int = 0
    partial: bool = False
    _pending: list[pa.Table] = field(default_factory=list)

    def flush(self) -> None:
        if self._pending:
            self.rows_changed += self.sink.upsert_rows(pa.concat_tables(self._pending))
            self._pending.clear()

    def take(self, work: SymbolWork, future: Future[_Read]) -> None:
        read = future.result()
        for message, days in read.failures:
            self.errors.append(f"{work.symbol}: {message}")
            self.broken.update(days)
        table = read.table
        if table.num_rows == 0:
            return
        symbols, days = table.column("symbol").to_pylist(), table.column("date").to_pylist()
        self.found.update(zip(symbols, days, strict=True))
        self.rows_read += table.num_rows
        self._pending.append(table)
        if sum(t.num_rows for t in self._pending) >= BATCH_ROWS:
            self.flush()

    def run(self, work: Sequence[SymbolWork]) -> None:
        queue: deque[tuple[SymbolWork, Future[_Read]]] = deque()
        items = iter(work)
        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
            while True:
                while len(queue) < READ_WORKERS * 2 and (item := next(items, None)) is not None:
                    queue.append((item, pool.submit(_read_symbol, self.ctx, item)))
                if not queue:
                    break
                if self.ctx.out_of_time(margin_s=30.0):
                    self.partial = True
                    for _, pending in queue:
                        pending.cancel()
                    break
                self.take(*queue.popleft())
        self.flush()


def run_db_sync(
    ctx: JobContext,
    sink: Sink,
    *,
    start: date | None = None,
    end: date | None = None,
    plan: DbSyncPlan | None = None,
) -> DbSyncResult:
    """Upsert the lake rows of the sessions the database lacks; advance its watermark."""
    started = time.monotonic()
    plan = plan or plan_db_sync(ctx, sink, start=start, end=end)
    copier = _Copier(ctx, sink)
    copier.run(plan.work)
    found, errors, broken, partial = copier.found, copier.errors, copier.broken, copier.partial
    missing = sorted(plan.expected - found, key=lambda p: (p[1], p[0]))
    broken.update(day for _, day in missing)
    wm_after = plan.db_watermark
    if not partial:
        complete = set(plan.sessions) - broken
        target = _new_watermark(plan, complete)
        if target is not None:
            wm_after = sink.advance_watermark(target, run_id=ctx.run_id)
    for symbol, day in missing[:MISSING_SHOWN]:
        log.error(
            "the lake has no row for %s on %s: the database cannot be synced past it",
            symbol,
            day.isoformat(),
        )
    return DbSyncResult(
        stage="db-sync",
        run_id=ctx.run_id,
        dry_run=False,
        ok=not missing and not errors,
        duration_s=round(time.monotonic() - started, 3),
        sessions=len(plan.sessions),
        first_session=plan.sessions[0].isoformat() if plan.sessions else None,
        last_session=plan.sessions[-1].isoformat() if plan.sessions else None,
        date_files_read=plan.date_files,
        data_files_read=plan.data_files,
        rows_read=copier.rows_read,
        rows_changed=copier.rows_changed,
        watermark_before=plan.db_watermark.isoformat() if plan.db_watermark else None,
        watermark_after=wm_after.isoformat() if wm_after else None,
        missing_rows=len(missing),
        missing_examples=[f"{s} {d.isoformat()}" for s, d in missing[:MISSING_SHOWN]],
        errors=errors,
        partial=partial,
    )


def _sink(ctx: JobContext) -> Sink:
    sink = ctx.sink()
    if sink is None:
        raise UsageError("--sync-db needs PostgreSQL", hint="set postgres.dsn or RDS_SECRET_ARN")
    return sink


def _plan(ctx: JobContext, options: DbSyncOptions) -> DbSyncPlan:
    return plan_db_sync(ctx, _sink(ctx), start=options.start, end=options.end)


def _execute(ctx: JobContext, plan: DbSyncPlan) -> DbSyncResult:
    return run_db_sync(ctx, _sink(ctx), plan=plan)


DB_SYNC: Job[DbSyncOptions, DbSyncPlan, DbSyncResult] = Job("fetch", _plan, _execute)
"""``fetch --sync-db``: under the fetch lock (it writes the database watermark fetch writes)."""


def sync_if_behind(ctx: JobContext, sink: Sink) -> DbSyncResult | None:
    """The automatic heal at the start of a fetch: sync only when the database watermark is
    behind the lake's (two small reads when it is not). None when nothing was behind."""
    lake_mark = read_watermark(ctx.storage)
    if lake_mark is None:
        return None
    db_mark = sink.watermark()
    if db_mark is not None and db_mark >= lake_mark:
        return None
    log.warning(
        "the database watermark (%s) is behind the lake's (%s): syncing from the lake",
        db_mark.isoformat() if db_mark else "unset",
        lake_mark.isoformat(),
    )
    return run_db_sync(ctx, sink)

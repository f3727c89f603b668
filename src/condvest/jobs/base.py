"""What every job shares: the context it runs in, its result record, and the stage wrapper
(lock + run record) around a real run. Jobs follow one shape (docs/design.md §15):
``plan_<verb>(ctx, options) -> <Verb>Plan`` and ``run_<verb>(ctx, plan) -> <Verb>Result``;
``--dry-run`` renders the plan and executes nothing."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from condvest.core.calendar import TradingCalendar, get_calendar
from condvest.errors import CondvestError, UsageError
from condvest.progress import Tracker, close_open_trackers
from condvest.settings import Settings
from condvest.sinks import Sink, open_sink
from condvest.state.lock import StageLock, exclude_other_parts
from condvest.state.marker import adopt_lake, mark_new_lake, scale_of_settings
from condvest.state.runs import RunRecord, write_run_record
from condvest.storage import Storage, open_storage

log = logging.getLogger("condvest.jobs")

DEADLINE: ContextVar[float | None] = ContextVar("condvest_deadline", default=None)
"""A ``time.monotonic()`` value by which jobs should stop cleanly (set by the Lambda handler).
Jobs check :meth:`JobContext.out_of_time` between units of work (sessions, symbols, intervals)
and return a result with ``partial=True`` instead of being killed mid-write."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class JobContext:
    """Everything a job needs; tests swap ``clock`` (the one fake seam)."""

    settings: Settings
    storage: Storage
    calendar: TradingCalendar
    run_id: str = field(default_factory=new_run_id)
    clock: Callable[[], datetime] = utcnow
    deadline: float | None = None
    """``time.monotonic()`` value by which a job should stop cleanly (Lambda)."""
    _sink: Sink | None = field(default=None, init=False, repr=False)
    _sink_opened: bool = field(default=False, init=False, repr=False)

    def sink(self) -> Sink | None:
        """The PostgreSQL sink when configured (one per context, connected on first use), or
        None when PostgreSQL is off — the embedded default."""
        if not self._sink_opened:
            self._sink = open_sink(self.settings)
            self._sink_opened = True
        return self._sink

    def progress(
        self, stage: str, total: int | None, unit: str, *, rate_per_s: float | None = None
    ) -> Tracker:
        """The progress of a long loop over ``total`` ``unit`` (docs/progress.md): use as a
        context manager and ``advance()`` per item. ``rate_per_s``: the configured pace of the
        items (paced requests), for the ETA."""
        interval = self.settings.log.progress_interval_s
        return Tracker(stage, total, unit, rate_per_s=rate_per_s, interval_s=interval)

    def close(self) -> None:
        """Release what the context opened (the database connection); safe to call twice."""
        if self._sink is not None:
            self._sink.close()
        self._sink, self._sink_opened = None, False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        run_id: str | None = None,
    ) -> JobContext:
        storage = open_storage(settings.lake.uri, settings)
        calendar = get_calendar(
            settings.calendar.exchange,
            settings.calendar.closures_file,
            settings.calendar.cache_dir,
        )
        return cls(settings, storage, calendar, run_id or new_run_id(), clock, DEADLINE.get())

    def now(self) -> datetime:
        return self.clock()

    def latest_completed_session(self) -> date:
        return self.calendar.latest_completed_session(
            self.now(), self.settings.calendar.close_delay_minutes
        )

    def time_left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def out_of_time(self, margin_s: float = 0.0) -> bool:
        left = self.time_left_s()
        return left is not None and left <= margin_s


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class Failure:
    """One thing a run could not do — the one shape every result reports its failures in
    (:meth:`JobResult.failure_list`): what (a symbol, a session, an interval such as ``5d``;
    "" when the reason is a whole sentence) and why."""

    subject: str
    reason: str = ""

    def __str__(self) -> str:
        if not self.subject:
            return self.reason
        return f"{self.subject}: {self.reason}" if self.reason else self.subject


@dataclass(frozen=True)
class JobResult:
    """Base of every result: flat, frozen, rendered as a table or JSON, returned by Lambda."""

    stage: str
    run_id: str
    dry_run: bool
    ok: bool
    duration_s: float
    database_error: str | None = field(default=None, kw_only=True)
    """The configured PostgreSQL database could not be written (the run's job-run row): the run
    failed, whatever its lake work did (one line naming user@host:port/db, never the password).
    Left out of :meth:`to_dict` when None."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = to_jsonable(self)
        if out.get("database_error") is None:
            out.pop("database_error", None)
        return out

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def stage_failures(self) -> tuple[Failure, ...]:
        """What this stage could not do, in the one shape (each stage's result lists its own,
        from the fields its ``to_dict()`` carries)."""
        return ()

    def failure_list(self) -> tuple[Failure, ...]:
        """Every failure of the run: the stage's, then the database's."""
        database = (Failure("", f"PostgreSQL: {self.database_error}"),)
        return self.stage_failures() + (database if self.database_error else ())

    def failure_summary(self) -> str:
        """What failed, in one line (the run record's ``error``, shown by ``status``), from
        :meth:`failure_list`: the failed symbols, sessions or intervals with their reasons,
        then any error said in a sentence."""
        items = self.failure_list()
        named = [str(f) for f in items if f.subject]
        parts = [_listed(len(named), named)] if named else []
        parts += [f.reason for f in items if not f.subject and f.reason]
        text = "; ".join(parts) or "failed (see the run's counts)"
        return text if len(text) <= 500 else text[:497] + "..."

    def counts(self) -> dict[str, Any]:
        """Scalar fields, for the run record."""
        return {
            k: v
            for k, v in self.to_dict().items()
            if isinstance(v, int | float | str | bool) and k not in ("stage", "run_id")
        }


def _listed(total: int, items: list[str], shown: int = 3) -> str:
    more = f" (+{total - shown} more)" if total > shown else ""
    return f"{total} failed: " + "; ".join(items[:shown]) + more


R = TypeVar("R", bound=JobResult)


def clock_skew(ctx: JobContext) -> str | None:
    """The line saying the lake is ahead of the host clock (its watermark is a session that
    has not completed yet by this clock), or None. One small read."""
    from condvest.state.fetchlog import read_watermark

    watermark = read_watermark(ctx.storage)
    latest = ctx.latest_completed_session()
    if watermark is None or watermark <= latest:
        return None
    return (
        f"the lake holds sessions through {watermark}, after the latest completed session "
        f"{latest} by this host's clock ({ctx.now().isoformat(timespec='seconds')}): the clock "
        "is behind"
    )


def refuse_clock_skew(ctx: JobContext) -> None:
    """Writing commands refuse to run on a lake that is ahead of the clock: with a clock in the
    past, planners would take real sessions for future ones (resample dropped months)."""
    problem = clock_skew(ctx)
    if problem:
        raise UsageError(problem, hint="fix the host clock (NTP); nothing was written")


def run_stage(
    ctx: JobContext,
    stage: str,
    body: Callable[[StageLock], R],
    *,
    scope: str | None = None,
    parts: bool = False,
) -> R:
    """Run ``body`` under the stage lock, recording the run (start and outcome) in the lake.

    ``scope`` names a part of the stage that runs on its own (a consolidate shard,
    "shard-3-of-8"): it takes its own lock (``<stage>-<scope>``), so parts run in parallel, and
    its runs are recorded under the stage and under the part (see state.runs). ``parts``: the
    stage can run in parts, so a whole run and a part run exclude each other (a full and a
    sharded consolidate at once failed spuriously)."""
    refuse_clock_skew(ctx)  # before the lock: a refused run writes nothing
    # condvest creates a lake here (before the lock's own write makes the location non-empty)
    mark_new_lake(ctx.storage, ctx.now(), scale_of_settings(ctx.settings.polygon.adjusted))
    lock = StageLock(
        ctx.storage,
        f"{stage}-{scope}" if scope else stage,
        run_id=ctx.run_id,
        ttl_s=ctx.settings.lock.ttl_seconds,
    )
    lock.acquire()
    if parts:
        try:
            exclude_other_parts(ctx.storage, stage, scope, ctx.now())
        except BaseException:
            lock.release()
            raise
    started = ctx.now()
    clock = time.monotonic()
    record = RunRecord(stage=stage, run_id=ctx.run_id, started_at=started.isoformat(), scope=scope)
    try:
        write_run_record(ctx.storage, record)
        db_error = _record_in_db(ctx, record)
        result = body(lock)
    except CondvestError as exc:
        _finish(ctx, record, "failed", {}, str(exc), elapsed_s=time.monotonic() - clock)
        lock.release()
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        _finish(ctx, record, "failed", {}, message, elapsed_s=time.monotonic() - clock)
        lock.release()
        raise
    if db_error is not None:
        # A configured database that cannot be written fails the run (exit 1), even one that
        # landed nothing; the lake work stands and the next run heals the database from it.
        result = dataclasses.replace(result, ok=False, database_error=db_error)
    outcome = "success" if result.ok else "failed"
    if result.ok and result.to_dict().get("partial"):
        outcome = "partial"
    error = None if result.ok else result.failure_summary()
    db_error = (
        _finish(
            ctx,
            record,
            outcome,
            result.counts(),
            error,
            elapsed_s=time.monotonic() - clock,
            result=result.to_dict(),
        )
        or db_error
    )
    if result.ok:
        _adopt(ctx)
    if db_error is not None and result.database_error is None:
        result = dataclasses.replace(result, ok=False, database_error=db_error)
    lock.release()
    return result


def _adopt(ctx: JobContext) -> None:
    """An existing lake without a marker gets one on its first successful run."""
    try:
        adopt_lake(ctx.storage, ctx.now())
    except CondvestError as exc:  # the run succeeded; the next one tries again
        log.warning("could not mark %s as a condvest lake: %s", ctx.storage.uri, exc)


def _record_in_db(ctx: JobContext, record: RunRecord) -> str | None:
    """Mirror ``record`` into the database's job-run table when PostgreSQL is on. A database
    failure is returned (run_stage fails the run with it, the CLI prints it as its one error
    line), never raised: it must not hide what the job itself did."""
    try:
        sink = ctx.sink()
        if sink is not None:
            sink.record_run(record)
    except Exception as exc:
        message = str(exc) if isinstance(exc, CondvestError) else f"{type(exc).__name__}: {exc}"
        log.debug("could not record the %s run in PostgreSQL: %s", record.stage, message)
        return message
    return None


def _finish(
    ctx: JobContext,
    record: RunRecord,
    outcome: Any,
    counts: dict[str, Any],
    error: str | None,
    *,
    elapsed_s: float,
    result: dict[str, Any] | None = None,
) -> str | None:
    """Write the run's final record (database, then lake) and emit its metrics (EMF, when on);
    returns the database failure. ``result`` is the job's ``to_dict()`` (None: it raised)."""
    close_open_trackers()  # a loop left by an exception must not keep its display running
    done = record.finished(outcome, ctx.now(), counts, error)
    db_error = _record_in_db(ctx, done)
    if db_error is not None:
        # Reported where status looks: the lake's run record keeps the database failure, and a
        # run that was fine apart from it is a failed run.
        if outcome != "failed":
            outcome, error = "failed", f"PostgreSQL: {db_error}"
        done = record.finished(outcome, ctx.now(), {**counts, "database_error": db_error}, error)
    try:
        write_run_record(ctx.storage, done)
    except CondvestError as exc:  # the job's own outcome matters more than its record
        log.error("could not write the run record of %s: %s", record.stage, exc)
    _emit_run_metrics(ctx, done, elapsed_s, result)
    return db_error


def _emit_run_metrics(
    ctx: JobContext, done: RunRecord, elapsed_s: float, result: dict[str, Any] | None
) -> None:
    from condvest.metrics import emit_emf, stage_metrics

    properties = {"RunId": done.run_id, "Outcome": done.outcome}
    if done.scope:
        properties["Scope"] = done.scope
    emit_emf(
        ctx.settings,
        done.stage,
        ctx.storage.uri,
        stage_metrics(done.stage, done.outcome, elapsed_s, result),
        when=ctx.now(),
        properties=properties,
    )

"""What every job shares: the context it runs in, its result record, and the one runner.

Every stage is a :class:`Job` (docs/design.md, "Jobs: one protocol, one runner"):
``plan(ctx, options) -> Plan`` (frozen, with ``to_dict()``; reads only) and
``execute(ctx, plan) -> Result``. :func:`run_job` alone decides a dry run (plan, render, change
nothing) against a real run (stage lock, run record in the lake and in PostgreSQL, metrics), and
whether the lock comes before planning (a stage whose planning is the expensive part)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

from condvest.errors import CondvestError, DiskFullError, UsageError
from condvest.jobs.context import JobContext
from condvest.progress import close_open_trackers
from condvest.state.lock import StageLock, exclude_other_parts
from condvest.state.marker import adopt_lake, mark_new_lake, scale_of_settings
from condvest.state.runs import RunRecord, write_run_record

__all__ = [
    "DryRun",
    "Job",
    "JobContext",
    "JobResult",
    "Plan",
    "clock_skew",
    "refuse_clock_skew",
    "run_job",
    "run_planned",
    "to_jsonable",
]

log = logging.getLogger("condvest.jobs")


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


class Plan(Protocol):
    """What a stage's ``plan`` returns: frozen, and rendered by ``--dry-run`` as ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]: ...


Opt = TypeVar("Opt")
P = TypeVar("P", bound=Plan)
P_co = TypeVar("P_co", covariant=True)


@dataclass(frozen=True)
class DryRun(Generic[P_co]):
    """What a stage called with ``dry_run=True`` returns: nothing was changed.

    ``plan`` is the plan object the real call would execute; :meth:`to_dict` is what
    ``condvest <command> --dry-run --output json`` prints for it."""

    stage: str
    plan: P_co
    preview: dict[str, Any]
    dry_run: Literal[True] = True

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain data (JSON-ready), the same object the CLI prints."""
        return dict(self.preview)

    @property
    def ok(self) -> bool:
        """A plan that could be made is fine (``--dry-run`` exits 0)."""
        return bool(self.preview.get("ok", True))

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this dry run."""
        return 0 if self.ok else 1


@dataclass(frozen=True)
class Job(Generic[Opt, P, R]):
    """A stage as the runner sees it: how to plan it, how to execute a plan, and how it runs."""

    stage: str
    """The lock's and the run record's name."""
    plan: Callable[[JobContext, Opt], P]
    """Reads the lake and decides the work; writes nothing."""
    execute: Callable[[JobContext, P], R]
    """Does the planned work (under the lock, when ``locked``)."""
    locked: bool = True
    """False: a read-only stage (status) — no lock, no run record."""
    lock_first: bool = False
    """Planning is the expensive part (resample computes every bar): the lock is taken and the
    run recorded before planning, so a second run is refused before doing that work twice."""
    check: Callable[[JobContext, Opt], None] | None = None
    """``lock_first`` only: the refusals that must come before anything is written."""
    scope: Callable[[P], str | None] | None = None
    """The part of the stage a plan covers (a consolidate shard: its own lock and records)."""
    parts: bool = False
    """The stage runs in parts: a whole run and a part run exclude each other."""
    preview: Callable[[JobContext, P], dict[str, Any]] | None = None
    """What ``--dry-run`` prints (default: ``{"dry_run": True, **plan.to_dict()}``)."""
    make_room: Callable[[JobContext, P, DiskFullError], None] | None = None
    """The lock cannot be written on a full disk: free what is safe without it (raises when
    nothing could be), after which the lock is taken again. Vacuum only."""


@overload
def run_job(
    ctx: JobContext, job: Job[Opt, P, R], options: Opt, *, dry_run: Literal[False] = ...
) -> R: ...
@overload
def run_job(
    ctx: JobContext, job: Job[Opt, P, R], options: Opt, *, dry_run: Literal[True]
) -> DryRun[P]: ...
@overload
def run_job(
    ctx: JobContext, job: Job[Opt, P, R], options: Opt, *, dry_run: bool = ...
) -> R | DryRun[P]: ...
def run_job(
    ctx: JobContext, job: Job[Opt, P, R], options: Opt, *, dry_run: bool = False
) -> R | DryRun[P]:
    """Run one stage: a dry run plans and renders (no lock, nothing written); a real run plans
    and executes the plan under the stage lock, recording the run (see :func:`run_planned`)."""
    if dry_run:
        plan = job.plan(ctx, options)
        preview = job.preview(ctx, plan) if job.preview else {"dry_run": True, **plan.to_dict()}
        return DryRun(job.stage, plan, preview)
    if not job.locked:
        return job.execute(ctx, job.plan(ctx, options))
    if job.lock_first:
        if job.check is not None:
            job.check(ctx, options)
        return run_stage(ctx, job.stage, lambda: job.execute(ctx, job.plan(ctx, options)))
    return run_planned(ctx, job, job.plan(ctx, options))


def run_planned(ctx: JobContext, job: Job[Any, P, R], plan: P) -> R:
    """Execute a plan made beforehand under the stage lock, recording the run (what
    :func:`run_job` does after planning; tests and benchmarks call it with a plan in hand)."""
    if not job.locked:
        return job.execute(ctx, plan)
    scope = job.scope(plan) if job.scope is not None else None

    def locked() -> R:
        return run_stage(
            ctx, job.stage, lambda: job.execute(ctx, plan), scope=scope, parts=job.parts
        )

    try:
        return locked()
    except DiskFullError as exc:
        if job.make_room is None:
            raise
        job.make_room(ctx, plan, exc)
        return locked()


def run_stage(
    ctx: JobContext,
    stage: str,
    body: Callable[[], R],
    *,
    scope: str | None = None,
    parts: bool = False,
) -> R:
    """Run ``body`` under the stage lock (held in ``ctx.lock``), recording the run (start and
    outcome) in the lake. Called by the runner only (:func:`run_job`, :func:`run_planned`).

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
    ctx.lock = lock
    if parts:
        try:
            exclude_other_parts(ctx.storage, stage, scope, ctx.now())
        except BaseException:
            _release(ctx, lock)
            raise
    started = ctx.now()
    clock = time.monotonic()
    record = RunRecord(stage=stage, run_id=ctx.run_id, started_at=started.isoformat(), scope=scope)
    try:
        write_run_record(ctx.storage, record)
        db_error = _record_in_db(ctx, record)
        result = body()
    except CondvestError as exc:
        _finish(ctx, record, "failed", {}, str(exc), elapsed_s=time.monotonic() - clock)
        _release(ctx, lock)
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        _finish(ctx, record, "failed", {}, message, elapsed_s=time.monotonic() - clock)
        _release(ctx, lock)
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
    _release(ctx, lock)
    return result


def _release(ctx: JobContext, lock: StageLock) -> None:
    ctx.lock = None
    lock.release()


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

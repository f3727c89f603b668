"""The context a job runs in: settings, storage, calendar, clock, the PostgreSQL sink opened on
first use, the Lambda deadline and the stage lock the runner holds (:mod:`condvest.jobs.base`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from condvest.core.calendar import NEW_YORK, TradingCalendar, get_calendar
from condvest.progress import Tracker
from condvest.settings import Settings
from condvest.sinks import Sink, open_sink
from condvest.state.lock import StageLock
from condvest.storage import Storage, open_storage

DEADLINE: ContextVar[float | None] = ContextVar("condvest_deadline", default=None)
"""A ``time.monotonic()`` value by which jobs should stop cleanly (set by the Lambda handler).
Jobs check :meth:`JobContext.out_of_time` between units of work (sessions, symbols, intervals)
and return a result with ``partial=True`` instead of being killed mid-write."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def today_ny(ctx: JobContext) -> date:
    """Today's date in New York by the context's clock (the exchange's day)."""
    return ctx.now().astimezone(NEW_YORK).date()


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
    lock: StageLock | None = field(default=None, init=False, repr=False)
    """The stage lock the runner holds for the current run (None outside one)."""
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

    def renew_lock(self) -> None:
        """Extend the held stage lock (a long run calls it between units of work)."""
        if self.lock is not None:
            self.lock.renew()

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

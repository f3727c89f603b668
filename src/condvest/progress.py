"""Progress of a stage's long loop (docs/progress.md), shown where the logs go — stderr, never
stdout, so ``--output json | jq`` stays clean:

* ``live``: a rich progress display when the logs are rich (stderr is a terminal);
* ``log``: one log line per loop every ``log.progress_interval_s`` seconds with done / total,
  rate and ETA when the logs are JSON lines (cron, Batch, Lambda) — never one line per item;
* ``off``: nothing under ``-q`` (the logger is at WARNING) or when logging was never set up
  (condvest used as a library).

The backend follows the logging setup (``condvest.logging.configure``, once per process), so a
job only says what it is doing: ``with ctx.progress("fetch", len(sessions), "sessions") as p:``
then ``p.advance()`` per item.

The ETA of a paced loop (Polygon requests at ``polygon.requests_per_minute``) uses the
configured rate while it is the binding constraint — the rate observed so far is at or above
it — and the observed rate otherwise (writes slower than the pacing)."""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any, Literal

Mode = Literal["live", "log", "off"]

log = logging.getLogger("condvest.progress")
_OPEN: set[Tracker] = set()
_OPEN_LOCK = threading.Lock()


def close_open_trackers() -> None:
    """Close the loops an exception left open (the stage wrapper calls it when a run ends)."""
    with _OPEN_LOCK:
        trackers = list(_OPEN)
    for tracker in trackers:
        tracker.close()


atexit.register(close_open_trackers)  # an error leaving a loop open: the terminal is restored


def mode() -> Mode:
    """Which backend a loop starting now uses (from the ``condvest`` logger's setup)."""
    logger = logging.getLogger("condvest")
    if not logger.handlers or not logger.isEnabledFor(logging.INFO):
        return "off"
    rich = any(type(h).__name__ == "RichHandler" for h in logger.handlers)
    return "live" if rich and sys.stderr.isatty() else "log"


def format_s(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Tracker:
    """The progress of one loop: ``advance`` as items finish (thread-safe). A context manager;
    with a total of 0 (nothing to do) it shows nothing."""

    def __init__(
        self,
        stage: str,
        total: int | None,
        unit: str,
        *,
        rate_per_s: float | None = None,
        interval_s: float = 30.0,
        backend: Mode | None = None,
    ) -> None:
        self.stage, self.unit, self.total = stage, unit, total
        self.rate_limit_per_s = rate_per_s if rate_per_s and rate_per_s > 0 else None
        """The configured pace of the loop's items (requests at the configured rate)."""
        self.interval_s = interval_s
        self.done = 0
        self.backend: Mode = backend or mode()
        self._started = self._first = self._last = time.monotonic()
        self._first_n = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: Any = None
        self._lines = 0

    # -- what jobs call ----------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        with self._lock:
            if not self.done:
                self._first, self._first_n = time.monotonic(), n
            self.done += n
            self._last = time.monotonic()
        if self._task is not None:
            _Live.update(self._task, self)

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self._task is not None:
            _Live.update(self._task, self)

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Tracker:
        """Show the loop (``with`` does it); returns the tracker."""
        self._started = self._first = self._last = time.monotonic()
        if self.total == 0 or self.backend == "off":
            return self
        with _OPEN_LOCK:
            _OPEN.add(self)
        if self.backend == "live":
            self._task = _Live.add(self)
        else:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """The loop ended (``with`` does it); safe to call twice."""
        with _OPEN_LOCK:
            _OPEN.discard(self)
        if self._task is not None:
            _Live.finish(self._task, self)
            self._task = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self._lines:  # a loop that reported progress also says it ended
                self._emit(final=True)

    # -- figures -----------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def rate_per_s(self) -> float | None:
        """Items per second observed so far."""
        elapsed = self.elapsed_s()
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta_s(self) -> float | None:
        """Seconds until the last item is done; None when it cannot be told yet."""
        if self.total is None:
            return None
        with self._lock:
            done, first, last = self.done, self._first, self._last
        left = max(0, self.total - done)
        if left == 0:
            return 0.0
        # Measured from the first item done: the first one also pays the start-up (connecting,
        # reading state), which would make the whole loop look slower than it runs.
        busy, since_first = last - self._started, done - self._first_n
        observed = since_first / (last - first) if since_first and last > first else None
        if observed is None and done and busy > 0:
            observed = done / busy
        rates = [r for r in (observed, self.rate_limit_per_s) if r]
        if not rates:
            return None
        # Projected from the last item done, so the ETA counts down between items (a paced
        # chunk of 20 requests takes minutes at 5 per minute) instead of growing.
        return max(0.0, last + left / min(rates) - time.monotonic())

    # -- the log backend ---------------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._emit(final=False)

    def _emit(self, *, final: bool) -> None:
        self._lines += 1
        total = "?" if self.total is None else str(self.total)
        rate, eta, elapsed = self.rate_per_s(), self.eta_s(), self.elapsed_s()
        shown = f"{rate:.2f}/s" if rate is not None else "-/s"
        if final:
            text = f"{self.stage}: {self.done}/{total} {self.unit} in {format_s(elapsed)}"
        else:
            text = f"{self.stage}: {self.done}/{total} {self.unit}, {shown}, ETA {format_s(eta)}"
        fields = {
            "progress": self.unit,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "rate_per_s": None if rate is None else round(rate, 4),
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(elapsed, 1),
        }
        log.info(text, extra=fields)


class _Live:
    """One rich display on stderr shared by the loops open at once (nested loops add lines to
    it; rich allows a single live display): started by the first, stopped by the last."""

    _lock = threading.Lock()
    _progress: Any = None
    _open = 0

    @classmethod
    def add(cls, tracker: Tracker) -> Any:
        with cls._lock:
            if cls._progress is None:
                cls._progress = _new_display()
                cls._progress.start()
            cls._open += 1
            return cls._progress.add_task(
                f"{tracker.stage} {tracker.unit}", total=tracker.total, tracker=tracker
            )

    @classmethod
    def update(cls, task: Any, tracker: Tracker) -> None:
        progress = cls._progress
        if progress is not None:
            progress.update(task, completed=tracker.done, total=tracker.total)

    @classmethod
    def finish(cls, task: Any, tracker: Tracker) -> None:
        with cls._lock:
            cls.update(task, tracker)
            cls._open -= 1
            if cls._open == 0 and cls._progress is not None:
                cls._progress.stop()
                cls._progress = None


def _new_display() -> Any:
    """A rich Progress on the console of the rich log handler (log lines print above the
    display instead of tearing it), never on stdout."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Eta(ProgressColumn):
        def render(self, task: Task) -> Text:
            tracker: Tracker = task.fields["tracker"]
            rate = tracker.rate_per_s()
            shown = f"{rate:.1f}/s" if rate is not None else "-/s"
            return Text(f"{shown} ETA {format_s(tracker.eta_s())}", style="progress.remaining")

    console = next(
        (
            h.console  # type: ignore[attr-defined]
            for h in logging.getLogger("condvest").handlers
            if type(h).__name__ == "RichHandler"
        ),
        None,
    ) or Console(stderr=True)
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        Eta(),
        console=console,
        redirect_stdout=False,
        redirect_stderr=False,
    )

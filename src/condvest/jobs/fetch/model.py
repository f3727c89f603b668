"""What the fetch modes share: the options, one frozen plan type per mode, the result, and the
pacing arithmetic. Every module of the package imports this one; it imports none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, ClassVar, Literal

from condvest.core.validate import Bounds
from condvest.jobs.base import Failure, JobResult, to_jsonable
from condvest.jobs.context import JobContext
from condvest.progress import format_s
from condvest.settings import SourceKind

STAGE = "fetch"
FetchMode = Literal["daily", "history", "meta", "corporate_actions"]
STOP_MARGIN_S = 60.0
"""Stop before a Lambda deadline with this much time left (one session takes seconds)."""


@dataclass(frozen=True)
class FetchOptions:
    """What the command line asked for (None = use the setting / the default)."""

    day: date | None = None
    """--date"""
    start: date | None = None
    end: date | None = None
    max_backfill_days: int | None = None
    symbols: list[str] | None = None
    force: bool = False
    history: bool = False
    meta: bool = False
    corporate_actions: bool = False
    """--corporate-actions: backfill splits and dividends over [start, end]."""


@dataclass(frozen=True)
class Gap:
    """Sessions the planner did not fetch this run, and the command that fills them."""

    start: date
    end: date
    sessions: int
    command: str


_VIEW: dict[str, Any] = {
    "source": None,
    "sessions": [],
    "skipped_landed": 0,
    "gap": None,
    "symbols": None,
    "history_start": None,
    "history_end": None,
    "requests": 0,
    "estimated_s": 0.0,
    "watermark": None,
    "latest_completed": None,
    "force": False,
    "notes": [],
}
"""The keys of every mode's ``to_dict()``, in order, with the value a mode without that field
shows (one rendering for all modes: ``--dry-run --output json`` kept its shape)."""


@dataclass(frozen=True)
class _PlanFacts:
    """The fields every fetch plan has."""

    source: str
    symbols: list[str] | None
    watermark: date | None
    latest_completed: date
    requests: int
    """Requests the plan needs at least (pagination may add more)."""
    estimated_s: float
    """At the configured pacing; 0 when unpaced."""
    force: bool
    notes: list[str]

    mode: ClassVar[FetchMode]

    def to_dict(self) -> dict[str, Any]:
        own: dict[str, Any] = to_jsonable(self)
        own["history_start"], own["history_end"] = own.pop("start", None), own.pop("end", None)
        out = {"mode": self.mode} | {k: own.get(k, absent) for k, absent in _VIEW.items()}
        # readable next to the seconds: a free-plan history of 500 symbols takes ~1h40m
        out["estimated"] = format_s(self.estimated_s)
        return out


@dataclass(frozen=True)
class DailyPlan(_PlanFacts):
    """The sessions a daily fetch lands (the backfill planner's answer)."""

    sessions: list[date]
    """Oldest first."""
    skipped_landed: int
    """Sessions in the window already in the fetch log (re-fetched only with --force)."""
    gap: Gap | None
    """Older missing sessions over ``max_backfill_days``: reported, not fetched."""
    mode: ClassVar[FetchMode] = "daily"


@dataclass(frozen=True)
class _RangePlan(_PlanFacts):
    """A plan over a date range (rendered as ``history_start`` / ``history_end``)."""

    start: date
    end: date


@dataclass(frozen=True)
class HistoryPlan(_RangePlan):
    """``--history``: the symbols' daily history over ``start..end``, merged into data files."""

    mode: ClassVar[FetchMode] = "history"


@dataclass(frozen=True)
class MetaPlan(_PlanFacts):
    """``--meta``: the ticker list and the details of new or stale symbols."""

    mode: ClassVar[FetchMode] = "meta"


@dataclass(frozen=True)
class CorporateActionsPlan(_RangePlan):
    """``--corporate-actions``: splits and dividends over ``start..end``, window by window."""

    mode: ClassVar[FetchMode] = "corporate_actions"


FetchPlan = DailyPlan | HistoryPlan | MetaPlan | CorporateActionsPlan
"""The plan of one fetch: one type per mode."""


@dataclass(frozen=True)
class FetchResult(JobResult):
    mode: str = "daily"
    source: str = ""
    partial: bool = False
    sessions_planned: int = 0
    sessions: list[date] = field(default_factory=list)
    """Sessions landed (with rows)."""
    empty_sessions: list[date] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Session date or symbol → error."""
    requests: int = 0
    retries: int = 0
    rows: int = 0
    symbols: int = 0
    new_symbols: int = 0
    quarantined: int = 0
    files: int = 0
    bytes: int = 0
    splits: int = 0
    dividends: int = 0
    """Dividends landed (distinct vendor ids in the answers, after --symbols)."""
    corporate_actions: dict[str, int] = field(default_factory=dict)
    """--corporate-actions: splits, dividends, quarantined, windows."""
    restated: list[str] = field(default_factory=list)
    symbols_missing: list[str] = field(default_factory=list)
    """--symbols the source delivered no bar for (in any landed session / the history range)."""
    gap: Gap | None = None
    watermark: date | None = None
    sink_errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def stage_failures(self) -> tuple[Failure, ...]:
        failed = tuple(Failure(key, error) for key, error in self.failed.items())
        return failed + tuple(Failure("", error) for error in self.sink_errors)


def estimate_s(requests: int, per_minute: int) -> float:
    return 0.0 if per_minute <= 0 else max(0, requests - 1) * 60.0 / per_minute


def paced_per_s(ctx: JobContext, source: str) -> float | None:
    """Requests per second at the configured pacing, for a progress ETA (None: unpaced)."""
    rpm = ctx.settings.polygon.requests_per_minute
    return rpm / 60.0 if source == SourceKind.POLYGON.value and rpm > 0 else None


def pacing(ctx: JobContext, source: str) -> int:
    """Requests per minute the plan's estimate uses (0: unpaced)."""
    return ctx.settings.polygon.requests_per_minute if source == SourceKind.POLYGON.value else 0


def row_bounds(ctx: JobContext) -> Bounds:
    """The configured sanity ceilings of row validation."""
    f = ctx.settings.fetch
    return Bounds(f.max_price, f.max_volume, f.max_transactions)


def fetched_at_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

"""The exchange's trading sessions (offline), numbered from the fixed origin 1962-01-02.

pandas-market-calendars is used (not exchange-calendars alone): it knows the NYSE closures of
1962-1969 (paperwork crisis Wednesdays, funerals, moon landing), which keeps calendar-aligned
bar boundaries right for the oldest histories.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

from condvest.errors import ConfigError, UsageError

log = logging.getLogger("condvest.calendar")
ORIGIN = date(1962, 1, 2)
"""Session index 0: the first NYSE session the calendar knows (docs/design.md §7)."""
NEW_YORK = ZoneInfo("America/New_York")
_HORIZON_YEARS = 2


class TradingCalendar:
    """Sessions of one exchange with their closes, plus ad-hoc closures from an override file."""

    def __init__(
        self,
        exchange: str = "XNYS",
        *,
        extra_closures: Iterable[date] = (),
        until: date | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        sessions, closes = _load_schedule(exchange, until or _default_horizon(), cache_dir)
        closed = set(extra_closures)
        if closed:
            keep = [i for i, d in enumerate(sessions) if d not in closed]
            sessions = tuple(sessions[i] for i in keep)
            closes = tuple(closes[i] for i in keep)
        self.exchange = exchange
        self.extra_closures = frozenset(closed)
        self._sessions: tuple[date, ...] = sessions
        self._closes: tuple[datetime, ...] = closes
        self._index = {d: i for i, d in enumerate(sessions)}

    # -- lookups ---------------------------------------------------------------------------
    @property
    def first_session(self) -> date:
        return self._sessions[0]

    @property
    def last_known_session(self) -> date:
        return self._sessions[-1]

    def all_sessions(self) -> Sequence[date]:
        return self._sessions

    def is_session(self, day: date) -> bool:
        return day in self._index

    def session_index(self, day: date) -> int:
        """Index of ``day`` counted from 1962-01-02 (index 0). ``day`` must be a session."""
        try:
            return self._index[day]
        except KeyError:
            self._check_range(day)
            raise UsageError(
                f"{day.isoformat()} is not a {self.exchange} trading session"
            ) from None

    def session_at(self, index: int) -> date:
        if index < 0 or index >= len(self._sessions):
            raise UsageError(f"session index {index} is outside the known calendar")
        return self._sessions[index]

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Sessions with start <= day <= end (both inclusive)."""
        self._check_range(start)
        lo = bisect.bisect_left(self._sessions, start)
        hi = bisect.bisect_right(self._sessions, end)
        return list(self._sessions[lo:hi])

    def previous_session(self, day: date) -> date | None:
        """The last session strictly before ``day``."""
        i = bisect.bisect_left(self._sessions, day)
        return self._sessions[i - 1] if i > 0 else None

    def next_session(self, day: date) -> date | None:
        """The first session strictly after ``day``."""
        i = bisect.bisect_right(self._sessions, day)
        return self._sessions[i] if i < len(self._sessions) else None

    def session_close(self, day: date) -> datetime:
        """The close of session ``day`` as an aware UTC datetime (early closes included)."""
        return self._closes[self.session_index(day)]

    def latest_completed_session(self, now: datetime, delay_minutes: int = 15) -> date:
        """The most recent session whose close + ``delay_minutes`` has passed at ``now``.

        ``now`` must be timezone-aware; the host's zone never matters.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now_utc = now.astimezone(UTC)
        ny_today = now_utc.astimezone(NEW_YORK).date()
        i = bisect.bisect_right(self._sessions, ny_today) - 1
        delay = timedelta(minutes=delay_minutes)
        while i >= 0:
            if self._closes[i] + delay <= now_utc:
                return self._sessions[i]
            i -= 1
        raise UsageError("no completed session before the calendar origin")

    def _check_range(self, day: date) -> None:
        if day < ORIGIN:
            raise UsageError(
                f"date {day.isoformat()} is before {ORIGIN.isoformat()}, the first session known",
                hint="use a date from 1962-01-02 on",
            )
        if day > self._sessions[-1] + timedelta(days=7):
            raise UsageError(
                f"date {day.isoformat()} is beyond the calendar's horizon "
                f"({self._sessions[-1].isoformat()})"
            )


def _default_horizon() -> date:
    today = datetime.now(UTC).date()
    return date(today.year + _HORIZON_YEARS, 12, 31)


_EPOCH = date(1970, 1, 1)


@lru_cache(maxsize=4)
def _load_schedule(
    exchange: str, until: date, cache_dir: Path | None = None
) -> tuple[tuple[date, ...], tuple[datetime, ...]]:
    """Sessions and closes from ORIGIN to ``until``: from the cache in ``cache_dir`` (None: no
    cache) when it holds them for this pandas-market-calendars version, else computed (and
    written there)."""
    path = _cache_path(cache_dir, exchange, until)
    if path is not None:
        cached = _read_cache(path)
        if cached is not None:
            return cached
    got = _compute_schedule(exchange, until)
    if path is not None:
        _write_cache(path, got)
    return got


def _compute_schedule(exchange: str, until: date) -> tuple[tuple[date, ...], tuple[datetime, ...]]:
    import pandas_market_calendars as mcal

    try:
        cal = mcal.get_calendar(exchange)
    except RuntimeError:
        raise ConfigError(f"unknown exchange calendar {exchange!r}", hint="use XNYS") from None
    schedule = cal.schedule(start_date=ORIGIN.isoformat(), end_date=until.isoformat())
    sessions = tuple(ts.date() for ts in schedule.index)
    closes = tuple(ts.to_pydatetime().astimezone(UTC) for ts in schedule["market_close"])
    return sessions, closes


# -- the schedule cache -------------------------------------------------------------------------
# Importing pandas-market-calendars and computing 65 years of schedule costs ~1.5 s per process:
# most of a short command's run time. The result depends only on (exchange, horizon, library
# version), so it is cached as text, one "<day number> <close epoch seconds>" line per session,
# in ``calendar.cache_dir`` (default $XDG_CACHE_HOME/condvest or ~/.cache/condvest; "" = off).
# A cache that cannot be read or written is ignored: the schedule is computed as before.
def resolve_cache_dir(setting: str | None) -> Path | None:
    """The ``calendar.cache_dir`` setting → the folder (None = the default; "" = no cache)."""
    if setting is not None:
        return Path(setting).expanduser() if setting else None
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "condvest"


def _cache_path(folder: Path | None, exchange: str, until: date) -> Path | None:
    if folder is None:
        return None
    try:
        version = metadata.version("pandas_market_calendars")
    except metadata.PackageNotFoundError:
        return None
    safe = "".join(c for c in exchange if c.isalnum()) or "x"
    return folder / f"calendar-{safe}-{until.isoformat()}-pmc{version}.txt"


def _read_cache(path: Path) -> tuple[tuple[date, ...], tuple[datetime, ...]] | None:
    try:
        lines = path.read_text().split("\n")
        if lines[0] != _CACHE_HEADER or lines[-1] != "":
            return None
        pairs = [line.split(" ") for line in lines[1:-1]]
        epoch = _EPOCH.toordinal()
        sessions = tuple(date.fromordinal(epoch + int(d)) for d, _ in pairs)
        closes = tuple(datetime.fromtimestamp(int(c), UTC) for _, c in pairs)
    except (OSError, ValueError, IndexError) as exc:
        log.debug("calendar cache %s not used: %s", path, exc)
        return None
    if not sessions or sessions[0] != ORIGIN:
        return None
    return sessions, closes


def _write_cache(path: Path, got: tuple[tuple[date, ...], tuple[datetime, ...]]) -> None:
    sessions, closes = got
    epoch = _EPOCH.toordinal()
    body = "".join(
        f"{d.toordinal() - epoch} {int(c.timestamp())}\n"
        for d, c in zip(sessions, closes, strict=True)
    )
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(_CACHE_HEADER + "\n" + body)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("calendar cache %s not written: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


_CACHE_HEADER = "condvest calendar cache v1: day-number close-epoch-seconds"


def read_closures_file(path: str | Path) -> list[date]:
    """Read an override file: one ``YYYY-MM-DD`` per line; ``#`` starts a comment."""
    out: list[date] = []
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"calendar.closures_file {path} cannot be read: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.append(date.fromisoformat(line))
        except ValueError:
            raise ConfigError(
                f"calendar.closures_file {path} line {n}: {line!r} is not a date",
                hint="write one YYYY-MM-DD per line",
            ) from None
    return out


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (a history's start); 29 February in a year that
    has none becomes 28 February, so the range is never shorter than asked."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February → a common year
        return day.replace(year=day.year - years, day=28)


def parse_date(text: str, *, option: str = "date") -> date:
    """Parse a user-given ``YYYY-MM-DD`` (one clear error line otherwise)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date", hint="use YYYY-MM-DD") from None
    if day < ORIGIN:
        raise UsageError(
            f"{option} {day.isoformat()} is before {ORIGIN.isoformat()}, the first session known",
            hint="use a date from 1962-01-02 on",
        )
    return day


@lru_cache(maxsize=8)
def get_calendar(
    exchange: str = "XNYS", closures_file: str | None = None, cache_dir: str | None = None
) -> TradingCalendar:
    """The calendar; ``cache_dir`` is the ``calendar.cache_dir`` setting (see resolve_cache_dir)."""
    extra = read_closures_file(closures_file) if closures_file else []
    return TradingCalendar(exchange, extra_closures=extra, cache_dir=resolve_cache_dir(cache_dir))

"""The fetch log (one JSON per landed session, written only after all its files are written) and
watermarks (compare-and-swap, monotonic: a watermark never moves backwards)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from condvest.core import layout
from condvest.errors import CorruptFileError, NotFoundError, StorageError
from condvest.storage.base import Storage, json_bytes

SessionStatus = Literal["landed", "empty"]
DAILY_WATERMARK = "ohlcv_daily"
_HISTORY_KEEP = 100
_FIX_HINT = "set its 'current' to an ISO date by hand, or delete it so the next fetch starts anew"


@dataclass(frozen=True)
class SessionEntry:
    """One session's landing. ``symbols`` lists the symbols whose date file was written."""

    session: date
    status: SessionStatus
    rows: int
    run_id: str
    fetched_at: str
    source: str
    symbols: list[str] = field(default_factory=list)
    quarantined: int = 0

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["session"] = self.session.isoformat()
        return body

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SessionEntry:
        fields = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        fields["session"] = date.fromisoformat(obj["session"])
        return cls(**fields)


def record_session(storage: Storage, entry: SessionEntry) -> None:
    storage.write_json(layout.fetch_log_entry(entry.session), entry.to_json())


def read_session(storage: Storage, day: date) -> SessionEntry | None:
    """The session's fetch-log entry; CorruptFileError naming the repair when unreadable."""
    hint = f"re-land the session, which rewrites its entry: condvest fetch --date {day} --force"
    try:
        seen = storage.read_json_versioned(layout.fetch_log_entry(day))
        return SessionEntry.from_json(seen[0]) if seen else None
    except CorruptFileError as exc:
        raise CorruptFileError(exc.message, hint=hint) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        where = storage.url(layout.fetch_log_entry(day))
        raise CorruptFileError(f"{where} is not a fetch-log entry: {exc!r}", hint=hint) from None


def landed_sessions(storage: Storage) -> set[date]:
    """Sessions with a fetch-log entry (from the listing alone: no object is read)."""
    out: set[date] = set()
    for obj in storage.list_objects(layout.FETCH_LOG_PREFIX):
        day = layout.parse_fetch_log_entry(obj.key)
        if day is not None:
            out.add(day)
    return out


_EMPTY_ENTRY_MAX_BYTES = 400
"""An entry of status "empty" (no symbols) is smaller than this; landed entries of all but the
smallest lakes list their symbols and are larger, so only the small ones need reading."""


def empty_entries(storage: Storage) -> list[date]:
    """Sessions recorded with status ``empty`` — by versions before 2026-12, which wrote one
    for a session the source had not published and let the watermark pass it. Reads only the
    entries small enough to be one."""
    out = []
    for obj in storage.list_objects(layout.FETCH_LOG_PREFIX):
        day = layout.parse_fetch_log_entry(obj.key)
        if day is None or obj.size >= _EMPTY_ENTRY_MAX_BYTES:
            continue
        try:
            entry = read_session(storage, day)
        except CorruptFileError:
            continue  # reported where it is read for real
        if entry is not None and entry.status == "empty":
            out.append(day)
    return sorted(out)


def _read_watermark_body(
    storage: Storage, name: str
) -> tuple[dict[str, Any], str, date | None] | None:
    """The watermark's JSON body, version and current date; StorageError (never a crash) when
    the object is not a watermark."""
    key = layout.watermark(name)
    try:
        seen = storage.read_json_versioned(key)
    except CorruptFileError as exc:
        raise StorageError(f"watermark {name} is unreadable: {exc}", hint=_FIX_HINT) from None
    if seen is None:
        return None
    if not isinstance(seen[0], dict):
        raise StorageError(
            f"watermark {name} at {storage.url(key)} is not a JSON object", hint=_FIX_HINT
        )
    return seen[0], seen[1], _current(seen[0], name, storage.url(key))


def _current(body: dict[str, Any], name: str, where: str) -> date | None:
    value = body.get("current")
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise StorageError(
            f"watermark {name} at {where} has an unreadable date {value!r}", hint=_FIX_HINT
        ) from None


def read_watermark(storage: Storage, name: str = DAILY_WATERMARK) -> date | None:
    seen = _read_watermark_body(storage, name)
    return seen[2] if seen else None


def advance_watermark(
    storage: Storage, day: date, *, run_id: str, name: str = DAILY_WATERMARK
) -> date:
    """Move the watermark to ``day`` if that is later than the current one (CAS loop).

    Returns the watermark after the call (unchanged when ``day`` is not later).
    """
    key = layout.watermark(name)
    for _ in range(20):
        seen = _read_watermark_body(storage, name)
        now = datetime.now(UTC).isoformat()
        if seen is None:
            first = [{"value": day.isoformat(), "run_id": run_id, "at": now}]
            body = {"name": name, "current": day.isoformat(), "updated_at": now, "history": first}
            if storage.create(key, json_bytes(body)):
                return day
            continue
        obj, version, current = seen
        if current is not None and day <= current:
            return current
        history = list(obj.get("history", []))[-(_HISTORY_KEEP - 1) :]
        history.append({"value": day.isoformat(), "run_id": run_id, "at": now})
        body = {"name": name, "current": day.isoformat(), "updated_at": now, "history": history}
        if storage.replace(key, json_bytes(body), version):
            return day
    raise StorageError(f"could not advance watermark {name}: too many concurrent updates")


def read_failures(storage: Storage) -> dict[date, str]:
    """Sessions a fetch could not land (session → reason); {} when none or unreadable (the
    file only explains; the fetch log and the calendar decide what is missing)."""
    try:
        sessions = _failure_sessions(storage)
    except StorageError:
        return {}
    out: dict[date, str] = {}
    for key, value in sessions.items():
        try:
            out[date.fromisoformat(str(key))] = str(value.get("reason", ""))
        except (AttributeError, ValueError):
            continue
    return out


def _failure_sessions(storage: Storage) -> dict[str, Any]:
    """The ``sessions`` mapping of the failures file ({} when absent or not one)."""
    try:
        body = storage.read_json(layout.FETCH_FAILURES)
    except (CorruptFileError, NotFoundError):
        return {}
    if isinstance(body, dict) and isinstance(body.get("sessions"), dict):
        return dict(body["sessions"])
    return {}


def update_failures(
    storage: Storage, failed: dict[date, str], landed: set[date], *, run_id: str
) -> None:
    """Add this run's failed sessions, drop the ones now in the fetch log. One PUT, only when
    something changed (fetch holds its stage lock: no concurrent writer)."""
    sessions = _failure_sessions(storage)
    before = dict(sessions)
    for day in landed:
        sessions.pop(day.isoformat(), None)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for day, reason in failed.items():
        sessions[day.isoformat()] = {"reason": reason, "run_id": run_id, "at": now}
    if sessions != before:
        storage.write_json(layout.FETCH_FAILURES, {"sessions": dict(sorted(sessions.items()))})

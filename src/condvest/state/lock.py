"""A lease lock per stage: a conditional create with an expiry; a stale lock is taken over by a
conditional replace of exactly the version that was seen expired (so two runners cannot both
take it over)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from condvest.core import layout
from condvest.errors import CorruptFileError, LockHeldError, StorageError
from condvest.storage.base import Storage, json_bytes

log = logging.getLogger("condvest.lock")


@dataclass(frozen=True)
class LockInfo:
    name: str
    run_id: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str

    @property
    def expires(self) -> datetime:
        return datetime.fromisoformat(self.expires_at)

    @classmethod
    def from_json(cls, obj: Any) -> LockInfo:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StageLock:
    """``with StageLock(storage, "consolidate", run_id=...):`` — refused with LockHeldError."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        *,
        run_id: str,
        ttl_s: int = 3600,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.storage = storage
        self.name = name
        self.key = layout.lock(name)
        self.run_id = run_id
        self.ttl = timedelta(seconds=ttl_s)
        self.clock = clock
        self._version: str | None = None
        self.took_over: LockInfo | None = None

    def _record(self) -> bytes:
        now = self.clock()
        info = LockInfo(
            name=self.name,
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=now.isoformat(),
            expires_at=(now + self.ttl).isoformat(),
        )
        return json_bytes(asdict(info))

    def acquire(self) -> None:
        for _ in range(5):
            if self.storage.create(self.key, self._record()):
                self._remember_version()
                return
            try:
                seen = self.storage.read_json_versioned(self.key)
            except CorruptFileError:
                seen = None
                current = self.storage.read_versioned(self.key)
                log.warning("lock %s is unreadable; taking it over", self.key)
                if self.storage.replace(self.key, self._record(), current[1]):
                    self._remember_version()
                    return
                continue
            if seen is None:
                continue  # released between our create and read: try again
            obj, version = seen
            try:
                holder = LockInfo.from_json(obj)
            except (KeyError, TypeError):
                holder = LockInfo(
                    self.name, "?", "?", 0, "?", datetime.min.replace(tzinfo=UTC).isoformat()
                )
            if holder.run_id == self.run_id:
                # our own record: an earlier attempt of this create/replace landed but its
                # answer was lost, and the client's retry was refused (412). It is ours.
                self._version = version
                return
            if holder.expires > self.clock():
                raise LockHeldError(
                    f"{self.name} is already running (run {holder.run_id} on {holder.host}, "
                    f"pid {holder.pid}, since {holder.acquired_at})",
                    hint=f"wait for it, or for the lock to expire at {holder.expires_at}",
                )
            if self.storage.replace(self.key, self._record(), version):
                log.warning(
                    "took over the expired %s lock of run %s (expired %s)",
                    self.name,
                    holder.run_id,
                    holder.expires_at,
                )
                self.took_over = holder
                self._remember_version()
                return
        raise LockHeldError(f"could not take the {self.name} lock: other runs keep changing it")

    def _remember_version(self) -> None:
        stat = self.storage.stat(self.key)
        self._version = stat.version if stat else None

    def renew(self) -> None:
        """Push the expiry forward; raises LockHeldError if another run took the lock."""
        if self._version is None:
            raise LockHeldError(f"cannot renew the {self.name} lock: it is not held")
        if self.storage.replace(self.key, self._record(), self._version):
            self._remember_version()
            return
        # refused: either another run took the lock over, or our own write landed and only
        # its answer was lost (the retried conditional PUT then fails). Only we write our id.
        seen = self.storage.read_json_versioned(self.key)
        if seen is not None and isinstance(seen[0], dict) and seen[0].get("run_id") == self.run_id:
            self._version = seen[1]
            return
        raise LockHeldError(f"lost the {self.name} lock (another run took it over)")

    def release(self) -> None:
        if self._version is None:
            return
        try:
            current = self.storage.read_json_versioned(self.key)
            if current is not None and current[0].get("run_id") == self.run_id:
                self.storage.delete(self.key)
        except (StorageError, AttributeError) as exc:  # the lease expires on its own
            log.warning("could not release lock %s: %s", self.key, exc)
        self._version = None

    def __enter__(self) -> StageLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_lock(storage: Storage, name: str) -> LockInfo | None:
    try:
        seen = storage.read_json_versioned(layout.lock(name))
    except CorruptFileError:
        return None
    if seen is None:
        return None
    try:
        return LockInfo.from_json(seen[0])
    except (KeyError, TypeError):
        return None

"""A lease lock per stage: a conditional create with an expiry; a stale lock is taken over by a
conditional replace of exactly the version that was seen stale (so two runners cannot both
take it over).

A lock is stale when its lease has expired, or — without waiting for the expiry — when its
holder provably died: the record names the holder's machine boot, PID namespace, PID and process
start time (Linux /proc), and this process sees the same boot and namespace but no process with
that PID and start time. A run killed by the OOM killer or SIGKILL no longer blocks the next cron
run on the same machine for ``lock.ttl_seconds``. Holders on other machines, containers or
Lambda sandboxes (another boot or namespace) are only ever taken over after the expiry."""

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
    boot_id: str = ""
    """The holder's /proc/sys/kernel/random/boot_id ("" where there is none)."""
    pid_ns: str = ""
    """The holder's PID namespace (readlink /proc/self/ns/pid)."""
    started: str = ""
    """The holder process's start time (clock ticks since boot, /proc/<pid>/stat field 22)."""

    @property
    def expires(self) -> datetime:
        return datetime.fromisoformat(self.expires_at)

    @classmethod
    def from_json(cls, obj: Any) -> LockInfo:
        return cls(
            name=obj["name"],
            run_id=obj["run_id"],
            host=obj["host"],
            pid=obj["pid"],
            acquired_at=obj["acquired_at"],
            expires_at=obj["expires_at"],
            # absent in the records of older versions: such a holder waits for its expiry
            boot_id=str(obj.get("boot_id", "")),
            pid_ns=str(obj.get("pid_ns", "")),
            started=str(obj.get("started", "")),
        )


def _read_text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """Start time of process ``pid`` in clock ticks since boot; "" if there is no such process."""
    stat = _read_text(f"/proc/{pid}/stat")
    # The command name (field 2) is in parentheses and may hold spaces: split after its ")".
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def holder_is_dead(holder: LockInfo) -> bool:
    """True only when ``holder`` provably no longer runs: same host, boot and PID namespace as
    this process, and no process with its PID and start time. Anything unknown → False."""
    if not (holder.boot_id and holder.pid_ns and holder.started and holder.pid > 0):
        return False
    if holder.host != socket.gethostname():
        return False
    if holder.boot_id != _read_text(BOOT_ID) or holder.pid_ns != _pid_namespace():
        return False
    return _start_time(holder.pid) != holder.started


BOOT_ID = "/proc/sys/kernel/random/boot_id"


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
            boot_id=_read_text(BOOT_ID),
            pid_ns=_pid_namespace(),
            started=_start_time(os.getpid()),
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
            expired = holder.expires <= self.clock()
            if not expired and not holder_is_dead(holder):
                raise LockHeldError(
                    f"{self.name} is already running (run {holder.run_id} on {holder.host}, "
                    f"pid {holder.pid}, since {holder.acquired_at})",
                    hint=f"wait for it, or for the lock to expire at {holder.expires_at}",
                )
            if self.storage.replace(self.key, self._record(), version):
                if expired:
                    log.warning(
                        "took over the expired %s lock of run %s (expired %s)",
                        self.name,
                        holder.run_id,
                        holder.expires_at,
                    )
                else:
                    log.warning(
                        "took over the %s lock of run %s: its process (pid %s on %s) is gone",
                        self.name,
                        holder.run_id,
                        holder.pid,
                        holder.host,
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


def live_locks(storage: Storage, names: list[str], now: datetime) -> list[LockInfo]:
    """Holders of the locks ``names`` that are neither expired nor provably dead."""
    out = []
    for name in names:
        holder = read_lock(storage, name)
        if holder is not None and holder.expires > now and not holder_is_dead(holder):
            out.append(holder)
    return out


def scoped_lock_names(storage: Storage, stage: str) -> list[str]:
    """Names of the part locks of ``stage`` (``<stage>-<scope>``) present in the lake."""
    prefix = layout.lock(f"{stage}-").removesuffix(".json")
    names = []
    for obj in storage.list_objects(prefix):
        name = obj.key.rsplit("/", 1)[-1]
        if name.endswith(".json") and not layout.is_temp_key(obj.key):
            names.append(name.removesuffix(".json"))
    return names


def exclude_other_parts(storage: Storage, stage: str, scope: str | None, now: datetime) -> None:
    """A whole-stage run and a part run (a consolidate shard) exclude each other: each takes its
    own lock first, then refuses when the other kind is live — so of two racing runs at least
    one sees the other (both may refuse; neither runs beside the other)."""
    names = [stage] if scope else scoped_lock_names(storage, stage)
    held = live_locks(storage, names, now)
    if held:
        other = held[0]
        kind = f"the whole {stage}" if scope else f"{stage} part {other.name}"
        raise LockHeldError(
            f"{kind} is already running (run {other.run_id} on {other.host}, pid {other.pid}, "
            f"since {other.acquired_at}); a {'part' if scope else 'whole'} run cannot run "
            "beside it",
            hint=f"wait for it, or for its lock to expire at {other.expires_at}",
        )

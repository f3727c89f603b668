"""TEST-ONLY crash injection. Production never sets the ``CONDVEST_TEST_KILL_*`` variables.

Crash tests run condvest in a subprocess with one of two hooks; when it fires, the process kills
itself with SIGKILL — no cleanup handlers, like a lost container.

``CONDVEST_TEST_KILL_AFTER_WRITES=N`` — generic: every storage mutation (write_bytes, create,
replace, delete_many on local disk and S3) calls :func:`count_write` just before it takes
effect (on local disk the new bytes are already under their temporary name); the Nth call
kills. So at kill point N exactly N-1 mutations have landed, and the Nth left at most a temp
file. Sweeping N over 1..M visits every state between two writes of a run of M writes.

``CONDVEST_TEST_PAUSE_AT_WRITE=N:<path>`` — the Nth mutation waits (before it lands) until
``<path>`` exists: a run that deterministically holds its locks while a test starts another.
When it starts waiting it creates ``<path>.paused``, so the test knows the lake is still.

``CONDVEST_TEST_KILL_AT=<point>[:<key part>]`` — named points, for a key containing
``<key part>``: ``after-temp-write`` (storage: the new bytes are written under a temporary name,
not yet swapped; on S3, where a write is one PUT, just before it), ``after-swap`` (a
data.parquet was swapped in), ``after-manifest`` (a manifest batch was recorded),
``mid-cleanup`` (one symbol's date files were deleted, others remain).

Two hooks make an operation fail instead of killing (the test suite runs as root, where chmod
blocks nothing): ``CONDVEST_TEST_FAIL_DELETE=<key part>`` — deleting a key containing
``<key part>`` fails with "permission denied" (:func:`delete_fault`, local disk and S3);
``CONDVEST_TEST_UNREADABLE=<path part>`` — listing or reading a local path containing
``<path part>`` fails as on a ``chmod 000`` directory (:func:`read_fault`)."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time

KILL_ENV = "CONDVEST_TEST_KILL_AT"
WRITES_ENV = "CONDVEST_TEST_KILL_AFTER_WRITES"
PAUSE_ENV = "CONDVEST_TEST_PAUSE_AT_WRITE"
FAIL_DELETE_ENV = "CONDVEST_TEST_FAIL_DELETE"
UNREADABLE_ENV = "CONDVEST_TEST_UNREADABLE"

_lock = threading.Lock()
_writes = 0


def kill_point(name: str, key: str = "") -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, needle = spec.partition(":")
    if point == name and needle in key:
        _die()


def count_write() -> None:
    """One storage mutation is about to take effect. Always counted (tests read
    :func:`writes` in-process to size a kill sweep); kills at the Nth when the hook is set."""
    global _writes
    with _lock:
        _writes += 1
        count = _writes
    limit = os.environ.get(WRITES_ENV)
    if limit and count >= int(limit):
        _die()
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        at, _, path = pause.partition(":")
        if count == int(at):
            with open(path + ".paused", "w"):
                pass
            while not os.path.exists(path):
                time.sleep(0.05)


def delete_fault(key: str) -> None:
    """Raise PermissionError when the hook names part of ``key`` (a delete about to happen)."""
    needle = os.environ.get(FAIL_DELETE_ENV)
    if needle and needle in key:
        raise PermissionError(errno.EACCES, "Permission denied (test fault)", key)


def read_fault(path: str) -> None:
    """Raise PermissionError when the hook names part of ``path`` (a list or read on disk)."""
    needle = os.environ.get(UNREADABLE_ENV)
    if needle and needle in path:
        raise PermissionError(errno.EACCES, "Permission denied (test fault)", path)


def writes() -> int:
    """Storage mutations counted in this process so far."""
    return _writes


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)

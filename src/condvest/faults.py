"""TEST-ONLY crash injection. Production never sets ``CONDVEST_TEST_KILL_AT``.

The crash tests run condvest in a subprocess with ``CONDVEST_TEST_KILL_AT=<point>[:<key part>]``;
when execution reaches the named point (for a key containing ``<key part>``) the process kills
itself with SIGKILL — no cleanup handlers, like a lost container. Points: ``after-temp-write``
(storage: the new bytes are written under a temporary name, not yet swapped; on S3, where a
write is one PUT, just before it), ``after-swap`` (a data.parquet was swapped in),
``after-manifest`` (a manifest batch was recorded), ``mid-cleanup`` (one symbol's date files
were deleted, others remain)."""

from __future__ import annotations

import os
import signal

KILL_ENV = "CONDVEST_TEST_KILL_AT"


def kill_point(name: str, key: str = "") -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, needle = spec.partition(":")
    if point == name and needle in key:
        os.kill(os.getpid(), signal.SIGKILL)

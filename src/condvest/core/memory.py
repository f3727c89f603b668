"""Handing freed memory back to the operating system.

DuckDB's worker threads allocate through glibc malloc, in per-thread arenas; when a large scan's
result is freed, glibc keeps those pages (RSS stays ~1 GB higher after the seed-scale bronze
read) until a later allocation happens to reuse them — and numpy's large arrays never do (they
are mmapped). ``malloc_trim(0)`` returns them at once, which is what keeps the full resample's
peak memory down while it computes bars. Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _trim() -> Callable[[int], int] | None:
    try:
        func = ctypes.CDLL(None).malloc_trim  # the process's own symbols: libc's, if glibc
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_size_t]
    func.restype = ctypes.c_int
    trim: Callable[[int], int] = func
    return trim


def release_freed_memory() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``, and Arrow's own memory pool,
    mimalloc or jemalloc, which also keeps freed pages for reuse); best effort."""
    pa.default_memory_pool().release_unused()
    func = _trim()
    if func is not None:
        func(0)

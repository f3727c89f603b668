"""condvest.core.memory: handing freed heap memory back to the OS (used by the full resample)."""

from __future__ import annotations

import ctypes
import sys

import pytest

from condvest.core import memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim is Linux's")
def test_freed_heap_memory_is_returned() -> None:
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # Many blocks under the mmap threshold: freed, they stay in the heap until trimmed.
    blocks = [libc.malloc(64 * 1024) for _ in range(3000)]  # ~190 MB
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for b in blocks[:-1]:
        libc.free(b)  # the last block stays: the freed ones are not at the heap's top
    kept = _rss_mb()
    memory.release_freed_memory()
    after = _rss_mb()
    libc.free(blocks[-1])
    if memory._trim() is None:
        pytest.skip("this libc has no malloc_trim (not glibc)")
    assert kept - after > 100, (kept, after)  # freed but kept by malloc, then returned


def test_without_malloc_trim_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_trim", lambda: None)
    memory.release_freed_memory()  # nothing to call, nothing raised

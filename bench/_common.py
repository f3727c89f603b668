"""Shared by the benchmarks: run a child process and keep its own wall time, CPU time and
peak RSS (wait4 rusage). CPU seconds (user + system) are printed beside wall seconds because
this machine is shared: wall time drifts with the load, CPU time much less."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Child:
    wall_s: float
    cpu_s: float
    peak_mb: float
    out: str

    def figures(self) -> str:
        return f"{self.wall_s:6.1f} s  cpu {self.cpu_s:6.1f} s  peak {self.peak_mb:6.0f} MB"


def run_child(args: list[str], label: str, env: dict[str, str] | None = None) -> Child:
    """Run ``args`` to completion (exit with its stderr on failure) and measure it."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{label} failed ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
    cpu, peak = _USAGE.get(proc.pid, (float("nan"), float("nan")))
    return Child(wall, cpu, peak, out)


_USAGE: dict[int, tuple[float, float]] = {}


def _try_wait(self: subprocess.Popen[str], wait_flags: int) -> tuple[int, int]:
    """Popen's reaping through wait4, so each child's own rusage is kept."""
    pid, status, usage = os.wait4(self.pid, wait_flags)
    if pid:
        _USAGE[pid] = (usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
    return pid, status


subprocess.Popen._try_wait = _try_wait  # type: ignore[attr-defined]

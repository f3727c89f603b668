"""Shared by the benchmarks: run a child process and keep its own wall time, CPU time and
peak RSS (wait4 rusage). CPU seconds (user + system) are printed beside wall seconds because
this machine is shared: wall time drifts with the load, CPU time much less."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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


@contextlib.contextmanager
def moto_server(bucket: str) -> Iterator[str]:
    """The moto S3 server on 127.0.0.1 (serialised as in the tests, tests/conftest.py) with
    ``bucket`` created; yields its endpoint URL. Sets test credentials in the environment."""
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import boto3
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import serialise_moto_s3  # moto's conditional PUTs are racy otherwise

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    serialise_moto_s3()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()

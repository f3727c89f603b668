"""The CLI starts, prints help, and status works on an empty lake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "condvest", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_and_version(tmp_path: Path) -> None:
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for command in ("fetch", "consolidate", "resample", "vacuum", "status", "run"):
        assert command in out.stdout
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("condvest ")


def test_status_on_empty_lake_json(tmp_path: Path) -> None:
    out = run_cli("--output", "json", "status", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["stage"] == "status"
    assert body["bronze"]["symbols"] == 0
    assert body["stale"] is True
    check = run_cli("status", "--check", cwd=tmp_path)
    assert check.returncode == 1

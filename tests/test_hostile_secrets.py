"""Secret scan: a sweep of commands run with a known Polygon API key and a known PostgreSQL
password — failing stand-in, -v/-vv, error paths, wrong types in the config, status, a DSN that is
wrong or unreachable — and neither secret appears anywhere in stdout or stderr of the sweep.
(tests/test_fetch_cli.py::test_api_key_never_printed covers the fetch paths with the key in the
environment; this sweep adds the config file, settings errors, run, status and PostgreSQL.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import cli_proc
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV
from polygon_server import KEY, FakePolygon, Scripted, agg

PASSWORD = "pw-HUNTER2-secret-0815"
DAY = "2025-01-02"


def run(
    lake: Path, *args: str, env: dict[str, str] | None = None, config: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("CONDVEST_") and k not in LEGACY_ENV
    }
    base = {k: v for k, v in base.items() if k not in LEGACY_BUCKET_ENV}
    base |= {
        "CONDVEST_LAKE__URI": str(lake),
        "CONDVEST_POLYGON__REQUESTS_PER_MINUTE": "0",
        "CONDVEST_POLYGON__BACKOFF_BASE_S": "0.01",
        "CONDVEST_POLYGON__MAX_RETRIES": "2",
        "CONDVEST_POLYGON__TIMEOUT_S": "2",
        "CONDVEST_POSTGRES__CONNECT_TIMEOUT_S": "2",
    }
    pre = ["--config", str(config)] if config else []
    return cli_proc.run([*pre, *args], env=base | (env or {}), cwd=lake.parent)


@pytest.mark.slow
def test_no_secret_in_any_output(tmp_path: Path, polygon: FakePolygon) -> None:
    lake = tmp_path / "lake"
    day = __import__("datetime").date.fromisoformat(DAY)
    polygon.grouped[day] = [agg("AAPL", day)]
    key_env = {"CONDVEST_POLYGON__API_KEY": KEY, "CONDVEST_POLYGON__BASE_URL": polygon.url}
    key_file = tmp_path / "key.toml"
    key_file.write_text(f'[polygon]\napi_key = "{KEY}"\nbase_url = "{polygon.url}"\n')
    outputs: list[str] = []
    tried = 0

    def sweep(*args: str, expect: int | None = None, **kw: object) -> None:
        nonlocal tried
        for verbosity in ((), ("-vv", "-o", "json")):
            done = run(lake, *verbosity, *args, **kw)  # type: ignore[arg-type]
            tried += 1
            outputs.append(done.stdout + done.stderr)
            if expect is not None:
                assert done.returncode == expect, (args, done.stderr)

    # Polygon failing in every way that echoes the key back
    polygon.fail("/v2/aggs/grouped/", *[Scripted(500, f"boom apiKey={KEY}")] * 9)
    sweep("fetch", "--date", DAY, env=key_env, expect=1)
    polygon.script.clear()  # what the previous step left unconsumed
    polygon.fail("/v2/aggs/grouped/", *[Scripted(429, KEY, {"Retry-After": "0"})] * 9)
    sweep("fetch", "--date", DAY, env=key_env, expect=1)
    polygon.script.clear()
    polygon.fail("/v2/aggs/grouped/", *[Scripted(403, f'{{"error": "{KEY}"}}')] * 2)
    sweep("fetch", "--date", DAY, config=key_file)
    sweep("fetch", "--date", DAY, "--force", config=key_file, expect=0)
    sweep("run", config=key_file)
    sweep("status", config=key_file)
    sweep("fetch", "--dry-run", config=key_file, expect=0)
    # wrong types and unknown keys next to the secrets: the settings error must not echo them
    for n, text in enumerate(
        [
            f'[polygon]\napi_key = ["{KEY}"]\n',
            f'[polygon]\napi_key = "{KEY}"\nmax_concurrency = 0\n',
            f'[polygon]\napi_kee = "{KEY}"\n',
            f'[postgres]\ndsn = {{ password = "{PASSWORD}" }}\n',
            f'[postgres]\ndsn = "postgresql://u:{PASSWORD}@127.0.0.1/test"\nschema_name = "a b"\n',
            f'[postgres]\ndsn = "postgresql://u:{PASSWORD}@127.0.0.1/test"\nsslmode = "bogus"\n',
        ]
    ):
        bad = tmp_path / f"bad{n}.toml"
        bad.write_text(text)
        sweep("status", config=bad, expect=2)
    # PostgreSQL: a wrong password, an unknown role, nothing listening, a malformed DSN
    for dsn in (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
        f"postgresql://condvest_no_such_role:{PASSWORD}@127.0.0.1:5432/test",
        f"host=127.0.0.1 port=1 user=postgres password={PASSWORD} dbname=test",
        f"postgresql://postgres:{PASSWORD}@[::1:5432/test",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db_{PASSWORD}",
    ):
        pg = key_env | {"CONDVEST_POSTGRES__DSN": dsn}
        sweep("status", "--init-db", env=pg)
        sweep("fetch", "--date", DAY, "--force", "--sync-db", env=pg)
        sweep("run", env=pg)
    print(f"secret scan: {tried} command runs, {len(''.join(outputs))} characters scanned")
    assert tried >= 50
    joined = "\n".join(outputs)
    assert "retry" in joined and "error" in joined  # the logs were really captured
    for secret in (KEY, PASSWORD, "HUNTER2"):
        leaks = [o for o in outputs if secret in o]
        assert not leaks, leaks[0][-2000:]

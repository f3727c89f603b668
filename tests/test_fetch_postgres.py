"""fetch with the PostgreSQL cache on: the same validated rows land in the lake and the
database; a database failure leaves the lake write standing and exits 1; the next run (or
``fetch --sync-db``) heals the database from the lake. Dividends land in both too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg

import cli_proc
from conftest import make_local_lake


def _cli(lake_uri: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    full.update(
        {
            "CONDVEST_LAKE__URI": lake_uri,
            "CONDVEST_FETCH__SYNTHETIC_SYMBOLS": "8",
            "CONDVEST_FETCH__MAX_BACKFILL_DAYS": "3",
        }
    )
    full.update(env)
    return cli_proc.run(["--output", "json", *args], env=full, timeout=180)


def _db_rows(dsn: str, schema: str) -> tuple[int, str | None]:
    with psycopg.connect(dsn) as conn:
        count = conn.execute(f'select count(*) from "{schema}".raw_ohlcv').fetchone()
        mark = conn.execute(
            f'select max(value)::text from "{schema}".watermarks where is_current'
        ).fetchone()
    return int(count[0]) if count else 0, mark[0] if mark else None


def test_fetch_dual_writes_and_heals(tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    lake = make_local_lake(tmp_path / "lake")
    good = {"CONDVEST_POSTGRES__DSN": dsn, "CONDVEST_POSTGRES__SCHEMA_NAME": schema}
    bad = {
        "CONDVEST_POSTGRES__DSN": "postgresql://postgres:s3cretpw@127.0.0.1:1/test",
        "CONDVEST_POSTGRES__CONNECT_TIMEOUT_S": "1",
        "CONDVEST_POSTGRES__SCHEMA_NAME": schema,
    }
    # 1. The database is unreachable: the lake write stands, the run fails, no password shown.
    out = _cli(lake.uri, bad, "fetch", "--source", "synthetic")
    assert out.returncode == 1, out.stderr
    assert "s3cretpw" not in out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["sessions"], result
    assert result["sink_errors"], result
    landed_rows = result["rows"]
    assert landed_rows > 0
    # 2. The next run heals the database from the lake before anything else.
    out = _cli(lake.uri, good, "fetch", "--source", "synthetic")
    assert out.returncode == 0, out.stdout + out.stderr
    rows, mark = _db_rows(dsn, schema)
    assert rows == landed_rows
    assert mark == result["sessions"][-1]
    # 3. An explicit re-sync of the same range changes nothing.
    first = result["sessions"][0]
    out = _cli(lake.uri, good, "fetch", "--sync-db", "--start", first)
    assert out.returncode == 0, out.stdout + out.stderr
    synced = json.loads(out.stdout)
    assert synced["rows_changed"] == 0
    assert _db_rows(dsn, schema)[0] == rows


def test_sync_db_without_postgres_is_a_usage_error(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    out = _cli(lake.uri, {}, "fetch", "--sync-db")
    assert out.returncode == 2
    assert "needs PostgreSQL" in out.stderr
    assert "Traceback" not in out.stderr


def _dividend_ids(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'select id from "{schema}".dividends order by id').fetchall()
    return [str(r[0]) for r in rows]


def test_fetch_lands_dividends_in_the_database(tmp_path: Path, pg_schema: tuple[str, str]) -> None:
    from condvest import open_lake

    dsn, schema = pg_schema
    lake = make_local_lake(tmp_path / "lake")
    good = {"CONDVEST_POSTGRES__DSN": dsn, "CONDVEST_POSTGRES__SCHEMA_NAME": schema}
    out = _cli(
        lake.uri,
        good,
        "fetch",
        "--source",
        "synthetic",
        "--start",
        "2024-09-02",
        "--end",
        "2024-12-31",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["dividends"] > 0
    with open_lake(lake.uri) as opened:
        in_lake = sorted(opened.dividends().column("id").to_pylist())
    assert _dividend_ids(dsn, schema) == in_lake and len(in_lake) == result["dividends"]
    # A backfill over the same and more dates: the database follows the lake, no duplicates.
    out = _cli(
        lake.uri,
        good,
        "fetch",
        "--source",
        "synthetic",
        "--corporate-actions",
        "--start",
        "2024-01-02",
        "--end",
        "2024-12-31",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    backfill = json.loads(out.stdout)
    assert backfill["corporate_actions"]["dividends"] >= result["dividends"]
    with open_lake(lake.uri) as opened:
        in_lake = sorted(opened.dividends().column("id").to_pylist())
    assert _dividend_ids(dsn, schema) == in_lake and len(in_lake) == len(set(in_lake))

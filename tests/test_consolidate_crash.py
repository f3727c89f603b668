"""Crash injection (docs/design.md §6, §10): a consolidate process SIGKILLed at each step — new
bytes written but not swapped, after the swap, after the manifest, in the middle of the cleanup —
loses no row, has deleted no date file whose row is not in data.parquet, and a re-run ends with the
lake an uninterrupted run produces. Uses the test-only CONDVEST_TEST_KILL_AT hook."""

from __future__ import annotations

import os
import signal
from datetime import date, timedelta
from typing import Any

import pytest

import cli_proc
from condvest.core import layout
from condvest.faults import KILL_ENV
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.state.manifest import read_manifest
from condvest.storage import Storage
from conftest import Lake, make_local_lake, make_s3_lake
from consolidate_helpers import T0, all_rows, land, rows, snapshot

SYMBOLS = ["AAA", "BBB", "CCC"]
ARGS = ["consolidate", "--retention-days", "30", "--workers", "1"]


def build(storage: Storage) -> None:
    """History in data.parquet, old date files (past retention) and recent ones, for 3 symbols."""
    today = date.today()
    for n, symbol in enumerate(SYMBOLS):
        storage.write_parquet(
            layout.data_file(symbol), rows(symbol, [date(2020, 1, 2), date(2020, 1, 3)])
        )
        for back in (90, 80, 70, 5, 4, 3):
            land(storage, symbol, today - timedelta(days=back), close=float(back + n))
        # A correction of the history, landed as a date file.
        land(storage, symbol, date(2020, 1, 3), close=77.0, fetched=T0 + timedelta(days=1))


def manifest_view(storage: Storage) -> dict[str, Any]:
    rows_ = read_manifest(storage)[0]
    return {s: (r.row_count, r.first_date, r.last_consolidated_date) for s, r in rows_.items()}


def consolidate_in_process(lake: Lake) -> None:
    ctx = lake.context()
    result = run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(retention_days=30)))
    assert result.ok, result.failures


@pytest.fixture
def reference(tmp_path: Any, lake: Lake) -> dict[str, Any]:
    ref = (
        make_local_lake(tmp_path / "reference")
        if lake.kind == "local"
        else make_s3_lake(lake.endpoint_url or "", "condvest-test", "reference")
    )
    build(ref.storage)
    consolidate_in_process(ref)
    return {"snapshot": snapshot(ref.storage, SYMBOLS), "manifest": manifest_view(ref.storage)}


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["after-temp-write:data.parquet", "after-swap", "after-manifest", "mid-cleanup"]
)
def test_killed_run_loses_nothing_and_rerun_converges(
    lake: Lake, reference: dict[str, Any], point: str
) -> None:
    build(lake.storage)
    rows_before = all_rows(lake.storage)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(lake.env())
    env[KILL_ENV] = point
    killed = cli_proc.run(ARGS, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Nothing lost: every row is still in data.parquet or in its date file.
    assert all_rows(lake.storage) == rows_before
    # The killed run's lease has not expired; the re-run takes it over because its holder
    # provably died on this machine (condvest.state.lock), as the next cron run would.
    consolidate_in_process(lake)
    assert snapshot(lake.storage, SYMBOLS) == reference["snapshot"]
    assert manifest_view(lake.storage) == reference["manifest"]
    assert not lake.storage.list_objects(layout.CLEANUP_JOURNAL_PREFIX)
    assert all_rows(lake.storage) == {
        k: v for k, v in rows_before.items() if k in all_rows(lake.storage)
    }

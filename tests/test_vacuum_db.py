"""vacuum --db-retention-days: trims the PostgreSQL cache (the lake keeps every row), in
batches, with the count in a dry run; asking for it with PostgreSQL off is a usage error."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from condvest.errors import UsageError
from condvest.jobs.base import run_job
from condvest.jobs.vacuum.job import VACUUM, VacuumOptions, plan_vacuum, run_vacuum
from condvest.sinks import open_sink
from conftest import Lake
from pg_helpers import bronze

NOW = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


def test_db_retention_dry_run_then_delete(local_lake: Lake, pg_schema: tuple[str, str]) -> None:
    dsn, schema = pg_schema
    ctx = local_lake.context(now=NOW, postgres={"dsn": dsn, "schema_name": schema})
    sink = ctx.sink()
    assert sink is not None
    old = [date(2025, 12, 1), date(2025, 12, 2)]
    recent = [date(2026, 2, 27), date(2026, 3, 2)]
    sink.upsert_rows(bronze(["AAA", "BBB"], old + recent))
    dry = run_job(ctx, VACUUM, VacuumOptions(db_retention_days=30), dry_run=True).to_dict()
    assert dry["ok"] and dry["db_rows_deleted"] == 4 and dry["db_retention_days"] == 30
    assert sink.freshness().rows == 8
    real = run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(db_retention_days=30)))
    assert real.ok and real.db_rows_deleted == 4
    other = open_sink(ctx.settings)
    assert other is not None
    assert other.freshness().rows == 4
    other.close()
    ctx.close()


def test_db_retention_without_postgres_is_a_usage_error(local_lake: Lake) -> None:
    ctx = local_lake.context(now=NOW)
    with pytest.raises(UsageError, match="PostgreSQL is off"):
        plan_vacuum(ctx, VacuumOptions(db_retention_days=30))

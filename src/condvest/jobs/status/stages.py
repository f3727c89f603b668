"""``status`` and ``init-db`` as the runner sees them (:class:`condvest.jobs.base.Job`).

``status`` is read-only: no lock, no run record. Creating or upgrading the PostgreSQL tables is
the one write it used to do when asked (``status --init-db``); it is a stage of its own now,
``init-db``, which ``status --init-db`` runs first (an alias: same output). The upgrade runs in
one transaction and is safe when two processes run it at once, so it needs no lake lock."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from condvest.errors import UsageError
from condvest.jobs.base import Job, JobResult
from condvest.jobs.context import JobContext
from condvest.jobs.status.job import StatusResult, run_status
from condvest.sinks import Sink


@dataclass(frozen=True)
class StatusOptions:
    """``condvest status`` takes no option that changes what it reads (``--check`` is the
    CLI's verdict on the result: :func:`condvest.jobs.status.check_failed`)."""


@dataclass(frozen=True)
class StatusPlan:
    """Nothing to decide: status reads what it shows."""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": "status"}


def _plan_status(ctx: JobContext, options: StatusOptions) -> StatusPlan:
    return StatusPlan()


def _execute_status(ctx: JobContext, plan: StatusPlan) -> StatusResult:
    return run_status(ctx)


STATUS: Job[StatusOptions, StatusPlan, StatusResult] = Job(
    "status", _plan_status, _execute_status, locked=False
)
"""``condvest status``: the health view (read-only)."""


@dataclass(frozen=True)
class InitDbOptions:
    """``status --init-db`` / :meth:`condvest.Lake.init_db` take no option."""


@dataclass(frozen=True)
class InitDbPlan:
    schema: str
    target: str
    """user@host:port/db (never the password)."""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "target": self.target}


@dataclass(frozen=True)
class InitDbResult(JobResult):
    schema: str = ""
    target: str = ""
    schema_version_before: int = 0
    schema_version: int = 0


def _sink(ctx: JobContext) -> Sink:
    sink = ctx.sink()
    if sink is None:
        raise UsageError(
            "--init-db needs PostgreSQL, which is off",
            hint="set postgres.dsn or RDS_SECRET_ARN (postgres.secret_arn)",
        )
    return sink


def _plan_init_db(ctx: JobContext, options: InitDbOptions) -> InitDbPlan:
    return InitDbPlan(ctx.settings.postgres.schema_name, _sink(ctx).where)


def _execute_init_db(ctx: JobContext, plan: InitDbPlan) -> InitDbResult:
    started = time.monotonic()
    before, after = _sink(ctx).init_schema()
    return InitDbResult(
        stage="init-db",
        run_id=ctx.run_id,
        dry_run=False,
        ok=True,
        duration_s=round(time.monotonic() - started, 3),
        schema=plan.schema,
        target=plan.target,
        schema_version_before=before,
        schema_version=after,
    )


INIT_DB: Job[InitDbOptions, InitDbPlan, InitDbResult] = Job(
    "init-db", _plan_init_db, _execute_init_db, locked=False
)
"""Create or upgrade the PostgreSQL tables (``status --init-db``)."""


def with_schema_upgrade(status: StatusResult, init: InitDbResult) -> StatusResult:
    """``status --init-db``'s view: the status, its database section saying which schema
    version the upgrade started from (where ``status`` used to put it, after ``target``)."""
    database: dict[str, Any] = {}
    for key, value in status.database.items():
        database[key] = value
        if key == "target":
            database["schema_version_before"] = init.schema_version_before
    return dataclasses.replace(status, database=database)

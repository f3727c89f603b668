"""Status: one read-only health view of the lake; and ``init-db``, which creates or upgrades the
PostgreSQL tables (``status --init-db``).

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.status.job import StatusResult, check_failed, run_status
from condvest.jobs.status.stages import (
    INIT_DB,
    STATUS,
    InitDbOptions,
    InitDbPlan,
    InitDbResult,
    StatusOptions,
    StatusPlan,
    with_schema_upgrade,
)

__all__ = [
    "INIT_DB",
    "STATUS",
    "InitDbOptions",
    "InitDbPlan",
    "InitDbResult",
    "StatusOptions",
    "StatusPlan",
    "StatusResult",
    "check_failed",
    "run_status",
    "with_schema_upgrade",
]

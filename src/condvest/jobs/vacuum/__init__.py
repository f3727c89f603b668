"""Vacuum: delete date files whose rows are verified inside ``data.parquet``, and stale temp files.

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.vacuum.job import (
    VACUUM,
    VacuumOptions,
    VacuumPlan,
    VacuumResult,
    plan_vacuum,
    run_vacuum,
)

__all__ = ["VACUUM", "VacuumOptions", "VacuumPlan", "VacuumResult", "plan_vacuum", "run_vacuum"]

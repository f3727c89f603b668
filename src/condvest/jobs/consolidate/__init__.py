"""Consolidate: merge each symbol's landed ``date=`` files into its ``data.parquet``.

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.consolidate.job import (
    CONSOLIDATE,
    ConsolidateOptions,
    ConsolidatePlan,
    ConsolidateResult,
    plan_consolidate,
    run_consolidate,
)

__all__ = [
    "CONSOLIDATE",
    "ConsolidateOptions",
    "ConsolidatePlan",
    "ConsolidateResult",
    "plan_consolidate",
    "run_consolidate",
]

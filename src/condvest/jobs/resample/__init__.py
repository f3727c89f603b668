"""Resample: N-session bars into silver, incremental (tail) or full.

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.resample.job import RESAMPLE, plan_resample, run_resample
from condvest.jobs.resample.plan import ResampleOptions, ResamplePlan, ResampleResult

__all__ = [
    "RESAMPLE",
    "ResampleOptions",
    "ResamplePlan",
    "ResampleResult",
    "plan_resample",
    "run_resample",
]

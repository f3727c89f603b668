"""Resample: N-session bars into silver, incremental (tail) or full.

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.resample.checkpoint import Checkpoint, recorded
from condvest.jobs.resample.job import RESAMPLE, plan_resample, run_resample
from condvest.jobs.resample.plan import ResampleOptions, ResamplePlan, ResampleResult

__all__ = [
    "RESAMPLE",
    "Checkpoint",
    "ResampleOptions",
    "ResamplePlan",
    "ResampleResult",
    "plan_resample",
    "recorded",
    "run_resample",
]

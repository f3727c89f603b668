"""Status: one read-only health view of the lake.

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.status.job import StatusResult, check_failed, run_status

__all__ = ["StatusResult", "check_failed", "run_status"]

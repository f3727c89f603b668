"""Fetch: plan the missing sessions, land them (daily, ``--history``, ``--meta``,
``--corporate-actions``), restate split symbols, and heal the database (``--sync-db``).

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.fetch.dbsync import DbSyncPlan, DbSyncResult, plan_db_sync, run_db_sync
from condvest.jobs.fetch.landing import SPLITS_SCHEMA
from condvest.jobs.fetch.plan import (
    FetchOptions,
    FetchPlan,
    FetchResult,
    plan_fetch,
    run_fetch,
    today_ny,
)
from condvest.jobs.fetch.split_sanity import suspicious_problems

__all__ = [
    "SPLITS_SCHEMA",
    "DbSyncPlan",
    "DbSyncResult",
    "FetchOptions",
    "FetchPlan",
    "FetchResult",
    "plan_db_sync",
    "plan_fetch",
    "run_db_sync",
    "run_fetch",
    "suspicious_problems",
    "today_ny",
]

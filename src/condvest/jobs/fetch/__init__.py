"""Fetch: plan the missing sessions, land them (daily, ``--history``, ``--meta``,
``--corporate-actions``), restate split symbols, and heal the database (``--sync-db``).

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.fetch.dbsync import (
    DB_SYNC,
    DbSyncOptions,
    DbSyncPlan,
    DbSyncResult,
    plan_db_sync,
    run_db_sync,
)
from condvest.jobs.fetch.job import FETCH, execute_fetch, plan_fetch, run_fetch
from condvest.jobs.fetch.model import (
    CorporateActionsPlan,
    DailyPlan,
    FetchOptions,
    FetchPlan,
    FetchResult,
    HistoryPlan,
    MetaPlan,
)
from condvest.jobs.fetch.split_sanity import suspicious_problems

__all__ = [
    "DB_SYNC",
    "FETCH",
    "CorporateActionsPlan",
    "DailyPlan",
    "DbSyncOptions",
    "DbSyncPlan",
    "DbSyncResult",
    "FetchOptions",
    "FetchPlan",
    "FetchResult",
    "HistoryPlan",
    "MetaPlan",
    "execute_fetch",
    "plan_db_sync",
    "plan_fetch",
    "run_db_sync",
    "run_fetch",
    "suspicious_problems",
]

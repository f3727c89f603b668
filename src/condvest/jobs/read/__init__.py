"""The read side: the lake as Arrow tables (``Lake.daily``, ``Lake.bars``, ``Lake.sql``, ...).

This module is the package's public face: what the rest of condvest uses of it."""

from __future__ import annotations

from condvest.jobs.read.actions import ActionKind, combined_actions
from condvest.jobs.read.adjust import read_bars_adjusted, read_daily_adjusted, read_factors
from condvest.jobs.read.sql import run_sql, sql_error, view_loaders
from condvest.jobs.read.tables import (
    built_intervals,
    filter_actions,
    read_daily,
    read_dividends,
    read_metadata,
    read_splits,
    read_symbols,
    sessions_table,
)

__all__ = [
    "ActionKind",
    "built_intervals",
    "combined_actions",
    "filter_actions",
    "read_bars_adjusted",
    "read_daily",
    "read_daily_adjusted",
    "read_dividends",
    "read_factors",
    "read_metadata",
    "read_splits",
    "read_symbols",
    "run_sql",
    "sessions_table",
    "sql_error",
    "view_loaders",
]

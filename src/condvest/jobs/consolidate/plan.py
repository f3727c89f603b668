"""The consolidate job's options, plans and result (rendered for --dry-run and in JSON)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from condvest.jobs.base import Failure, JobResult, to_jsonable
from condvest.jobs.selection import (
    DateFile,
)
from condvest.settings import ConsolidateMode
from condvest.state.manifest import ManifestRow


@dataclass(frozen=True)
class ConsolidateOptions:
    mode: ConsolidateMode | None = None
    symbols: Sequence[str] | None = None
    workers: int | None = None
    retention_days: int | None = None
    skip_cleanup: bool | None = None
    shard: tuple[int, int] | None = None
    """(K, N) from --shard K/N; None = K from AWS_BATCH_JOB_ARRAY_INDEX when a count is given."""
    shards: int | None = None
    """--shards N (None: consolidate.shards); with no array index the run is unsharded."""


@dataclass(frozen=True)
class SymbolPlan:
    symbol: str
    files: tuple[DateFile, ...]
    """Every date file of the symbol that was listed (pending or already merged)."""
    previous: ManifestRow | None = None

    @property
    def pending(self) -> tuple[DateFile, ...]:
        return tuple(f for f in self.files if f.pending)


@dataclass(frozen=True)
class ConsolidatePlan:
    mode: ConsolidateMode
    selection: str
    """How symbols were found: "fetch-log", "symbols" (--symbols) or "listing"."""
    shard: tuple[int, int] | None
    workers: int
    retention_days: int
    cleanup_before: date
    skip_cleanup: bool
    symbols: tuple[SymbolPlan, ...]
    journals: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Cleanup journals of earlier runs (key, symbols): removed once those symbols are clean."""

    def to_dict(self) -> dict[str, Any]:
        return dict(to_jsonable(self))

    def needs_cleanup(self, symbol: SymbolPlan) -> bool:
        return not self.skip_cleanup and any(f.day < self.cleanup_before for f in symbol.files)

    def summary(self) -> dict[str, Any]:
        pending = [f for s in self.symbols for f in s.pending]
        return {
            "symbols": len(self.symbols),
            "files": len(pending),
            # A date file holds one session of one symbol: one row.
            "rows": len(pending),
            "bytes": sum(f.size for f in pending),
        }


@dataclass(frozen=True)
class ConsolidateResult(JobResult):
    mode: str = "incremental"
    selection: str = ""
    shard: str | None = None
    partial: bool = False
    symbols_planned: int = 0
    files_planned: int = 0
    bytes_planned: int = 0
    symbols_done: int = 0
    symbols_changed: int = 0
    symbols_failed: int = 0
    rows_added: int = 0
    rows_replaced: int = 0
    files_merged: int = 0
    bytes_written: int = 0
    files_deleted: int = 0
    bytes_deleted: int = 0
    symbols_per_s: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    """--dry-run only: one row per symbol (files, rows, bytes, first/last pending date)."""

    def stage_failures(self) -> tuple[Failure, ...]:
        return tuple(Failure(str(f.get("symbol")), str(f.get("reason"))) for f in self.failures)


# -- planning -------------------------------------------------------------------------------------

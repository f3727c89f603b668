"""The resample job's options, plans and result (rendered for --dry-run and in JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from condvest.core.bars import BarAlignment
from condvest.jobs.base import Failure, JobResult
from condvest.jobs.resample.checkpoint import Checkpoint
from condvest.storage.base import ObjectInfo

_SHOWN = 50


@dataclass(frozen=True)
class ResampleOptions:
    """What the user asked for; None = the settings' value."""

    intervals: tuple[int, ...] | None = None
    alignment: BarAlignment | None = None
    full: bool = False
    include_partial: bool = False
    since: date | None = None


@dataclass(frozen=True)
class IntervalPlan:
    interval: int
    mode: str
    reason: str
    bars: int
    months_to_write: tuple[str, ...]
    months_to_delete: tuple[str, ...]
    symbols_affected: tuple[str, ...]
    rows_to_write: int
    # The computed bars and where each month lies: rows [a, b) of ``table`` — or, when
    # ``month_order`` is set, rows ``month_order[a:b]`` of it — in (symbol, start_date) order.
    table: pa.Table = field(repr=False, compare=False)
    month_slices: dict[str, tuple[int, int]] = field(repr=False, compare=False)
    month_digests: dict[str, str] = field(repr=False, compare=False)
    symbol_digests: dict[str, str] = field(repr=False, compare=False)
    existing: dict[str, ObjectInfo] = field(repr=False, compare=False)
    # Tail mode: month rows starting on or after this day are replaced (None = whole months).
    replace_from: int | None = None
    previous: Checkpoint | None = field(default=None, repr=False, compare=False)
    """Tail mode: the interval's checkpoint the run continues from."""
    month_order: np.ndarray | None = field(default=None, repr=False, compare=False)
    # Per symbol [first, last] bar start day (the checkpoint's "spans"; None = not known).
    symbol_spans: dict[str, list[int]] | None = field(default=None, repr=False, compare=False)
    # Tail mode: symbols whose every bar is in ``table`` (their older rows changed).
    restated: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def month_rows(self, label: str) -> pa.Table:
        """The bars of month ``label`` ("YYYYMM"), sorted by (symbol, start_date)."""
        return self.months_table((label,))[0]

    def months_table(self, labels: tuple[str, ...]) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
        """The bars of the months ``labels``, month after month (each in (symbol, start_date)
        order; one take), and where each month lies in that table: rows [a, b)."""
        spans = [self.month_slices.get(label, (0, 0)) for label in labels]
        rows = [
            np.arange(a, b) if self.month_order is None else self.month_order[a:b] for a, b in spans
        ]
        ends = np.cumsum([len(r) for r in rows]).tolist()
        where = {
            label: (end - len(r), end) for label, r, end in zip(labels, rows, ends, strict=True)
        }
        order = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return self.table.take(pa.array(order)), where

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "bars": self.bars,
            "months_to_write": len(self.months_to_write),
            "months_to_delete": len(self.months_to_delete),
            "rows_to_write": self.rows_to_write,
            "symbols_affected": len(self.symbols_affected),
            "months": _months_text(self.months_to_write),
            "deleted": _months_text(self.months_to_delete),
            "symbols": ", ".join(self.symbols_affected[:_SHOWN])
            + (
                f" … (+{len(self.symbols_affected) - _SHOWN})"
                if len(self.symbols_affected) > _SHOWN
                else ""
            ),
        }


def _months_text(labels: tuple[str, ...]) -> str:
    if not labels:
        return "-"
    if len(labels) <= 6:
        return ", ".join(labels)
    return f"{labels[0]} … {labels[-1]} ({len(labels)})"


@dataclass(frozen=True)
class ResamplePlan:
    alignment: BarAlignment
    through: date
    include_partial: bool
    since: date | None
    symbols: int
    input_rows: int
    files_read: int
    off_calendar_rows: int
    intervals: tuple[IntervalPlan, ...]
    compute_s: float
    bronze_state: dict[str, list[int | None]] = field(default_factory=dict, repr=False)
    read_parts: int = 1
    """How many parts the full read took (resample.full_read_rows); 1 for the tail path."""
    full_history: tuple[str, ...] = ()
    """Tail path: the symbols whose older rows changed, read in full (the rest: the tail)."""
    bytes_read: int = 0
    """Size of the bronze files read while planning."""
    data_files_from_index: int = 0
    """Tail path: the data files not read because the bronze tail index held them."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": "resample",
            "alignment": self.alignment.value,
            "through": self.through.isoformat(),
            "include_partial": self.include_partial,
            "since": self.since.isoformat() if self.since else None,
            "symbols": self.symbols,
            "input_rows": self.input_rows,
            "files_read": self.files_read,
            "bytes_read": self.bytes_read,
            "data_files_from_index": self.data_files_from_index,
            "read_parts": self.read_parts,
            "full_history_symbols": len(self.full_history),
            "off_calendar_rows": self.off_calendar_rows,
            "intervals": {f"{p.interval}d": p.describe() for p in self.intervals},
        }


@dataclass(frozen=True)
class ResampleResult(JobResult):
    partial: bool = False
    alignment: str = "calendar"
    through: str = ""
    symbols: int = 0
    input_rows: int = 0
    bars: int = 0
    months_written: int = 0
    months_deleted: int = 0
    rows_written: int = 0
    files_read: int = 0
    """Bronze files read while planning (the bronze tail index counts as one)."""
    data_files_from_index: int = 0
    """Data files the bronze tail index stood in for (tail path; 0 on a full read)."""
    bytes_read: int = 0
    """Bronze files read while planning plus silver months read back to be merged or checked
    (their sizes)."""
    failed_intervals: list[int] = field(default_factory=list)
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def stage_failures(self) -> tuple[Failure, ...]:
        def why(n: int) -> str:
            return str((self.intervals.get(f"{n}d") or {}).get("error") or "")

        return tuple(Failure(f"{n}d", why(n)) for n in self.failed_intervals)

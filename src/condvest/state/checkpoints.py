"""Per-interval resample checkpoints (``silver_<N>d_checkpoint.json``)."""

from __future__ import annotations

from typing import Any

from condvest.core import layout
from condvest.storage.base import Storage


def read_checkpoint(storage: Storage, interval: int) -> dict[str, Any] | None:
    seen = storage.read_json_versioned(layout.silver_checkpoint(interval))
    return seen[0] if seen else None


def write_checkpoint(storage: Storage, interval: int, body: dict[str, Any]) -> None:
    # Compact: a checkpoint holds per-symbol digests and bronze state (~0.5 MB at seed scale).
    storage.write_json(layout.silver_checkpoint(interval), body, compact=True)

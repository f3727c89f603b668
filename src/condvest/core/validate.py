"""Row validation before anything is written (docs/design.md §5), pure.

A bad row never stops the batch: it goes to quarantine with its reason and raw values, the rest
lands. Checks: prices > 0, high >= max(open, close), low <= min(open, close), volume >= 0, a
vwap (when given) > 0, sanity ceilings on prices, vwap, volume and transactions
(:class:`Bounds`, configurable), a well-formed symbol, one row per (symbol, date) — an exact
copy of a row is kept once, conflicting copies are all refused."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.layout import is_valid_symbol
from condvest.core.schema import BRONZE_SCHEMA

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string()),
        pa.field("date", pa.date32()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)
"""A rejected row: what it claimed to be, why it was refused, and its raw values as JSON."""

_PRICES = ("open", "high", "low", "close")


def rejected_table(
    rows: list[tuple[str | None, Any, str, dict[str, Any]]], *, source: str, fetched_at: datetime
) -> pa.Table:
    """(symbol, date, reason, raw values) tuples → a quarantine table."""
    return pa.table(
        {
            "symbol": [r[0] for r in rows],
            "date": [r[1] for r in rows],
            "reason": [r[2] for r in rows],
            "raw": [json.dumps(r[3], default=str, sort_keys=True) for r in rows],
            "source": [source] * len(rows),
            "fetched_at": [fetched_at] * len(rows),
        },
        schema=QUARANTINE_SCHEMA,
    )


def _np(table: pa.Table, name: str) -> np.ndarray:
    values: np.ndarray = (
        pc.fill_null(table.column(name).cast(pa.float64()), np.nan)
        .to_numpy()
        .astype(np.float64, copy=False)
    )
    return values


@dataclass(frozen=True)
class Bounds:
    """Sanity ceilings: a value above one is a vendor error, never a real bar (the highest US
    share price is in the hundreds of thousands; 1e300 would become infinity in silver)."""

    max_price: float = 1e7
    max_volume: float = 1e13
    max_transactions: float = 1e10


def _reasons(table: pa.Table, bounds: Bounds) -> list[str | None]:
    """The first failing check of each row (None = the row is good)."""
    o, h, lo, c, v, vw, n = (
        _np(table, name) for name in (*_PRICES, "volume", "vwap", "transactions")
    )
    with np.errstate(invalid="ignore", over="ignore"):
        checks: list[tuple[np.ndarray, str]] = [
            (np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c), "missing price"),
            (np.isnan(v), "missing volume"),
            (~((o > 0) & (h > 0) & (lo > 0) & (c > 0)), "price not > 0"),
            (~np.isfinite(o + h + lo + c + v), "non-finite value"),
            (h < np.maximum(o, c), "high below max(open, close)"),
            (lo > np.minimum(o, c), "low above min(open, close)"),
            (v < 0, "volume below 0"),
            (np.isinf(vw) | (vw <= 0), "vwap not > 0"),
            (n < 0, "transactions below 0"),
            (h > bounds.max_price, f"price above fetch.max_price {bounds.max_price:g}"),
            (vw > bounds.max_price, f"vwap above fetch.max_price {bounds.max_price:g}"),
            (v > bounds.max_volume, f"volume above fetch.max_volume {bounds.max_volume:g}"),
            (
                n > bounds.max_transactions,
                f"transactions above fetch.max_transactions {bounds.max_transactions:g}",
            ),
        ]
    reasons: list[str | None] = [None] * table.num_rows
    for mask, reason in reversed(checks):  # reversed: the first check's reason wins
        for hit in np.flatnonzero(mask).tolist():
            reasons[hit] = reason
    symbols = table.column("symbol").to_pylist()
    days = table.column("date").to_pylist()
    for i, sym in enumerate(symbols):
        if sym is None or not is_valid_symbol(sym):
            reasons[i] = "malformed symbol"
        elif days[i] is None:
            reasons[i] = "missing date"
    # An exact copy of a row is kept once; conflicting copies of one (symbol, date) are all
    # refused: which one is right is unknowable.
    keys = list(zip(symbols, days, strict=True))
    counts = Counter(k for k, r in zip(keys, reasons, strict=True) if r is None)
    if any(count > 1 for count in counts.values()):
        values = table.select([*_PRICES, "volume", "vwap", "transactions"]).to_pylist()
        versions: dict[Any, set[tuple[Any, ...]]] = {}
        for i, key in enumerate(keys):
            if reasons[i] is None and counts[key] > 1:
                versions.setdefault(key, set()).add(tuple(values[i].values()))
        seen: set[Any] = set()
        for i, key in enumerate(keys):
            if reasons[i] is None and counts[key] > 1:
                if len(versions[key]) > 1:
                    reasons[i] = f"duplicate (symbol, date): {counts[key]} differing rows"
                elif key in seen:
                    reasons[i] = "exact copy of another row of the answer (kept once)"
                seen.add(key)
    return reasons


def validate_rows(table: pa.Table, bounds: Bounds | None = None) -> tuple[pa.Table, pa.Table]:
    """Split ``table`` (bronze columns, possibly nullable) into (good rows in the canonical
    schema, rejected rows in :data:`QUARANTINE_SCHEMA`)."""
    if table.num_rows == 0:
        return BRONZE_SCHEMA.empty_table(), QUARANTINE_SCHEMA.empty_table()
    reasons = _reasons(table, bounds or Bounds())
    good_mask = pa.array([r is None for r in reasons])
    good = table.filter(good_mask).select(list(BRONZE_SCHEMA.names)).cast(BRONZE_SCHEMA)
    bad_idx = [i for i, r in enumerate(reasons) if r is not None]
    if not bad_idx:
        return good, QUARANTINE_SCHEMA.empty_table()
    bad = table.take(pa.array(bad_idx)).to_pylist()
    rows = []
    for i, row in zip(bad_idx, bad, strict=True):
        raw = {k: row[k] for k in ("open", "high", "low", "close", "volume", "vwap")}
        raw["transactions"] = row["transactions"]
        rows.append((row["symbol"], row["date"], str(reasons[i]), raw))
    fetched = bad[0]["fetched_at"]
    source = bad[0]["source"]
    return good, rejected_table(rows, source=source, fetched_at=fetched)

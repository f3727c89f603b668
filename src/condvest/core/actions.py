"""Corporate actions, pure: one row per dividend id, and the split sanity check's arithmetic
(docs/corporate-actions.md)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.schema import DIVIDEND_SCHEMA

SPLIT_RATIO_TOLERANCE = 0.01
"""Observed and listed split ratios agree within 1% (prices are rounded to cents, so a
1:3 split of a $10 stock is seen as 2.997-3.003)."""


def latest_dividends(tables: Sequence[pa.Table]) -> pa.Table:
    """:data:`DIVIDEND_SCHEMA` rows of ``tables``, one per ``id``: the newest ``fetched_at``,
    a tie going to the later table (the newer answer), sorted by (symbol, ex_dividend_date,
    id)."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return DIVIDEND_SCHEMA.empty_table()
    both = pa.concat_tables([t.select(DIVIDEND_SCHEMA.names).cast(DIVIDEND_SCHEMA) for t in parts])
    both = both.append_column("_order", pa.array(range(both.num_rows), pa.int64()))
    both = both.sort_by(
        [("id", "ascending"), ("fetched_at", "descending"), ("_order", "descending")]
    )
    ids = both.column("id").to_pylist()
    keep = [i == 0 or ids[i] != ids[i - 1] for i in range(len(ids))]
    out = both.filter(pa.array(keep, pa.bool_())).drop_columns(["_order"])
    return out.sort_by(
        [("symbol", "ascending"), ("ex_dividend_date", "ascending"), ("id", "ascending")]
    )


def observed_ratio(old: pa.Table, new: pa.Table, before: date) -> tuple[float | None, int]:
    """The median of old close / new close over the dates both tables hold before ``before``
    (the split's execution date), and how many dates that is (None when none overlap).

    ``old`` is the lake's rows before the restatement, ``new`` the re-fetched history: for a
    real ``to:from`` split of ratio r, the stored pre-split closes are r times the adjusted
    ones."""
    limit = pa.scalar(before, pa.date32())
    old = old.filter(pc.less(old.column("date"), limit))
    new = new.filter(pc.less(new.column("date"), limit))
    closes = dict(zip(new.column("date").to_pylist(), new.column("close").to_pylist(), strict=True))
    ratios = [
        c / closes[d]
        for d, c in zip(
            old.column("date").to_pylist(), old.column("close").to_pylist(), strict=True
        )
        if closes.get(d) and c
    ]
    return (statistics.median(ratios) if ratios else None), len(ratios)


def ratio_matches(expected: float, observed: float) -> bool:
    return abs(observed / expected - 1.0) <= SPLIT_RATIO_TOLERANCE

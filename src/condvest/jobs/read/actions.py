"""``condvest read actions``: splits and dividends as one table (docs/reading.md)."""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

ACTIONS_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string()),
        pa.field("date", pa.date32()),
        pa.field("kind", pa.string()),
        pa.field("ratio", pa.float64()),
        pa.field("cash_amount", pa.float64()),
        pa.field("currency", pa.string()),
        pa.field("dividend_type", pa.string()),
        pa.field("id", pa.string()),
    ]
)
"""Both kinds: a split fills ``ratio`` (new shares per old), a dividend the cash columns."""


class ActionKind(StrEnum):
    SPLITS = "splits"
    DIVIDENDS = "dividends"


def combined_actions(splits: pa.Table, dividends: pa.Table) -> pa.Table:
    """Splits (``Lake.splits`` columns) and dividends (``Lake.dividends``) as
    :data:`ACTIONS_SCHEMA` rows, sorted by (symbol, date, kind)."""
    n, m = splits.num_rows, dividends.num_rows
    part_s = pa.table(
        {
            "symbol": splits.column("symbol"),
            "date": splits.column("execution_date"),
            "kind": pa.array(["split"] * n, pa.string()),
            "ratio": splits.column("ratio"),
            "cash_amount": pa.nulls(n, pa.float64()),
            "currency": pa.nulls(n, pa.string()),
            "dividend_type": pa.nulls(n, pa.string()),
            "id": pa.nulls(n, pa.string()),
        },
        schema=ACTIONS_SCHEMA,
    )
    part_d = pa.table(
        {
            "symbol": dividends.column("symbol"),
            "date": dividends.column("ex_dividend_date"),
            "kind": pa.array(["dividend"] * m, pa.string()),
            "ratio": pa.nulls(m, pa.float64()),
            "cash_amount": dividends.column("cash_amount"),
            "currency": dividends.column("currency"),
            "dividend_type": dividends.column("dividend_type"),
            "id": dividends.column("id"),
        },
        schema=ACTIONS_SCHEMA,
    )
    both = pa.concat_tables([part_s, part_d])
    return both.sort_by([("symbol", "ascending"), ("date", "ascending"), ("kind", "descending")])

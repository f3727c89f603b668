"""Small builders for resample tests: bronze rows written straight through the Storage API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.schema import BRONZE_SCHEMA, SILVER_SCHEMA
from condvest.storage import Storage


def bronze_row(
    symbol: str,
    day: date,
    close: float,
    *,
    open_: float | None = None,
    high: float | None = None,
    low: float | None = None,
    volume: float = 100.0,
    vwap: float | None = -1.0,
    transactions: int | None = 10,
    fetched_ms: int = 0,
) -> dict[str, Any]:
    """One canonical row; defaults give valid OHLC around ``close`` (vwap = close unless None)."""
    o = close if open_ is None else open_
    return {
        "symbol": symbol,
        "date": day,
        "open": o,
        "high": max(o, close) + 1 if high is None else high,
        "low": min(o, close) - 1 if low is None else low,
        "close": close,
        "volume": volume,
        "vwap": close if vwap == -1.0 else vwap,
        "transactions": transactions,
        "fetched_at": datetime.fromtimestamp(fetched_ms / 1000, UTC),
        "source": "test",
    }


def table_of(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA)


def write_data(storage: Storage, symbol: str, rows: list[dict[str, Any]]) -> None:
    storage.write_parquet(layout.data_file(symbol), table_of(sorted(rows, key=lambda r: r["date"])))


def write_date(storage: Storage, row: dict[str, Any]) -> None:
    storage.write_parquet(layout.date_file(row["symbol"], row["date"]), table_of([row]))


def read_silver(storage: Storage, interval: int) -> pa.Table:
    """Every month file of ``interval``, in key order (which is month order)."""
    parts = [
        storage.read_parquet(o.key)
        for o in storage.list_objects(layout.silver_prefix(interval))
        if layout.parse_silver_file(o.key) is not None
    ]
    if not parts:
        return SILVER_SCHEMA.empty_table()
    return pa.concat_tables([p.cast(SILVER_SCHEMA) for p in parts])


def bars_by_key(table: pa.Table) -> dict[tuple[str, date], dict[str, Any]]:
    return {(r["symbol"], r["start_date"]): r for r in table.to_pylist()}

"""Small builders for consolidate/vacuum tests: landed date files (with their fetch-log entry),
histories written straight into data.parquet, and lake snapshots to compare."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.schema import BRONZE_SCHEMA
from condvest.jobs.bronze import read_file
from condvest.state.fetchlog import SessionEntry, read_session, record_session
from condvest.storage import Storage

T0 = datetime(2026, 1, 1, 22, tzinfo=UTC)


def rows(symbol: str, days: list[date], *, close: float = 10.0, fetched: datetime = T0) -> pa.Table:
    n = len(days)
    return pa.table(
        {
            "symbol": [symbol] * n,
            "date": days,
            "open": [close] * n,
            "high": [close + 1] * n,
            "low": [close - 1] * n,
            "close": [close] * n,
            "volume": [1000.0] * n,
            "vwap": [close] * n,
            "transactions": [7] * n,
            "fetched_at": [fetched] * n,
            "source": ["test"] * n,
        },
        schema=BRONZE_SCHEMA,
    )


def land(
    storage: Storage,
    symbol: str,
    day: date,
    *,
    close: float = 10.0,
    fetched: datetime = T0,
    log: bool = True,
) -> None:
    """Write one date file and add the symbol to the session's fetch-log entry (as fetch does)."""
    storage.write_parquet(
        layout.date_file(symbol, day), rows(symbol, [day], close=close, fetched=fetched)
    )
    if log:
        entry = read_session(storage, day)
        symbols = sorted({*(entry.symbols if entry else []), symbol})
        record_session(
            storage,
            SessionEntry(day, "landed", len(symbols), "test", fetched.isoformat(), "test", symbols),
        )


def history(storage: Storage, symbol: str) -> list[dict[str, Any]]:
    return read_file(storage, layout.data_file(symbol)).to_pylist()


def closes(storage: Storage, symbol: str) -> dict[date, float]:
    return {r["date"]: r["close"] for r in history(storage, symbol)}


def date_files(storage: Storage, symbol: str) -> list[date]:
    out = []
    for obj in storage.list_objects(layout.symbol_prefix(symbol)):
        day = layout.parse_date_file(obj.key)
        if day is not None and not layout.is_temp_key(obj.key):
            out.append(day)
    return sorted(out)


def all_rows(storage: Storage) -> dict[tuple[str, date], dict[str, Any]]:
    """Every row the lake holds — data.parquet or a date file — newest fetched_at winning."""
    out: dict[tuple[str, date], dict[str, Any]] = {}
    for obj in storage.list_objects(layout.BRONZE_OHLCV + "/"):
        if layout.is_temp_key(obj.key) or not obj.key.endswith(".parquet"):
            continue
        for r in read_file(storage, obj.key).to_pylist():
            key = (r["symbol"], r["date"])
            # >=: date files list after data.parquet and win ties, as in the merge.
            if key not in out or r["fetched_at"] >= out[key]["fetched_at"]:
                out[key] = r
    return out


def snapshot(storage: Storage, symbols: list[str]) -> dict[str, Any]:
    """What the lake should look like after consolidation: histories and remaining date files."""
    return {s: (history(storage, s), date_files(storage, s)) for s in symbols}

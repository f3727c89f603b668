"""The bulk bronze reader (one DuckDB scan on disk, a thread pool on S3) against a plain
per-file reference: same merged rows, symbols from the files' own column, legacy files
normalised, one row per (symbol, date) with the newest fetched_at winning."""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.errors import CorruptFileError, StorageError
from condvest.jobs.bronze import list_bronze, read_file
from condvest.jobs.resample.reader import read_bronze
from condvest.jobs.resample.scan import COLUMNS
from conftest import Lake
from resample_helpers import bronze_row, table_of, write_data, write_date

DAYS = get_calendar().sessions_between(date(2024, 1, 2), date(2024, 3, 28))


def _reference(lake: Lake) -> dict[tuple[str, date], dict[str, Any]]:
    """Every file read one by one; for each (symbol, date) the newest fetched_at wins, a tie to
    the date file (the rule the bulk reader must keep)."""
    best: dict[tuple[str, date], tuple[Any, int, dict[str, Any]]] = {}
    for obj in lake.storage.list_objects(layout.BRONZE_OHLCV + "/"):
        rank = 0 if obj.key.endswith(layout.DATA_FILE) else 1
        for row in read_file(lake.storage, obj.key).to_pylist():
            key = (row["symbol"], row["date"])
            mine = (row["fetched_at"], rank)
            if key not in best or mine >= best[key][:2]:
                best[key] = (*mine, {c: row[c] for c in COLUMNS})
    return {k: v[2] for k, v in best.items()}


def _read(lake: Lake) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    got = read_bronze(lake.storage, list_bronze(lake.storage).with_files(), workers=4)
    rows = got.table.select(list(COLUMNS)).to_pylist()
    assert sum(got.counts) == len(rows)
    # Blocks follow the symbol order and each row sits in its symbol's block.
    offset = 0
    for symbol, count in zip(got.symbols, got.counts.tolist(), strict=True):
        block = rows[offset : offset + count]
        assert {r["symbol"] for r in block} == {symbol}
        assert [r["date"] for r in block] == sorted({r["date"] for r in block})
        offset += count
    assert list(got.symbols) == sorted(got.symbols)
    return rows, got.symbols


def test_bulk_read_equals_per_file_reference(lake: Lake, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="condvest.resample")
    s = lake.storage
    # Files of different lengths, so a wrong file-to-row mapping would show.
    for n, sym in enumerate(("INF", "NAN", "TRUE", "NULL", "1234", "BRK.A")):
        write_data(s, sym, [bronze_row(sym, d, 10.0 + n, fetched_ms=1000) for d in DAYS[: 5 + n]])
    write_date(s, bronze_row("INF", DAYS[20], 11.0, fetched_ms=2000))  # not consolidated yet
    write_date(s, bronze_row("NAN", DAYS[30], 12.0, fetched_ms=2000))  # only a date file…
    write_date(s, bronze_row("ONLY", DAYS[3], 7.0, fetched_ms=2000))  # …and a date-only symbol
    time.sleep(0.01)
    # Late corrections: newer fetched_at wins; an older one loses; a tie goes to the date file.
    write_date(s, bronze_row("TRUE", DAYS[1], 99.0, fetched_ms=5000))
    write_date(s, bronze_row("NULL", DAYS[2], 1.0, fetched_ms=500))
    write_date(s, bronze_row("1234", DAYS[0], 42.0, fetched_ms=1000))
    # A legacy data.parquet (naive timestamp, integer prices) beside the canonical ones.
    stamps = pa.array([f"{d.isoformat()}T00:00:00" for d in DAYS[:4]]).cast(pa.timestamp("ns"))
    legacy = pa.table(
        {
            "symbol": ["OLD"] * 4,
            "timestamp": stamps,
            "open": [1, 2, 3, 4],
            "high": [2, 3, 4, 5],
            "low": [0, 1, 2, 3],
            "close": [1, 2, 3, 4],
            "volume": [10, 10, 10, 10],
        }
    )
    s.write_parquet(layout.data_file("OLD"), legacy)
    rows, symbols = _read(lake)
    assert "reading file by file" not in caplog.text  # on disk: the DuckDB scan, no fallback
    assert set(symbols) == {"INF", "NAN", "TRUE", "NULL", "1234", "BRK.A", "ONLY", "OLD"}
    expected = _reference(lake)
    assert {(r["symbol"], r["date"]): r for r in rows} == expected
    assert len(rows) == len(expected)
    by_key = {(r["symbol"], r["date"]): r for r in rows}
    assert by_key[("TRUE", DAYS[1])]["close"] == 99.0
    assert by_key[("NULL", DAYS[2])]["close"] == 13.0
    assert by_key[("1234", DAYS[0])]["close"] == 42.0


def test_symbol_comes_from_the_column_not_the_path(lake: Lake) -> None:
    s = lake.storage
    s.write_parquet(layout.data_file("WRONG"), table_of([bronze_row("RIGHT", DAYS[0], 1.0)]))
    rows, symbols = _read(lake)
    assert symbols == ("RIGHT",) and rows[0]["symbol"] == "RIGHT"


def test_two_symbols_in_one_directory_or_one_symbol_in_two_fail(lake: Lake) -> None:
    s = lake.storage
    mixed = [bronze_row("A", DAYS[0], 1.0), bronze_row("B", DAYS[1], 1.0)]
    s.write_parquet(layout.data_file("A"), table_of(mixed))
    with pytest.raises(CorruptFileError, match=r"symbol=A/? holds rows of 2 symbols"):
        read_bronze(s, list_bronze(s).with_files(), workers=4)
    s.write_parquet(layout.data_file("A"), table_of(mixed[:1]))
    s.write_parquet(layout.data_file("C"), table_of([bronze_row("A", DAYS[2], 1.0)]))
    with pytest.raises(StorageError, match=r"symbol A has rows in 2 directories"):
        read_bronze(s, list_bronze(s).with_files(), workers=4)


def test_corrupt_file_is_named(lake: Lake) -> None:
    write_data(lake.storage, "A", [bronze_row("A", d, 1.0) for d in DAYS[:3]])
    lake.storage.write_bytes(layout.data_file("BAD"), b"not parquet")
    with pytest.raises(CorruptFileError, match=r"symbol=BAD/data\.parquet"):
        read_bronze(lake.storage, list_bronze(lake.storage).with_files(), workers=4)

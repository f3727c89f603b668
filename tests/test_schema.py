"""The original system's bronze files, written with pyarrow and pandas in its shapes, read back
through ``normalise_bronze`` into the canonical schema with the right trading dates and exact
prices; a broken file is an error naming it; canonical files pass through unchanged."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import Lake

from condvest.core import layout
from condvest.core.schema import (
    BRONZE_SCHEMA,
    LEGACY_SOURCE,
    date_range_of,
    empty_bronze,
    is_canonical,
    normalise_bronze,
)
from condvest.errors import CorruptFileError

DAYS = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 7, 1)]
# Prices whose direct decimal→float cast in Arrow 26 is off by an ulp (found by search).
TRICKY_PRICES = {
    2: ["319390.72", "839827.58", "812821.94"],
    4: ["7260.8286", "859.4155", "2035.0411"],
    10: ["65.2652480291", "3.3415174106", "79.2828412184"],
}


def legacy_table(ts_column: str, stamps: list[datetime], unit: str = "ns") -> pa.Table:
    n = len(stamps)
    return pa.table(
        {
            "symbol": ["AAPL"] * n,
            ts_column: pa.array(stamps, pa.timestamp(unit)),
            "open": [10.0 + i for i in range(n)],
            "high": [12.0 + i for i in range(n)],
            "low": [9.0 + i for i in range(n)],
            "close": [11.0 + i for i in range(n)],
            "volume": pa.array([1000 * (i + 1) for i in range(n)], pa.int64()),
            "interval": ["1d"] * n,
        }
    )


def write_and_read(lake: Lake, table: pa.Table, symbol: str = "AAPL") -> pa.Table:
    """Write ``table`` with plain pyarrow as a legacy file in the lake; read it back normalised."""
    key = layout.data_file(symbol)
    path = lake.storage.local_path(key)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return normalise_bronze(lake.storage.read_parquet(key), where=lake.storage.url(key))


def check_canonical(out: pa.Table) -> None:
    assert out.schema.equals(BRONZE_SCHEMA)
    assert is_canonical(out.schema)
    assert set(out.column_names).isdisjoint({"timestamp", "timestamp_1", "interval"})
    assert "__index_level_0__" not in out.column_names


@pytest.mark.parametrize("unit", ["ns", "us", "ms"])
def test_naive_timestamp_at_midnight(local_lake: Lake, unit: str) -> None:
    stamps = [datetime(d.year, d.month, d.day) for d in DAYS]
    out = write_and_read(local_lake, legacy_table("timestamp", stamps, unit))
    check_canonical(out)
    assert out.column("date").to_pylist() == DAYS
    assert out.column("symbol").to_pylist() == ["AAPL"] * 3
    assert out.column("volume").to_pylist() == [1000.0, 2000.0, 3000.0]
    assert out.column("source").to_pylist() == [LEGACY_SOURCE] * 3
    assert out.column("vwap").null_count == 3
    assert out.column("transactions").null_count == 3
    # Legacy rows carry no fetch time: the epoch, so any real fetch wins a de-duplication.
    assert out.column("fetched_at").to_pylist() == [datetime(1970, 1, 1, tzinfo=UTC)] * 3


def test_naive_timestamp_at_the_utc_start_of_the_new_york_day(local_lake: Lake) -> None:
    """Polygon's ``t`` (midnight New York in ms) converted naively: 05:00 UTC in winter,
    04:00 UTC in summer."""
    stamps = [datetime(2025, 1, 2, 5), datetime(2025, 1, 3, 5), datetime(2025, 7, 1, 4)]
    out = write_and_read(local_lake, legacy_table("timestamp", stamps))
    check_canonical(out)
    assert out.column("date").to_pylist() == DAYS


def test_legacy_timestamp_1(local_lake: Lake) -> None:
    stamps = [datetime(d.year, d.month, d.day) for d in DAYS]
    out = write_and_read(local_lake, legacy_table("timestamp_1", stamps))
    check_canonical(out)
    assert out.column("date").to_pylist() == DAYS


@pytest.mark.parametrize(
    "stamps",
    [
        # Midnight New York, stored as an aware UTC instant.
        [datetime(2025, 1, 2, 5, tzinfo=UTC), datetime(2025, 7, 1, 4, tzinfo=UTC)],
        # The date stored as UTC midnight (19:00/20:00 the evening before in New York).
        [datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)],
        # The session's close, as an aware instant.
        [datetime(2025, 1, 2, 21, tzinfo=UTC), datetime(2025, 7, 1, 20, tzinfo=UTC)],
    ],
)
def test_aware_timestamps(local_lake: Lake, stamps: list[datetime]) -> None:
    table = legacy_table("timestamp", [s.replace(tzinfo=None) for s in stamps])
    table = table.set_column(1, "timestamp", pa.array(stamps, pa.timestamp("ms", tz="UTC")))
    out = write_and_read(local_lake, table)
    assert out.column("date").to_pylist() == [date(2025, 1, 2), date(2025, 7, 1)]


def test_date_as_text(local_lake: Lake) -> None:
    table = legacy_table("timestamp", [datetime(2025, 1, 2)] * 3).drop_columns(["timestamp"])
    table = table.append_column("date", pa.array([d.isoformat() for d in DAYS]))
    out = write_and_read(local_lake, table)
    assert out.column("date").to_pylist() == DAYS


@pytest.mark.parametrize(("precision", "scale"), [(10, 2), (18, 4), (38, 10)])
def test_decimal_prices_are_exact(local_lake: Lake, precision: int, scale: int) -> None:
    values = [Decimal(p) for p in TRICKY_PRICES[scale]] + [Decimal("65.43"), Decimal("0.01")]
    values = [v.quantize(Decimal(1).scaleb(-scale)) for v in values]
    n = len(values)
    decimals = pa.array(values, pa.decimal128(precision, scale))
    table = pa.table(
        {
            "symbol": ["BRK.A"] * n,
            "timestamp": pa.array([datetime(2025, 1, 2)] * n, pa.timestamp("ns")),
            "open": decimals,
            "high": decimals,
            "low": decimals,
            "close": decimals,
            "volume": pa.array(range(n), pa.int64()),
            "vwap": decimals,
        }
    )
    out = write_and_read(local_lake, table, symbol="BRK.A")
    check_canonical(out)
    expected = [float(v) for v in values]
    for column in ("open", "high", "low", "close", "vwap"):
        assert out.column(column).to_pylist() == expected, column


def test_stray_index_column_and_extras(local_lake: Lake) -> None:
    table = legacy_table("timestamp", [datetime(d.year, d.month, d.day) for d in DAYS])
    table = table.append_column("__index_level_0__", pa.array([7, 8, 9], pa.int64()))
    table = table.append_column("transactions", pa.array([5, None, 7], pa.int32()))
    table = table.append_column("fetched_at", pa.array([datetime(2025, 1, 3, 1)] * 3))
    table = table.append_column("source", pa.array(["polygon", None, "polygon"]))
    out = write_and_read(local_lake, table)
    check_canonical(out)
    assert out.column("transactions").to_pylist() == [5, None, 7]
    assert out.column("fetched_at").to_pylist() == [datetime(2025, 1, 3, 1, tzinfo=UTC)] * 3
    assert out.column("source").to_pylist() == ["polygon", LEGACY_SOURCE, "polygon"]


def test_pandas_written_legacy_file(local_lake: Lake) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "symbol": ["KIMpL"] * 4,
            "timestamp": pd.to_datetime(
                ["2025-01-02 05:00", "2025-01-03 05:00", "2025-07-01 04:00", "2025-07-02 04:00"]
            ),
            "open": [1.1, 1.2, 1.3, 1.4],
            "high": [2.1, 2.2, 2.3, 2.4],
            "low": [0.1, 0.2, 0.3, 0.4],
            "close": [1.5, 1.6, 1.7, 1.8],
            "volume": [100, 200, 300, 400],
            "interval": ["daily"] * 4,
        }
    )
    frame = frame[frame["volume"] != 300]  # a filtered frame keeps a gappy index
    key = layout.data_file("KIMpL")
    path = local_lake.storage.local_path(key)
    assert path is not None
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    raw = local_lake.storage.read_parquet(key)
    assert "__index_level_0__" in raw.column_names
    out = normalise_bronze(raw, where=str(path))
    check_canonical(out)
    assert out.column("date").to_pylist() == [date(2025, 1, 2), date(2025, 1, 3), date(2025, 7, 2)]
    assert out.column("close").to_pylist() == [1.5, 1.6, 1.8]
    assert out.column("volume").to_pylist() == [100.0, 200.0, 400.0]


def test_legacy_file_on_every_storage(lake: Lake) -> None:
    """Read through the storage interface on local disk and S3 alike."""
    table = legacy_table("timestamp", [datetime(2025, 1, 2, 5), datetime(2025, 7, 1, 4)])
    key = layout.data_file("INF")
    lake.storage.write_parquet(key, table.set_column(0, "symbol", pa.array(["INF", "INF"])))
    out = normalise_bronze(lake.storage.read_parquet(key), where=lake.storage.url(key))
    check_canonical(out)
    assert out.column("date").to_pylist() == [date(2025, 1, 2), date(2025, 7, 1)]
    assert out.column("symbol").to_pylist() == ["INF", "INF"]
    assert date_range_of(out) == (date(2025, 1, 2), date(2025, 7, 1))


# -- broken files ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("drop", "message"),
    [
        (["close"], "missing column(s) close"),
        (["open", "volume"], "missing column(s) open, volume"),
        (["timestamp"], "no date or timestamp column"),
        (["symbol"], "no symbol column"),
    ],
)
def test_missing_columns_name_the_file(local_lake: Lake, drop: list[str], message: str) -> None:
    table = legacy_table("timestamp", [datetime(2025, 1, 2)]).drop_columns(drop)
    key = layout.data_file("AAPL")
    with pytest.raises(CorruptFileError) as info:
        write_and_read(local_lake, table)
    text = str(info.value)
    assert text.startswith(local_lake.storage.url(key) + ": ")
    assert message in text
    assert "\n" not in text


def test_null_prices_are_corrupt() -> None:
    table = legacy_table("timestamp", [datetime(2025, 1, 2), datetime(2025, 1, 3)])
    table = table.set_column(
        table.column_names.index("close"), "close", pa.array([1.0, None], pa.float64())
    )
    with pytest.raises(CorruptFileError, match=r"^f\.parquet: null symbol, date, price or volume"):
        normalise_bronze(table, where="f.parquet")


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("open", pa.array(["n/a"]), "cannot normalise"),
        ("volume", pa.array([[1]]), "cannot normalise"),
        ("timestamp", pa.array([20250102], pa.int64()), "date column has unsupported type int64"),
        ("timestamp", pa.array(["02/01/2025"]), "cannot normalise"),
    ],
)
def test_unconvertible_column_is_corrupt(column: str, values: pa.Array, message: str) -> None:
    """Never an internal error: a CorruptFileError naming the file."""
    table = legacy_table("timestamp", [datetime(2025, 1, 2)])
    table = table.set_column(table.column_names.index(column), column, values)
    with pytest.raises(CorruptFileError) as info:
        normalise_bronze(table, where="f.parquet")
    assert str(info.value).startswith(f"f.parquet: {message}")


# -- canonical files ------------------------------------------------------------------------------
def canonical_rows() -> dict[str, Any]:
    return {
        "symbol": ["NAN", "NAN"],
        "date": [date(2025, 1, 2), date(2025, 1, 3)],
        "open": [1.0, 2.0],
        "high": [3.0, 4.0],
        "low": [0.5, 1.5],
        "close": [2.5, 3.5],
        "volume": [1e6, 2.5e6],
        "vwap": [2.0, None],
        "transactions": [10, None],
        "fetched_at": [datetime(2025, 1, 3, 1, tzinfo=UTC)] * 2,
        "source": ["polygon", "synthetic"],
    }


def test_canonical_file_passes_through_unchanged(lake: Lake) -> None:
    table = pa.table(canonical_rows(), schema=BRONZE_SCHEMA)
    key = layout.date_file("NAN", date(2025, 1, 2))
    lake.storage.write_parquet(key, table)
    read = lake.storage.read_parquet(key)
    out = normalise_bronze(read, where=key)
    assert out.equals(table)
    assert out.schema.equals(BRONZE_SCHEMA)
    assert normalise_bronze(out).equals(out)  # idempotent


def test_empty_tables() -> None:
    assert normalise_bronze(empty_bronze()).num_rows == 0
    assert date_range_of(empty_bronze()) is None
    assert is_canonical(empty_bronze().schema)


def test_non_canonical_schema_is_detected() -> None:
    legacy = legacy_table("timestamp", [datetime(2025, 1, 2)])
    assert not is_canonical(legacy.schema)

"""The one bronze index and the one bronze reader (jobs/bronze.py), on local disk and the S3
server: what the listing groups per symbol directory, and what the reader returns for canonical,
legacy, bounded and corrupt files."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.core.schema import BRONZE_SCHEMA
from condvest.errors import CorruptFileError, NotFoundError
from condvest.jobs.bronze import index, list_bronze, read_file, symbol_dirs
from conftest import Lake
from resample_helpers import bronze_row, table_of, write_data, write_date

DAYS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]


def _lake(lake: Lake) -> None:
    s = lake.storage
    write_data(s, "A", [bronze_row("A", d, 10.0) for d in DAYS[:2]])
    write_date(s, bronze_row("A", DAYS[2], 11.0))
    write_date(s, bronze_row("INF", DAYS[2], 5.0))
    s.write_bytes(layout.symbol_prefix("A") + ".tmp-0123456789ab-data.parquet", b"half")
    s.write_bytes(layout.symbol_prefix("A") + "notes.txt", b"mine")
    s.write_bytes(layout.BRONZE_OHLCV + "/stray.parquet", b"x")


def test_the_index_groups_each_symbol_directory(lake: Lake) -> None:
    _lake(lake)
    bronze = list_bronze(lake.storage)
    assert list(bronze.symbols) == ["A", "INF"]
    a = bronze.symbols["A"]
    assert a.data is not None and a.data.key == layout.data_file("A")
    assert list(a.dates) == [DAYS[2]] and a.dates[DAYS[2]].key == layout.date_file("A", DAYS[2])
    assert [o.key.rsplit("/", 1)[-1] for o in a.temps] == [".tmp-0123456789ab-data.parquet"]
    assert [o.key.rsplit("/", 1)[-1] for o in a.others] == ["notes.txt"]
    assert [o.key for o in bronze.stray] == [layout.BRONZE_OHLCV + "/stray.parquet"]
    assert bronze.temp_files == 1
    listed = lake.storage.list_objects(layout.BRONZE_OHLCV + "/")
    assert bronze.bytes == sum(o.size for o in listed)
    # The same view from objects listed elsewhere (vacuum lists the whole lake once), and of
    # only the symbols asked for (an absent one is absent).
    assert index(lake.storage.list_objects("")).symbols == bronze.symbols
    only = list_bronze(lake.storage, ["INF", "NOPE"], workers=2)
    assert list(only.symbols) == ["INF"] and only.symbols["INF"].data is None
    assert symbol_dirs(lake.storage) == {"A", "INF"}


def test_the_reader_returns_the_canonical_schema(lake: Lake) -> None:
    _lake(lake)
    s = lake.storage
    table = read_file(s, layout.data_file("A"))
    assert table.schema.equals(BRONZE_SCHEMA) and table.num_rows == 2
    bounded = read_file(s, layout.data_file("A"), DAYS[1], None)
    assert bounded.column("date").to_pylist() == [DAYS[1]]
    assert bounded.schema.equals(BRONZE_SCHEMA)
    # A legacy shape (another column order, nullable columns, an extra column) is normalised,
    # then bounded the same way.
    legacy = table_of([bronze_row("L", d, 3.0) for d in DAYS])
    legacy = legacy.select(list(reversed(legacy.schema.names))).append_column(
        "interval", pa.array(["1d"] * 3)
    )
    s.write_parquet(layout.data_file("L"), legacy)
    got = read_file(s, layout.data_file("L"), None, DAYS[1])
    assert got.schema.equals(BRONZE_SCHEMA) and got.column("date").to_pylist() == DAYS[:2]


def test_the_reader_names_a_corrupt_file_and_an_absent_one_is_not_found(lake: Lake) -> None:
    s = lake.storage
    s.write_bytes(layout.data_file("BAD"), b"not parquet")
    with pytest.raises(CorruptFileError, match=r"symbol=BAD/data\.parquet is not a readable"):
        read_file(s, layout.data_file("BAD"))
    with pytest.raises(NotFoundError):
        read_file(s, layout.data_file("GONE"))

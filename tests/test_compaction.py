"""The shared verified, atomic merge into data.parquet (jobs/compaction.py), on local disk and
the S3 server: legacy files, corrupt files, no-op merges, and concurrent writers."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.errors import CorruptFileError, VerificationError
from condvest.jobs.bronze import read_file
from condvest.jobs.compaction import merge_into_data_file
from conftest import Lake
from consolidate_helpers import T0, closes, rows

DAYS = [date(2024, 1, 2) + timedelta(days=i) for i in range(40)]


def test_legacy_history_is_normalised_and_kept(lake: Lake) -> None:
    legacy = pa.table(
        {
            "symbol": ["LEG"],
            "timestamp_1": pa.array([1704153600000], pa.timestamp("ms")),  # 2024-01-02 naive
            "interval": ["1d"],
            "open": pa.array([10], pa.decimal128(12, 4)),
            "high": pa.array([11], pa.decimal128(12, 4)),
            "low": pa.array([9], pa.decimal128(12, 4)),
            "close": pa.array([10], pa.decimal128(12, 4)),
            "volume": pa.array([5], pa.int64()),
        }
    )
    lake.storage.write_parquet(layout.data_file("LEG"), legacy)
    report = merge_into_data_file(lake.storage, "LEG", rows("LEG", [DAYS[1]], close=12.0))
    assert report.changed and report.stats.added_dates == 1
    got = read_file(lake.storage, layout.data_file("LEG")).to_pylist()
    assert [r["date"] for r in got] == DAYS[:2]
    assert got[0]["source"] == "legacy" and got[0]["close"] == 10.0 and got[1]["close"] == 12.0
    # A legacy file with nothing new is still rewritten canonically (once).
    lake.storage.write_parquet(layout.data_file("LEG"), legacy)
    assert merge_into_data_file(lake.storage, "LEG", rows("LEG", [], close=1.0)).changed
    assert not merge_into_data_file(lake.storage, "LEG", rows("LEG", [], close=1.0)).changed


def test_corrupt_history_fails_and_is_untouched(lake: Lake) -> None:
    junk = b"PAR1\x00\x01garbage"
    lake.storage.write_bytes(layout.data_file("BAD"), junk)
    with pytest.raises(CorruptFileError, match="not a readable parquet"):
        merge_into_data_file(lake.storage, "BAD", rows("BAD", [DAYS[0]]))
    assert lake.storage.read_bytes(layout.data_file("BAD")) == junk


def test_foreign_rows_are_refused(lake: Lake) -> None:
    merge_into_data_file(lake.storage, "AAA", rows("AAA", DAYS[:2]))
    before = lake.storage.read_bytes(layout.data_file("AAA"))
    with pytest.raises(VerificationError, match="other symbols"):
        merge_into_data_file(lake.storage, "AAA", rows("BBB", [DAYS[5]]))
    assert lake.storage.read_bytes(layout.data_file("AAA")) == before


def test_same_rows_again_write_nothing(lake: Lake) -> None:
    first = merge_into_data_file(lake.storage, "SAME", rows("SAME", DAYS[:3]))
    version = lake.storage.stat(layout.data_file("SAME"))
    again = merge_into_data_file(lake.storage, "SAME", rows("SAME", DAYS[1:3]))
    assert first.changed and not again.changed and again.bytes_written == 0
    assert lake.storage.stat(layout.data_file("SAME")) == version


def test_newest_fetch_wins_in_both_directions(lake: Lake) -> None:
    merge_into_data_file(lake.storage, "NEW", rows("NEW", DAYS[:2], close=5.0, fetched=T0))
    older = rows("NEW", [DAYS[0]], close=1.0, fetched=T0 - timedelta(days=1))
    assert not merge_into_data_file(lake.storage, "NEW", older).changed
    newer = rows("NEW", [DAYS[1]], close=9.0, fetched=T0 + timedelta(days=1))
    report = merge_into_data_file(lake.storage, "NEW", newer)
    assert report.stats.replaced_dates == 1
    assert closes(lake.storage, "NEW") == {DAYS[0]: 5.0, DAYS[1]: 9.0}


def test_concurrent_merges_into_one_symbol_lose_nothing(lake: Lake) -> None:
    errors: list[BaseException] = []

    def writer(days: list[date]) -> None:
        try:
            for day in days:
                merge_into_data_file(lake.storage, "RACE", rows("RACE", [day]))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(DAYS[i::2][:10],)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(closes(lake.storage, "RACE")) == sorted(DAYS[0::2][:10] + DAYS[1::2][:10])


def test_verify_merge_refuses_lossy_or_unsorted_results() -> None:
    from condvest.core.merge import merge_bronze, verify_merge

    old = rows("V", DAYS[:3])
    incoming = rows("V", [DAYS[2], DAYS[5]], fetched=T0 + timedelta(days=1))
    merged, stats = merge_bronze(old, incoming)
    verify_merge(old, incoming, merged, symbol="V")
    assert (stats.added_dates, stats.replaced_dates, merged.num_rows) == (1, 1, 4)
    with pytest.raises(VerificationError, match="lose 1 date"):
        verify_merge(old, incoming, merged.slice(0, 3), symbol="V")
    with pytest.raises(VerificationError, match="not sorted"):
        verify_merge(old, incoming, pa.concat_tables([merged, merged.slice(0, 1)]), symbol="V")


def test_verify_merge_refuses_a_date_from_neither_input() -> None:
    from condvest.core.merge import merge_bronze, verify_merge

    old = rows("V", DAYS[:3])
    incoming = rows("V", [DAYS[5]])
    merged, _ = merge_bronze(old, incoming)
    invented = pa.concat_tables([merged.slice(0, 3), rows("V", [DAYS[4]]), merged.slice(3)])
    with pytest.raises(VerificationError, match=r"row count 5 != old \+ new dates 4"):
        verify_merge(old, incoming, invented, symbol="V")
    with pytest.raises(VerificationError, match="lose 3 date"):
        verify_merge(old, incoming, rows("V", [DAYS[5]]), symbol="V")
    with pytest.raises(VerificationError, match="lose 4 date"):
        verify_merge(old, incoming, rows("V", []), symbol="V")
    verify_merge(rows("V", []), rows("V", []), rows("V", []), symbol="V")


def test_a_bad_encode_is_caught_before_the_swap(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes about to be swapped in are decoded and compared with the merged rows: an
    encoder that writes a wrong value (here: one close price) fails the symbol, and the
    history on disk is untouched."""
    from condvest.jobs import compaction

    merge_into_data_file(lake.storage, "ENC", rows("ENC", DAYS[:3]))
    before = lake.storage.read_bytes(layout.data_file("ENC"))
    good_encode = compaction.bronze_bytes

    def bad_encode(table: pa.Table) -> bytes:
        closes = table.column("close").to_pylist()
        closes[1] += 0.01
        field = table.schema.field("close")  # same schema: only a value differs
        return good_encode(table.set_column(5, field, pa.array(closes, pa.float64())))

    monkeypatch.setattr(compaction, "bronze_bytes", bad_encode)
    with pytest.raises(VerificationError, match="does not read back equal"):
        merge_into_data_file(lake.storage, "ENC", rows("ENC", [DAYS[3]]))
    assert lake.storage.read_bytes(layout.data_file("ENC")) == before

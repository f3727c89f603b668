"""Lake layout: symbol validation (a symbol becomes a path segment), every path builder round
trips with its parser, and temporary keys are recognised (and never mistaken for data)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condvest.core import layout
from condvest.errors import InvalidSymbolError, UsageError

VALID = ["AAPL", "BRK.A", "BRK-B", "KIMpL", "INF", "NAN", "TRUE", "NULL", "1234", "A", "X" * 32]


@pytest.mark.parametrize("symbol", VALID)
def test_valid_symbols(symbol: str) -> None:
    assert layout.validate_symbol(symbol) == symbol
    assert layout.is_valid_symbol(symbol)


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        ("", "symbol is empty (pass tickers such as AAPL,BRK.A)"),
        ("A/B", "symbol 'A/B' is not a valid ticker (letters, digits and . - _ only, e.g. BRK.A)"),
        ("..", "symbol '..' is not a valid ticker (letters, digits and . - _ only, e.g. BRK.A)"),
        ("a/../b", "symbol 'a/../b' is not a valid ticker (letters, digits and . - _ only, e.g. "
         "BRK.A)"),
        ("A..B", "symbol 'A..B' is not a valid ticker (letters, digits and . - _ only, e.g. "
         "BRK.A)"),
        (".", "symbol '.' is not a valid ticker (letters, digits and . - _ only, e.g. BRK.A)"),
        ("A\\B", "symbol 'A\\\\B' is not a valid ticker (letters, digits and . - _ only, e.g. "
         "BRK.A)"),
        (" AAPL", "symbol ' AAPL' is not a valid ticker (letters, digits and . - _ only, e.g. "
         "BRK.A)"),
        ("AAPL\n", "symbol 'AAPL\\n' contains control characters"),
        ("A\x00B", "symbol 'A\\x00B' contains control characters"),
        ("A\x7fB", "symbol 'A\\x7fB' contains control characters"),
        ("X" * 33, f"symbol '{'X' * 33}' is 33 characters; at most 32 allowed"),
    ],
)  # fmt: skip
def test_invalid_symbols(symbol: str, message: str) -> None:
    with pytest.raises(InvalidSymbolError) as info:
        layout.validate_symbol(symbol)
    assert str(info.value) == message
    assert info.value.exit_code == 2
    assert not layout.is_valid_symbol(symbol)


def test_over_long_symbol_message_is_truncated() -> None:
    symbol = "ABCDEFGHIJ" * 100
    with pytest.raises(InvalidSymbolError) as info:
        layout.validate_symbol(symbol)
    message = str(info.value)
    assert message == f"symbol '{symbol[:40]}…' is 1000 characters; at most 32 allowed"
    assert symbol not in message


@pytest.mark.parametrize("symbol", ["", "A/B", "a/../b", "..", "X\x01"])
def test_path_builders_refuse_bad_symbols(symbol: str) -> None:
    for build in (
        layout.symbol_prefix,
        layout.data_file,
        lambda s: layout.date_file(s, date(2025, 1, 2)),
        layout.restated_marker,
    ):
        with pytest.raises(InvalidSymbolError):
            build(symbol)


def test_parse_symbols() -> None:
    assert layout.parse_symbols(None) is None
    assert layout.parse_symbols("MSFT, AAPL,,BRK.A,AAPL") == ["AAPL", "BRK.A", "MSFT"]
    with pytest.raises(UsageError, match=r"^--symbols is empty"):
        layout.parse_symbols(" , ")
    with pytest.raises(InvalidSymbolError, match=r"'a/\.\./b'"):
        layout.parse_symbols("AAPL,a/../b")


# -- builders and parsers round trip -----------------------------------------------------------
symbols = st.sampled_from(VALID) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,30}", fullmatch=True
)
symbols = symbols.filter(lambda s: ".." not in s)
days = st.dates(min_value=date(1962, 1, 2), max_value=date(2099, 12, 31))


@given(symbol=symbols, day=days)
def test_date_file_round_trip(symbol: str, day: date) -> None:
    key = layout.date_file(symbol, day)
    assert key == f"bronze/raw_ohlcv/symbol={symbol}/date={day.isoformat()}.parquet"
    assert layout.parse_date_file(key) == day
    assert layout.parse_date_file(key.rsplit("/", 1)[-1]) == day
    assert layout.parse_symbol_dir(key) == symbol
    assert not layout.is_temp_key(key)


@given(symbol=symbols)
def test_data_file_round_trip(symbol: str) -> None:
    key = layout.data_file(symbol)
    assert key == f"bronze/raw_ohlcv/symbol={symbol}/data.parquet"
    assert layout.parse_symbol_dir(key) == symbol
    assert layout.parse_date_file(key) is None
    assert key.startswith(layout.symbol_prefix(symbol))


@given(interval=st.integers(2, 1000), year=st.integers(1962, 2099), month=st.integers(1, 12))
def test_silver_file_round_trip(interval: int, year: int, month: int) -> None:
    key = layout.silver_file(interval, year, month)
    assert key.startswith(layout.silver_prefix(interval))
    assert key.endswith(f"/data_{interval}d_{year:04d}{month:02d}.parquet")
    assert layout.parse_silver_file(key) == (interval, year, month)
    assert not layout.is_temp_key(key)


def test_silver_layout_is_the_originals() -> None:
    assert (
        layout.silver_file(5, 2025, 3)
        == "silver/silver_5d/year=2025/month=03/data_5d_202503.parquet"
    )
    assert layout.silver_checkpoint(5) == "processing_metadata/silver_5d_checkpoint.json"
    assert layout.CONSOLIDATION_MANIFEST == "processing_metadata/consolidation_manifest.parquet"
    assert layout.CLEANUP_MANIFEST == "processing_metadata/cleanup_manifest.json"


@given(day=days)
def test_fetch_log_entry_round_trip(day: date) -> None:
    key = layout.fetch_log_entry(day)
    assert key.startswith(layout.FETCH_LOG_PREFIX)
    assert layout.parse_fetch_log_entry(key) == day


@pytest.mark.parametrize(
    "key",
    [
        "bronze/raw_ohlcv/symbol=AAPL/data.parquet",
        "bronze/raw_ohlcv/symbol=AAPL/date=2025-13-01.parquet",
        "bronze/raw_ohlcv/symbol=AAPL/date=2025-01-02.parquet.bak",
        "bronze/raw_ohlcv/symbol=AAPL/xdate=2025-01-02.parquet",
        "bronze/raw_ohlcv/symbol=AAPL/date=2025-1-2.parquet",
    ],
)
def test_parse_date_file_rejects(key: str) -> None:
    assert layout.parse_date_file(key) is None


@pytest.mark.parametrize(
    "key",
    [
        "processing_metadata/fetch_log/session=2025-13-01.json",
        "processing_metadata/fetch_log/session=2025-01-02.json.tmp",
        "processing_metadata/fetch_log/README",
    ],
)
def test_parse_fetch_log_entry_rejects(key: str) -> None:
    assert layout.parse_fetch_log_entry(key) is None


@pytest.mark.parametrize(
    "key",
    [
        "bronze/raw_meta/symbol=AAPL/data.parquet",
        "bronze/raw_ohlcv/symbol=a..b/data.parquet",
        "bronze/raw_ohlcv/symbol=/data.parquet",
        "bronze/raw_ohlcv/AAPL/data.parquet",
    ],
)
def test_parse_symbol_dir_rejects(key: str) -> None:
    assert layout.parse_symbol_dir(key) is None


def test_other_builders() -> None:
    day = date(2025, 1, 2)
    assert layout.quarantine_file(day, "r1") == "bronze/quarantine/date=2025-01-02/r1.parquet"
    assert layout.watermark("ohlcv_daily") == "processing_metadata/watermarks/ohlcv_daily.json"
    assert layout.lock("fetch") == "processing_metadata/locks/fetch.json"
    assert layout.run_latest("fetch") == "processing_metadata/runs/fetch/latest.json"
    assert layout.run_record("fetch", "20250102T000000Z", "r1").startswith(layout.RUNS_PREFIX)
    assert layout.restated_marker("BRK.A") == "processing_metadata/restated/symbol=BRK.A.json"
    assert layout.corporate_actions_file("splits", day) == (
        "bronze/corporate_actions/splits/date=2025-01-02.parquet"
    )
    assert layout.meta_snapshot(day, "r1") == "bronze/raw_meta/date=2025-01-02/r1.parquet"


# -- temporary keys ------------------------------------------------------------------------------
@given(symbol=symbols, day=days, token=st.from_regex(r"[0-9a-f]{12}", fullmatch=True))
def test_temp_keys_are_recognised_and_never_data(symbol: str, day: date, token: str) -> None:
    for key in (
        layout.date_file(symbol, day),
        layout.data_file(symbol),
        layout.silver_file(5, day.year, day.month),
        layout.fetch_log_entry(day),
        layout.CONSOLIDATION_MANIFEST,
    ):
        temp = layout.temp_key(key, token)
        assert layout.is_temp_key(temp)
        assert not layout.is_temp_key(key)
        assert temp.rsplit("/", 1)[0] == key.rsplit("/", 1)[0]  # a sibling: same directory
        assert token in temp
        assert layout.parse_date_file(temp) is None
        assert layout.parse_silver_file(temp) is None
        assert layout.parse_fetch_log_entry(temp) is None


def test_temp_key_at_the_root_and_symbols_that_look_like_temp() -> None:
    assert layout.is_temp_key(layout.temp_key("x.json", "t"))
    # A ticker containing the marker is still data: only the file name decides.
    assert layout.is_valid_symbol("A.tmp-B")
    assert not layout.is_temp_key(layout.data_file("A.tmp-B"))

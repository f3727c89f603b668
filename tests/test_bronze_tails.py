"""The bronze tail index (condvest.state.bronze_tails): consolidate keeps each merged file's last
rows at the version its swap produced; the daily resample reads that one file instead of every
data.parquet, and any file the index does not hold at its listed version is read as before.
Every run is compared with a full rebuild."""

from __future__ import annotations

import logging
from datetime import date, datetime

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.jobs.consolidate import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.jobs.resample.job import ResampleOptions, ResamplePlan, plan_resample, run_resample
from condvest.settings import ConsolidateMode
from condvest.state.bronze_tails import keep_rows, read_tails
from conftest import Lake, at
from consolidate_helpers import land, rows
from resample_helpers import bars_by_key, read_silver

CAL = get_calendar()
HISTORY = CAL.sessions_between(date(2024, 1, 2), date(2024, 7, 9))
INTERVALS = (3, 5, 13)
SYMBOLS = ("A", "INF", "1234")


def _now(day: date) -> datetime:
    return at(f"{day.isoformat()}T23:00:00+00:00")


def _consolidate(lake: Lake, day: date, **options: object) -> None:
    ctx = lake.context(now=_now(day), consolidate={"retention_days": 30})
    result = run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(**options)))  # type: ignore[arg-type]
    assert result.ok, result.to_dict()


def _resample(lake: Lake, day: date) -> ResamplePlan:
    """Plan and run the daily resample (what planning logged is kept for _from_index), check
    silver against a full rebuild, and check the result says what the index stood in for."""
    ctx = lake.context(now=_now(day), resample={"intervals": list(INTERVALS)})
    handler, logger = _Said(), logging.getLogger("condvest.resample")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        plan = plan_resample(ctx, ResampleOptions(intervals=INTERVALS))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    _LAST[lake.uri] = handler.said
    result = run_resample(ctx, plan)
    assert result.ok
    said = result.to_dict()
    assert said["data_files_from_index"] == plan.data_files_from_index
    assert said["files_read"] == plan.files_read
    full = plan_resample(ctx, ResampleOptions(intervals=INTERVALS, full=True))
    for iplan in full.intervals:
        assert bars_by_key(read_silver(lake.storage, iplan.interval)) == bars_by_key(iplan.table)
    return plan


_LAST: dict[str, str] = {}


class _Said(logging.Handler):
    """What resample's planning said about the index ("k of n data files from ...")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said = "no data file from the bronze tail index"

    def emit(self, record: logging.LogRecord) -> None:
        if "from the bronze tail index" in record.getMessage():
            self.said = record.getMessage()


def _from_index(lake: Lake) -> str:
    return _LAST[lake.uri]


def _lake_with_history(lake: Lake) -> date:
    """Every symbol's history landed and consolidated (the index written), silver built."""
    for n, sym in enumerate(SYMBOLS):
        lake.storage.write_parquet(
            layout.date_file(sym, HISTORY[0]), rows(sym, [HISTORY[0]], close=5.0 + n)
        )
    _consolidate(lake, HISTORY[0])
    for n, sym in enumerate(SYMBOLS):
        lake.storage.write_parquet(layout.data_file(sym), rows(sym, list(HISTORY), close=10.0 + n))
    _consolidate(
        lake, HISTORY[-1], mode=ConsolidateMode.FULL
    )  # visits every file: every entry current
    _resample(lake, HISTORY[-1])
    return HISTORY[-1]


def _next_day(lake: Lake, day: date, close: float) -> date:
    day = CAL.next_session(day)  # type: ignore[assignment]
    for sym in SYMBOLS:
        land(lake.storage, sym, day, close=close, fetched=_now(day))
    _consolidate(lake, day)
    return day


def test_daily_resample_reads_the_index_not_the_data_files(lake: Lake) -> None:
    day = _lake_with_history(lake)
    tails = read_tails(lake.storage)
    assert tails is not None and set(tails.versions) == set(SYMBOLS)
    for close in (20.0, 21.0, 22.0):
        day = _next_day(lake, day, close)
        plan = _resample(lake, day)
        assert all(p.replace_from is not None for p in plan.intervals)  # the tail path
        assert _from_index(lake) == "3 of 3 data files from the bronze tail index, 0 read"
        assert plan.data_files_from_index == 3
        if lake.kind == "local":  # S3's mtimes are whole seconds: a date file landed in the
            # second of its merge may be read (it is not known to be older than the merge)
            assert plan.files_read == 1, plan.to_dict()  # the index; the date files are merged
            assert plan.bytes_read == read_tails(lake.storage).size  # type: ignore[union-attr]
        entries = read_tails(lake.storage)
        assert entries is not None
        for sym in SYMBOLS:  # each entry holds the version the listing shows
            assert entries.versions[sym] == lake.storage.stat(layout.data_file(sym)).version  # type: ignore[union-attr]
            start, end = entries.spans[sym]
            assert end - start == keep_rows(lake.settings.resample.intervals)


def test_a_file_written_behind_the_index_is_read(lake: Lake) -> None:
    """A restatement (fetch --history, a split) or any other writer changes the file's version:
    its entry is stale and the file is read — here its older rows changed, so its whole
    history is read and every one of its bars replaced."""
    day = _lake_with_history(lake)
    day = _next_day(lake, day, 20.0)
    restated = rows("INF", list(HISTORY), close=5.5, fetched=_now(day))
    lake.storage.write_parquet(layout.data_file("INF"), restated)
    plan = _resample(lake, day)
    assert _from_index(lake) == "2 of 3 data files from the bronze tail index, 1 read"
    assert plan.data_files_from_index == 2 and plan.full_history == ("INF",)
    day = _next_day(lake, day, 21.0)  # consolidate merged INF again: back in the index
    _resample(lake, day)
    assert _from_index(lake) == "3 of 3 data files from the bronze tail index, 0 read"


def test_an_unreadable_index_is_said_and_every_file_read(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    day = _lake_with_history(lake)
    day = _next_day(lake, day, 20.0)
    lake.storage.write_bytes(layout.BRONZE_TAILS, b"PAR1 not a parquet file")
    with caplog.at_level(logging.WARNING, logger="condvest.state"):
        _resample(lake, day)
    assert _from_index(lake) == "no data file from the bronze tail index"
    assert f"{lake.storage.url(layout.BRONZE_TAILS)} is ignored (not readable" in caplog.text
    day = _next_day(lake, day, 21.0)  # consolidate replaces it
    assert read_tails(lake.storage) is not None
    _resample(lake, day)
    assert _from_index(lake) == "3 of 3 data files from the bronze tail index, 0 read"


def test_resample_far_behind_consolidate_reads_the_files(local_lake: Lake) -> None:
    """Entries keep the longest interval consolidate is configured for + 16 rows: when
    resample last ran more sessions ago than that covers, they do not reach back to the bar
    the first new session falls in, and the files are read (the same bars)."""
    lake = local_lake
    day = _lake_with_history(lake)
    for k in range(keep_rows(lake.settings.resample.intervals)):
        day = _next_day(lake, day, 20.0 + k)
    plan = _resample(lake, day)
    assert all(p.replace_from is not None for p in plan.intervals)  # still the tail path
    assert _from_index(lake) == "no data file from the bronze tail index"
    day = _next_day(lake, day, 40.0)  # caught up: the index serves again
    _resample(lake, day)
    assert _from_index(lake) == "3 of 3 data files from the bronze tail index, 0 read"


def test_consolidate_succeeds_when_the_index_cannot_be_written(
    local_lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """The index is a cache: a failed write is said, the run succeeds, resample reads the files."""
    lake = local_lake
    day = _lake_with_history(lake)
    (lake.storage.local_path(layout.BRONZE_TAILS)).unlink()  # type: ignore[union-attr]
    (lake.storage.local_path(layout.BRONZE_TAILS)).mkdir()  # type: ignore[union-attr]
    day = CAL.next_session(day)  # type: ignore[assignment]
    for sym in SYMBOLS:
        land(lake.storage, sym, day, close=20.0, fetched=_now(day))
    with caplog.at_level(logging.WARNING):
        _consolidate(lake, day)
    assert "the bronze tail index was not updated" in caplog.text
    assert "the next resample reads the 3 data files merged instead" in caplog.text


def test_a_swap_gives_the_version_the_listing_shows(lake: Lake) -> None:
    """What the index trusts: the version a create or replace returns is the one the listing
    then shows for that file (local: inode, mtime and size of the renamed temp file; S3: the
    PUT's ETag), and a swap that did not happen gives none."""
    s, key = lake.storage, layout.data_file("X")

    def listed() -> str | None:
        return {o.key: o.version for o in s.list_objects(layout.symbol_prefix("X"))}[key]

    done, first = s.create_versioned(key, b"one")
    assert done and first is not None and first == listed() == s.stat(key).version  # type: ignore[union-attr]
    assert s.create_versioned(key, b"again") == (False, None)
    done, second = s.replace_versioned(key, b"two!", first)
    assert done and second not in (None, first) and second == listed()
    assert s.replace_versioned(key, b"three", first) == (False, None)  # stale version
    assert s.read_bytes(key) == b"two!"


def test_an_entry_keeps_the_last_rows_and_sums_up_the_rest() -> None:
    from datetime import UTC, timedelta

    from condvest.state.bronze_tails import MAX_KEEP, TailIndexError, decode, tail_entry
    from condvest.storage.base import parquet_bytes

    days = list(HISTORY[:10])
    table = rows("X", days, close=3.0)
    stamps = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i) for i in range(10)]
    table = table.set_column(9, "fetched_at", pa.array(stamps, pa.timestamp("ms", tz="UTC")))
    entry = tail_entry("X", "v1", table, 4)
    assert entry is not None
    assert entry.rows_before == 6
    assert entry.fetched_before == int(stamps[5].timestamp() * 1000)  # the newest of the six
    assert entry.rows.column("date").to_pylist() == days[6:]
    whole = tail_entry("X", "v1", table, 50)
    assert whole is not None and (whole.rows_before, whole.fetched_before) == (0, None)
    assert tail_entry("X", "v1", table.slice(0, 0), 4) is None
    assert keep_rows((3, 5, 34)) == 50 and keep_rows((1000,)) == MAX_KEEP
    with pytest.raises(TailIndexError, match="format"):  # rows without the format's mark
        decode(parquet_bytes(entry.table()))

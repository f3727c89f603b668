"""The read side (issue 16): ``Lake.daily`` equals the data.parquet ``consolidate --mode full``
writes on a copy (pending date files, re-delivered rows, corrections, stale re-deliveries,
legacy files); ``Lake.bars`` equals the silver files; local disk and the S3 server give the same
tables; ``sql`` counts what ``daily`` returns; every bad input is one clear error."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import condvest
from condvest.core import layout
from condvest.core.schema import BRONZE_SCHEMA, SILVER_SCHEMA
from condvest.errors import CorruptFileError, InvalidSymbolError, UsageError
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.settings import ConsolidateMode
from conftest import Lake, at, make_local_lake, make_s3_lake, moto_copy_prefix
from resample_helpers import bronze_row, read_silver, table_of, write_data, write_date

NOW = at("2026-01-20T23:00:00")
DAYS = [date(2026, 1, d) for d in (5, 6, 7, 8, 9, 12, 13, 14, 15, 16)]
MS = 1_767_000_000_000  # a fetch time (ms) in late 2025
COUNT_BY_SYMBOL = "SELECT symbol, count(*) n FROM daily GROUP BY 1 ORDER BY 1"


def open_read(lake: Lake) -> condvest.Lake:
    return condvest.Lake(lake.context(now=NOW))


def legacy_history(symbol: str, days: list[date]) -> pa.Table:
    """The original system's shape: naive timestamp, decimals, integer volume, no fetched_at."""
    n = len(days)
    return pa.table(
        {
            "symbol": [symbol] * n,
            "timestamp": pa.array(
                [datetime(d.year, d.month, d.day) for d in days], pa.timestamp("ms")
            ),
            "interval": ["1d"] * n,
            "open": pa.array([Decimal("10.25")] * n, pa.decimal128(10, 2)),
            "high": pa.array([Decimal("12.00")] * n, pa.decimal128(10, 2)),
            "low": pa.array([Decimal("9.75")] * n, pa.decimal128(10, 2)),
            "close": pa.array([Decimal("11.00")] * n, pa.decimal128(10, 2)),
            "volume": list(range(100, 100 + n)),
        }
    )


def build_mixed(lake: Lake) -> None:
    """Every case at once: consolidated history, pending sessions, a re-delivered row, a
    correction (newer fetch), a stale re-delivery (older fetch: loses), a tie (landed wins), a
    symbol with only date files, a legacy history, and a quarantined row."""
    s = lake.storage
    write_data(
        s, "AAA", [bronze_row("AAA", d, 10.0 + i, fetched_ms=MS) for i, d in enumerate(DAYS[:6])]
    )
    write_date(s, bronze_row("AAA", DAYS[2], 12.0, fetched_ms=MS))  # re-delivered, identical
    write_date(s, bronze_row("AAA", DAYS[3], 99.0, fetched_ms=MS + 5))  # correction
    write_date(s, bronze_row("AAA", DAYS[4], 55.0, fetched_ms=MS - 5))  # stale: history wins
    write_date(s, bronze_row("AAA", DAYS[5], 77.0, fetched_ms=MS))  # tie: the landed file wins
    for d in DAYS[6:]:
        write_date(s, bronze_row("AAA", d, 20.0, fetched_ms=MS + 10))  # pending sessions
    for d in DAYS[:3]:
        write_date(s, bronze_row("BBB", d, 5.0, fetched_ms=MS))  # never consolidated
    s.write_parquet(layout.data_file("OLD"), legacy_history("OLD", DAYS[:4]))
    write_date(s, bronze_row("OLD", DAYS[1], 30.0, fetched_ms=MS))  # any real fetch beats legacy
    s.write_parquet(
        layout.quarantine_file(DAYS[7], "run1"), table_of([bronze_row("QQQ", DAYS[7], 1.0)])
    )


def consolidated_copy(lake: Lake, tmp_path: Path) -> pa.Table:
    """What ``consolidate --mode full`` writes, on a copy of ``lake``: every data.parquet."""
    if lake.kind == "local":
        target = make_local_lake(tmp_path / "copy")
        Path(lake.uri).mkdir(parents=True, exist_ok=True)
        shutil.copytree(lake.uri, target.uri)
    else:
        assert lake.endpoint_url is not None
        bucket = lake.uri.removeprefix("s3://").split("/", 1)[0]
        moto_copy_prefix(bucket, "lake/", "copy/")
        target = make_s3_lake(lake.endpoint_url, bucket, "copy")
    ctx = target.context(now=NOW)
    options = ConsolidateOptions(
        mode=ConsolidateMode.FULL, retention_days=100_000, skip_cleanup=True
    )
    result = run_consolidate(ctx, plan_consolidate(ctx, options))
    assert result.ok, result.failures
    keys = sorted(
        o.key
        for o in target.storage.list_objects(layout.BRONZE_OHLCV + "/")
        if o.key.endswith("/" + layout.DATA_FILE)
    )
    tables = [target.storage.read_parquet(k).cast(BRONZE_SCHEMA) for k in keys]
    return pa.concat_tables(tables) if tables else BRONZE_SCHEMA.empty_table()


def test_daily_equals_a_full_consolidation_of_a_copy(lake: Lake, tmp_path: Path) -> None:
    build_mixed(lake)
    got = open_read(lake).daily()
    assert got.schema.equals(BRONZE_SCHEMA)
    assert got.equals(consolidated_copy(lake, tmp_path))
    closes = {(r["symbol"], r["date"]): r["close"] for r in got.to_pylist()}
    assert closes[("AAA", DAYS[2])] == 12.0 and closes[("AAA", DAYS[3])] == 99.0
    assert closes[("AAA", DAYS[4])] == 14.0 and closes[("AAA", DAYS[5])] == 77.0
    assert closes[("OLD", DAYS[1])] == 30.0 and closes[("OLD", DAYS[0])] == 11.0
    assert ("QQQ", DAYS[7]) not in closes  # quarantine never appears
    keys = list(zip(got.column("symbol").to_pylist(), got.column("date").to_pylist(), strict=True))
    assert keys == sorted(set(keys))  # one row per (symbol, date), sorted


def test_local_and_s3_give_identical_tables(local_lake: Lake, s3_lake: Lake) -> None:
    tables = []
    for lake in (local_lake, s3_lake):
        build_mixed(lake)
        reader = open_read(lake)
        assert reader.context.storage.local_path("") is not None or lake.kind == "s3"
        tables.append(
            (
                reader.daily(),
                reader.daily(
                    "AAA,OLD", start=DAYS[2], end=DAYS[7], columns=["date", "close", "symbol"]
                ),
                reader.sql(COUNT_BY_SYMBOL).to_arrow_table(),
            )
        )
    for a, b in zip(*tables, strict=True):
        assert a.equals(b)


def test_filters_and_columns_match_the_full_read(lake: Lake) -> None:
    build_mixed(lake)
    reader = open_read(lake)
    full = reader.daily()
    part = reader.daily(["OLD", "AAA", "NOPE"], start=DAYS[3], end=DAYS[8], columns="close,date")
    day = full.column("date")
    keep = pc.and_(
        pc.is_in(full.column("symbol"), pa.array(["AAA", "OLD"])),
        pc.and_(pc.greater_equal(day, DAYS[3]), pc.less_equal(day, DAYS[8])),
    )
    assert part.equals(full.filter(keep).select(["close", "date"]))
    assert reader.daily("NOPE").num_rows == 0  # a symbol the lake lacks: no rows, no error
    assert reader.sql("select count(*) from daily").fetchall() == [(full.num_rows,)]


def test_only_the_requested_symbols_and_dates_are_read(lake: Lake) -> None:
    """A corrupt file outside the request is never opened: the listing is per symbol and date
    files outside [start, end] are skipped by name; inside the request it is an error naming it."""
    build_mixed(lake)
    bad = layout.date_file("BBB", DAYS[0])
    lake.storage.write_bytes(bad, b"not parquet")
    reader = open_read(lake)
    assert reader.daily("AAA").num_rows == len(DAYS)
    assert reader.daily("BBB", start=DAYS[1]).num_rows == 2
    with pytest.raises(CorruptFileError, match=r"date=2026-01-05\.parquet"):
        reader.daily("BBB")
    with pytest.raises(CorruptFileError, match="BBB"):
        reader.daily()


def test_pandas_round_trip(local_lake: Lake) -> None:
    build_mixed(local_lake)
    table = open_read(local_lake).daily()
    frame = table.to_pandas()
    assert len(frame) == table.num_rows and list(frame.columns) == BRONZE_SCHEMA.names
    back = pa.Table.from_pandas(frame, preserve_index=False).cast(BRONZE_SCHEMA)
    assert back.equals(table)


def test_polars_round_trip(local_lake: Lake) -> None:
    polars = pytest.importorskip("polars")
    build_mixed(local_lake)
    table = open_read(local_lake).daily()
    assert polars.from_arrow(table).to_arrow().cast(BRONZE_SCHEMA).equals(table)


# -- bars --------------------------------------------------------------------------------------
def resampled(lake: Lake, *intervals: int) -> condvest.Lake:
    s = lake.storage
    for symbol in ("AAA", "BBB"):
        write_data(
            s,
            symbol,
            [bronze_row(symbol, d, 10.0 + i, fetched_ms=MS) for i, d in enumerate(DAYS[:7])],
        )
        for d in DAYS[7:]:
            write_date(s, bronze_row(symbol, d, 30.0, fetched_ms=MS + 1))
    reader = open_read(lake)
    result = reader.resample(intervals=intervals)
    assert result.ok
    return reader


def test_bars_equal_the_silver_files(lake: Lake) -> None:
    reader = resampled(lake, 3, 5)
    for n in (3, 5):
        silver = read_silver(lake.storage, n).cast(SILVER_SCHEMA)
        silver = silver.sort_by([("symbol", "ascending"), ("start_date", "ascending")])
        got = reader.bars(n)
        assert got.schema.equals(SILVER_SCHEMA) and got.num_rows > 0
        assert got.equals(silver)
        one = reader.bars(n, symbols="BBB", start=DAYS[3], end=DAYS[9])
        starts = silver.column("start_date")
        keep = pc.and_(
            pc.equal(silver.column("symbol"), "BBB"),
            pc.and_(pc.greater_equal(starts, DAYS[3]), pc.less_equal(starts, DAYS[9])),
        )
        assert one.equals(silver.filter(keep))
        assert reader.sql(f"select count(*) from bars_{n}d").fetchall() == [(silver.num_rows,)]


def test_include_partial_adds_the_trailing_bar_resample_would_write(lake: Lake) -> None:
    reader = resampled(lake, 3)
    with_partial = reader.bars(3, include_partial=True)
    complete = reader.bars(3)
    extra = with_partial.filter(pc.invert(with_partial.column("complete")))
    assert with_partial.num_rows == complete.num_rows + extra.num_rows
    # resample --include-partial computes the same trailing bars (same bar code)
    built = reader.resample(intervals=(3,), include_partial=True, full=True)
    assert built.ok
    silver = read_silver(lake.storage, 3).cast(SILVER_SCHEMA)
    assert (
        silver.filter(pc.invert(silver.column("complete")))
        .sort_by([("symbol", "ascending"), ("start_date", "ascending")])
        .equals(extra)
    )


def test_bars_read_only_the_months_asked_for(local_lake: Lake) -> None:
    reader = resampled(local_lake, 3)
    month = layout.silver_file(3, 2025, 12)  # a month outside the request, corrupt
    local_lake.storage.write_bytes(month, b"garbage")
    assert reader.bars(3, start="2026-01-01").num_rows > 0
    with pytest.raises(CorruptFileError, match="data_3d_202512"):
        reader.bars(3)


# -- bad input ---------------------------------------------------------------------------------
def test_each_bad_input_is_one_clear_error(local_lake: Lake) -> None:
    reader = resampled(local_lake, 3)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: reader.daily("../etc"), InvalidSymbolError, "not a valid ticker"),
        (lambda: reader.daily(start="2026-01-09", end="2026-01-05"), UsageError, "is after --end"),
        (lambda: reader.daily(start="1950-01-01"), UsageError, "before 1962-01-02"),
        (lambda: reader.daily(columns="close,nope"), UsageError, "unknown column.*nope"),
        (lambda: reader.bars(7), UsageError, "condvest resample --intervals 7"),
        (lambda: reader.bars(0), UsageError, "--interval 0"),
        (lambda: reader.sql("COPY daily TO 'x.csv'"), UsageError, "COPY statements are refused"),
        (lambda: reader.sql("ATTACH 'x.db'"), UsageError, "ATTACH statements are refused"),
        (lambda: reader.sql("INSTALL httpfs"), UsageError, "refused"),
        (lambda: reader.sql("SELECT nope FROM daily"), UsageError, "SQL error: Binder Error"),
        (
            lambda: reader.sql("SELECT * FROM read_parquet('lake/**/*.parquet')"),
            UsageError,
            "SQL error",
        ),
    ]
    for call, kind, pattern in cases:
        with pytest.raises(kind, match=pattern) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_symbols_sessions_metadata_and_splits(local_lake: Lake) -> None:
    build_mixed(local_lake)
    reader = open_read(local_lake)
    assert reader.symbols() == ["AAA", "BBB", "OLD"]
    assert reader.sessions("2026-01-05", "2026-01-09") == DAYS[:5]
    assert reader.sessions("2026-01-15")[-1] == date(2026, 1, 20)
    assert reader.metadata().num_rows == 0 and reader.splits().num_rows == 0
    older = pa.table({"symbol": ["AAA", "BBB"], "name": ["Old A", "Old B"]})
    newer = pa.table({"symbol": ["AAA"], "name": ["New A"], "active": [True]})
    local_lake.storage.write_parquet(layout.meta_snapshot(DAYS[0], "r1"), older)
    local_lake.storage.write_parquet(layout.meta_snapshot(DAYS[1], "r2"), newer)
    meta = reader.metadata()
    assert meta.column("symbol").to_pylist() == ["AAA", "BBB"]
    assert meta.column("name").to_pylist() == ["New A", "Old B"]
    assert reader.sql("select name from metadata where symbol = 'AAA'").fetchall() == [("New A",)]


# -- property ----------------------------------------------------------------------------------
_row = st.tuples(st.sampled_from(DAYS), st.integers(0, 3), st.floats(1, 100, width=32))
_symbol_case = st.tuples(
    st.lists(_row, max_size=8),  # history rows (later duplicates of a day dropped)
    st.lists(_row, max_size=6),  # landed date files (one per day)
    st.booleans(),  # legacy-shaped history
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(["AAA", "BBB", "INF"]), _symbol_case, max_size=3), st.data())
def test_property_daily_equals_full_consolidate(
    tmp_path_factory: pytest.TempPathFactory, case: dict[str, Any], data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("prop")
    lake = make_local_lake(root / "lake")
    for symbol, (hist, landed, legacy) in case.items():
        days = {d: (f, c) for d, f, c in hist}
        if days and legacy:
            lake.storage.write_parquet(
                layout.data_file(symbol), legacy_history(symbol, sorted(days))
            )
        elif days:
            write_data(
                lake.storage,
                symbol,
                [bronze_row(symbol, d, c, fetched_ms=MS + f) for d, (f, c) in days.items()],
            )
        for d, (f, c) in {d: (f, c) for d, f, c in landed}.items():
            write_date(lake.storage, bronze_row(symbol, d, c, fetched_ms=MS + f))
    reader = open_read(lake)
    got = reader.daily()
    assert got.equals(consolidated_copy(lake, root))
    start = data.draw(st.sampled_from(DAYS))
    end = data.draw(st.sampled_from([d for d in DAYS if d >= start]))
    day = got.column("date")
    within = pc.and_(pc.greater_equal(day, start), pc.less_equal(day, end))
    assert reader.daily(start=start, end=end).equals(got.filter(within))


def test_a_date_file_of_another_schema_is_normalised_not_cast(
    local_lake: Lake, tmp_path: Path
) -> None:
    """The local bulk scan (DuckDB) takes only files whose footer is canonical: DuckDB would
    cast this file's UTC-timestamp ``date`` to the first file's DATE (its UTC day), where
    normalise_bronze, as consolidate, takes the New York day: the session before."""
    s = local_lake.storage
    write_data(s, "AAA", [bronze_row("AAA", d, 10.0, fetched_ms=MS) for d in DAYS[:3]])
    evening = datetime(DAYS[4].year, DAYS[4].month, DAYS[4].day, 2, tzinfo=UTC)  # NY: day 3
    odd = table_of([bronze_row("AAA", DAYS[4], 40.0, fetched_ms=MS)])
    odd = odd.set_column(1, "date", pa.array([evening], pa.timestamp("ms", tz="UTC")))
    s.write_parquet(layout.date_file("AAA", DAYS[3]), odd)
    got = open_read(local_lake).daily()
    assert got.equals(consolidated_copy(local_lake, tmp_path))
    assert got.column("date").to_pylist() == DAYS[:4]


def test_a_vacuumed_date_file_makes_the_symbol_be_read_again(
    local_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A date file deleted between the listing and its read (consolidated, then vacuumed)."""
    from condvest.jobs.read import tables as read_module

    build_mixed(local_lake)
    reader = open_read(local_lake)
    expected = reader.daily("BBB")
    write_data(local_lake.storage, "BBB", expected.to_pylist())  # consolidated meanwhile
    original = read_module.read_file
    gone = layout.date_file("BBB", DAYS[0])

    def vacuum_then_read(storage: Any, key: str, start: Any, end: Any) -> pa.Table:
        if key == gone and storage.exists(gone):
            storage.delete(gone)
        return original(storage, key, start, end)

    monkeypatch.setattr(read_module, "read_file", vacuum_then_read)
    assert reader.daily("BBB").equals(expected)


# -- docs and CLI ------------------------------------------------------------------------------
READING = Path(__file__).resolve().parents[1] / "docs" / "reading.md"


def test_every_python_example_in_reading_md_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reading.md's blocks run in order in one namespace, offline, in an empty directory."""
    import re

    blocks = re.findall(r"^```python\n(.*?)^```", READING.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "reading_examples"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{READING.name} python block {number}", "exec"), namespace)


def cli(lake: Lake, *args: str, cwd: Path) -> Any:
    import cli_proc
    from test_cli import cli_env

    return cli_proc.run([*args, *lake.cli_args()], env=cli_env(lake.env()), cwd=cwd)


def test_cli_read_and_sql(local_lake: Lake, tmp_path: Path) -> None:
    import json

    resampled(local_lake, 3)
    daily = open_read(local_lake).daily()
    out = cli(local_lake, "read", "daily", "-f", "ndjson", "--columns", "symbol,date", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[0] == {"symbol": "AAA", "date": DAYS[0].isoformat()}
    assert len(lines) == daily.num_rows
    out = cli(local_lake, "read", "daily", "--symbols", "AAA,ZZZ", "-f", "csv", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "no rows for: ZZZ\n"
    assert out.stdout.splitlines()[0].startswith('"symbol","date"')
    assert len(out.stdout.splitlines()) == 1 + len(DAYS)
    out = cli(local_lake, "read", "bars", "--interval", "3", cwd=tmp_path)
    assert out.returncode == 0 and f"{open_read(local_lake).bars(3).num_rows} rows" in out.stdout
    target = tmp_path / "bars.parquet"
    out = cli(
        local_lake,
        "read",
        "bars",
        "--interval",
        "3",
        "-f",
        "parquet",
        "--out",
        str(target),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert pa.parquet.read_table(target).equals(open_read(local_lake).bars(3))  # type: ignore[attr-defined]
    out = cli(local_lake, "-o", "json", "sql", "SELECT count(*) AS n FROM daily", cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout) == [{"n": daily.num_rows}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("read", "daily", "--symbols", "../x"), "not a valid ticker"),
        (("read", "daily", "--start", "2026-01-09", "--end", "2026-01-05"), "is after --end"),
        (("read", "daily", "--start", "1950-01-01"), "before 1962-01-02"),
        (("read", "daily", "--columns", "nope"), "unknown column(s) nope"),
        (("read", "daily", "-f", "parquet"), "--format parquet needs --out"),
        (("read", "daily", "-f", "csv", "--out", "exists.csv"), "exists (pass --force"),
        (("read", "bars", "--interval", "7"), "condvest resample --intervals 7"),
        (("read", "bars"), "needs --interval"),
        (("sql", "SELECT nope FROM daily"), "SQL error: Binder Error"),
        (("sql", "COPY daily TO 'x.csv'"), "COPY statements are refused"),
        (("sql", "ATTACH 'x.db'"), "ATTACH statements are refused"),
        (("sql", "INSTALL httpfs"), "refused"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    local_lake: Lake, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    from test_cli import one_error_line

    build_mixed(local_lake)
    (tmp_path / "exists.csv").write_text("keep me")
    out = cli(local_lake, *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in one_error_line(out)
    assert out.stdout == ""
    assert (tmp_path / "exists.csv").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.csv", "lake"]

"""A session is complete only when it really landed (issue 13 items 1–3).

Each case serves a hostile answer from the real HTTP stand-in, shows the run fails loudly (exit
1, the session missing in ``status`` with the reason, the watermark below it), and then, once
the answer is good, that the next run lands it and the lake equals a fault-free run's."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pytest

from condvest.core import layout
from condvest.jobs.bronze import read_file
from condvest.jobs.fetch import FetchOptions, FetchResult, plan_fetch, run_fetch
from condvest.jobs.status.job import run_status
from condvest.state.fetchlog import landed_sessions, read_session, read_watermark
from conftest import Lake, at, make_local_lake, polygon_overrides
from polygon_server import FakePolygon, Scripted, agg, ms

MON, TUE, WED, THU, FRI = (date(2025, 3, d) for d in range(10, 15))
WEEK = [MON, TUE, WED, THU, FRI]
NOW = at("2025-03-14T22:00:00Z")
SYMBOLS = [f"S{i:02d}" for i in range(10)]


def fetch(lake: Lake, polygon: FakePolygon, now: datetime = NOW, **opts: Any) -> FetchResult:
    settings = opts.pop("settings", {})
    overrides = polygon_overrides(polygon.url)
    for section, values in settings.items():
        overrides.setdefault(section, {}).update(values)
    ctx = lake.context(now=now, **overrides)
    return run_fetch(ctx, plan_fetch(ctx, FetchOptions(**opts)))


def status(lake: Lake, now: datetime = NOW) -> Any:
    return run_status(lake.context(now=now))


def serve_good(polygon: FakePolygon, days: list[date]) -> None:
    for d in days:
        polygon.grouped[d] = [agg(s, d, 10.0 + i) for i, s in enumerate(SYMBOLS)]


def bronze_rows(lake: Lake) -> list[tuple[str, date, float]]:
    """Every (symbol, date, close) in the lake's date files, sorted."""
    out = []
    for obj in lake.storage.list_objects(layout.BRONZE_OHLCV + "/"):
        if layout.parse_date_file(obj.key) is None:
            continue
        for row in read_file(lake.storage, obj.key).to_pylist():
            out.append((row["symbol"], row["date"], row["close"]))
    return sorted(out)


def fault_free(tmp_path: Any, days: list[date]) -> list[tuple[str, date, float]]:
    """The lake a run with only good answers leaves."""
    clean = make_local_lake(tmp_path / "clean")
    server = FakePolygon().start()
    try:
        serve_good(server, days)
        assert fetch(clean, server, start=days[0]).ok
    finally:
        server.stop()
    return bronze_rows(clean)


def seconds_not_ms(day: date) -> list[dict[str, Any]]:
    return [agg(s, day, 10.0 + i, t=ms(day) // 1000) for i, s in enumerate(SYMBOLS)]


def renamed_ticker(day: date) -> list[dict[str, Any]]:
    rows = []
    for i, s in enumerate(SYMBOLS):
        row = agg(s, day, 10.0 + i)
        row["ticker"] = row.pop("T")
        rows.append(row)
    return rows


@pytest.mark.parametrize("bad", [seconds_not_ms, renamed_ticker], ids=["t-in-seconds", "no-T"])
def test_session_with_every_row_rejected_is_failed_not_landed(
    lake: Lake, polygon: FakePolygon, tmp_path: Any, bad: Any
) -> None:
    serve_good(polygon, WEEK[:3])
    polygon.grouped[THU] = bad(THU)
    serve_good(polygon, [FRI])
    result = fetch(lake, polygon, start=MON)
    # The bad session fails, the others land (sessions are independent), exit 1.
    assert not result.ok and result.exit_code == 1
    assert THU.isoformat() in result.failed
    assert "0 of 10 row(s) accepted" in result.failed[THU.isoformat()]
    assert result.sessions == [MON, TUE, WED, FRI]
    assert THU not in landed_sessions(lake.storage) and read_session(lake.storage, THU) is None
    assert read_watermark(lake.storage) == WED  # the contiguous frontier: never past THU
    assert not [r for r in bronze_rows(lake) if r[1] == THU]  # nothing of it written
    # status names it, with the reason, and --check fails.
    health = status(lake)
    assert not health.healthy and health.missing_sessions["sessions"] == [THU.isoformat()]
    assert "accepted" in health.missing_sessions["reasons"][THU.isoformat()]
    assert any(THU.isoformat() in p and "accepted" in p for p in health.problems)
    # The next run asks for THU only; once the answer is good the lake equals a clean run's.
    serve_good(polygon, [THU])
    again = fetch(lake, polygon)
    assert again.ok and again.sessions == [THU]
    assert read_watermark(lake.storage) == FRI
    assert bronze_rows(lake) == fault_free(tmp_path, WEEK)
    healed = status(lake)
    assert healed.missing_sessions["count"] == 0 and not healed.missing_sessions["reasons"]


def test_session_far_below_the_recent_median_fails(lake: Lake, polygon: FakePolygon) -> None:
    serve_good(polygon, WEEK[:4])
    polygon.grouped[FRI] = [agg(s, FRI) for s in SYMBOLS[:3]]  # 3 rows against a median of 10
    assert fetch(lake, polygon, now=at("2025-03-13T22:00:00Z"), start=MON).ok
    result = fetch(lake, polygon)
    assert not result.ok and result.exit_code == 1
    error = result.failed[FRI.isoformat()]
    assert "3 of 3 row(s) accepted" in error and "median 10" in error
    assert "min_session_fraction" in error
    assert read_session(lake.storage, FRI) is None and read_watermark(lake.storage) == THU
    assert not lake.storage.exists(layout.date_file("S00", FRI))
    # The check is a setting: 0 accepts any non-empty session.
    relaxed = fetch(lake, polygon, settings={"fetch": {"min_session_fraction": 0}})
    assert relaxed.ok and relaxed.rows == 3 and read_watermark(lake.storage) == FRI


def test_empty_session_stays_missing_and_is_retried(lake: Lake, polygon: FakePolygon) -> None:
    serve_good(polygon, WEEK[:4])  # FRI not published yet
    result = fetch(lake, polygon, start=MON)
    assert not result.ok and result.empty_sessions == [FRI]
    assert read_watermark(lake.storage) == THU and read_session(lake.storage, FRI) is None
    health = status(lake)
    assert not health.healthy and health.missing_sessions["sessions"] == [FRI.isoformat()]
    assert "no rows" in health.missing_sessions["reasons"][FRI.isoformat()]
    # Each later run asks again (no --force), and lands it once published.
    assert not fetch(lake, polygon).ok
    serve_good(polygon, [FRI])
    landed = fetch(lake, polygon)
    assert landed.ok and landed.sessions == [FRI] and read_watermark(lake.storage) == FRI
    assert len(polygon.requests_to(f"/v2/aggs/grouped/locale/us/market/stocks/{FRI}")) == 3
    assert status(lake).healthy


def test_a_closure_in_the_override_file_is_not_missing(
    lake: Lake, polygon: FakePolygon, tmp_path: Any
) -> None:
    serve_good(polygon, WEEK[:4])
    assert not fetch(lake, polygon, start=MON).ok  # FRI empty
    closures = tmp_path / "closures.txt"
    closures.write_text(f"{FRI}\n")
    settings = {"calendar": {"closures_file": str(closures), "cache_dir": ""}}
    ctx = lake.context(now=NOW, **polygon_overrides(polygon.url), **settings)
    assert run_status(ctx).missing_sessions["count"] == 0
    assert run_fetch(ctx, plan_fetch(ctx, FetchOptions())).sessions_planned == 0


def test_run_waits_for_a_session_not_yet_published(
    lake: Lake, polygon: FakePolygon, tmp_path: Any
) -> None:
    serve_good(polygon, WEEK)
    empty = json.dumps({"status": "OK", "queryCount": 0, "resultsCount": 0, "results": []})
    grouped = f"/v2/aggs/grouped/locale/us/market/stocks/{FRI}"
    polygon.fail(grouped, Scripted(body=empty), Scripted(body=empty))
    settings = {"fetch": {"unpublished_wait_s": 5, "unpublished_retry_s": 0.1}}
    result = fetch(lake, polygon, start=MON, settings=settings)
    assert result.ok and result.sessions == WEEK and not result.empty_sessions
    assert len(polygon.requests_to(grouped)) == 3
    # Without a wait budget the same answer is an empty session, left for the next run.
    other = make_local_lake(tmp_path / "other")
    polygon.fail(grouped, Scripted(body=empty))
    assert fetch(other, polygon, start=MON).empty_sessions == [FRI]


def split_week(polygon: FakePolygon) -> None:
    """NVDA 2-for-1 on FRI; the history the vendor serves after it is on the new scale."""
    for d in WEEK[:-1]:
        polygon.grouped[d] = [agg("NVDA", d, 200.0), agg("AAPL", d, 50.0)]
    polygon.grouped[FRI] = [agg("NVDA", FRI, 101.0), agg("AAPL", FRI, 50.0)]
    polygon.ranges["NVDA"] = [agg(None, d, 100.0) for d in WEEK[:-1]] + [agg(None, FRI, 101.0)]


REAL_SPLIT = {"execution_date": str(FRI), "split_from": 1, "split_to": 2, "ticker": "NVDA"}


@pytest.mark.parametrize(
    "bad",
    [
        {"execution_date": str(FRI), "split_from": 0, "split_to": 2, "ticker": "ZERO"},
        {"execution_date": str(FRI), "split_from": 1, "split_to": -3, "ticker": "NEG"},
        {"execution_date": str(FRI), "split_from": "1", "split_to": 2, "ticker": "TEXT"},
        {"execution_date": str(FRI), "split_from": 1, "split_to": 2, "ticker": "../x"},
    ],
    ids=["split_from-0", "negative", "text", "bad-symbol"],
)
def test_bad_split_row_is_quarantined_and_the_real_split_applied(
    lake: Lake, polygon: FakePolygon, bad: Any
) -> None:
    split_week(polygon)
    assert fetch(lake, polygon, now=at("2025-03-13T23:00:00Z"), start=MON).ok
    polygon.splits = [bad, REAL_SPLIT]
    result = fetch(lake, polygon)
    assert not result.failed and result.restated == ["NVDA"] and result.splits == 1
    data = read_file(lake.storage, layout.data_file("NVDA"))
    assert data.column("close").to_pylist() == [100.0] * 4 + [101.0]
    assert read_watermark(lake.storage) == FRI
    quarantine = lake.storage.read_parquet(layout.quarantine_file(FRI, f"{result.run_id}-splits"))
    reasons = [r["reason"] for r in quarantine.to_pylist()]
    assert len(reasons) == 1 and reasons[0].startswith("split: ")
    assert any("split row(s) quarantined" in m for m in result.messages)
    kept = lake.storage.read_parquet(layout.corporate_actions_file("splits", FRI)).to_pylist()
    assert [s["symbol"] for s in kept] == ["NVDA"]


def test_failed_split_check_is_retried_not_skipped(lake: Lake, polygon: FakePolygon) -> None:
    split_week(polygon)
    assert fetch(lake, polygon, now=at("2025-03-13T23:00:00Z"), start=MON).ok
    polygon.splits = [REAL_SPLIT]
    polygon.fail("/v3/reference/splits", *[Scripted(status=500)] * 4)  # every retry fails
    result = fetch(lake, polygon)
    assert not result.ok and "splits" in result.failed
    assert read_session(lake.storage, FRI) is None and read_watermark(lake.storage) == THU
    health = status(lake)
    assert "split check" in health.missing_sessions["reasons"][FRI.isoformat()]
    # The next run lands FRI again, asks for its splits, and restates NVDA.
    again = fetch(lake, polygon)
    assert again.ok and again.sessions == [FRI] and again.restated == ["NVDA"]
    data = read_file(lake.storage, layout.data_file("NVDA"))
    assert data.column("close").to_pylist() == [100.0] * 4 + [101.0]
    assert read_watermark(lake.storage) == FRI and status(lake).healthy


def test_failed_restatement_keeps_its_session_open(lake: Lake, polygon: FakePolygon) -> None:
    split_week(polygon)
    assert fetch(lake, polygon, now=at("2025-03-13T23:00:00Z"), start=MON).ok
    polygon.splits = [REAL_SPLIT]
    polygon.fail("/v2/aggs/ticker/NVDA/", *[Scripted(status=500)] * 4)
    result = fetch(lake, polygon)
    assert not result.ok and "restate NVDA" in result.failed
    assert read_session(lake.storage, FRI) is None and read_watermark(lake.storage) == THU
    reason = status(lake).missing_sessions["reasons"][FRI.isoformat()]
    assert "restating NVDA failed" in reason
    again = fetch(lake, polygon)
    assert again.ok and again.restated == ["NVDA"] and read_watermark(lake.storage) == FRI
    closes = read_file(lake.storage, layout.data_file("NVDA")).column("close").to_pylist()
    assert closes == [100.0] * 4 + [101.0]


def test_split_batch_never_divides_by_zero() -> None:
    from condvest.sources.base import split_batch

    answer = split_batch(
        [
            {"execution_date": "2025-03-14", "split_from": 0, "split_to": 2, "ticker": "A"},
            {"execution_date": "2025-03-14", "split_from": 1e300, "split_to": 2, "ticker": "B"},
            {"execution_date": "2025-03-14", "split_from": float("nan"), "split_to": 2},
            {"execution_date": "2025-03-14", "split_from": True, "split_to": 2, "ticker": "C"},
            {"execution_date": "someday", "split_from": 1, "split_to": 2, "ticker": "D"},
            "not an object",
            {"execution_date": "2025-03-14", "split_from": 2, "split_to": 3, "ticker": "OK"},
        ],
        source="polygon",
    )
    assert [s.symbol for s in answer.splits] == ["OK"] and answer.splits[0].ratio == 1.5
    assert answer.rejected.num_rows == 6
    assert isinstance(answer.rejected, pa.Table)


def test_empty_entry_of_an_older_version_is_a_problem_until_refetched(
    lake: Lake, polygon: FakePolygon
) -> None:
    from condvest.state.fetchlog import SessionEntry, record_session

    serve_good(polygon, WEEK[:4])
    assert fetch(lake, polygon, now=at("2025-03-13T22:00:00Z"), start=MON).ok
    # What versions before this one wrote for an unpublished session, with the watermark past it.
    old = SessionEntry(FRI, "empty", 0, "old-run", "2025-03-14T22:00:00+00:00", "polygon")
    record_session(lake.storage, old)
    from condvest.state.fetchlog import advance_watermark

    advance_watermark(lake.storage, FRI, run_id="old-run")
    health = status(lake)
    problem = [p for p in health.problems if "recorded as empty" in p]
    assert problem and "condvest fetch --date 2025-03-14 --force" in problem[0]
    serve_good(polygon, [FRI])
    assert fetch(lake, polygon, day=FRI, force=True).ok
    assert status(lake).healthy

"""The XNYS calendar: known closures and early closes, the fixed origin, "latest completed
session" whatever the host's time zone, the closures override file, and user dates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from condvest.core import calendar as calendar_module
from condvest.core.calendar import (
    ORIGIN,
    TradingCalendar,
    get_calendar,
    parse_date,
    read_closures_file,
)
from condvest.errors import ConfigError, UsageError
from condvest.jobs.base import JobContext
from condvest.settings import load_settings

NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return get_calendar()


def d(text: str) -> date:
    return date.fromisoformat(text)


def ny(text: str) -> datetime:
    """A New York wall-clock time as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=NY)


# -- known facts ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "closed",
    [
        "1968-04-09",  # Martin Luther King Jr.'s funeral
        "1968-06-12",  # paperwork crisis: Wednesdays closed in 1968
        "1969-07-21",  # Apollo 11 moon landing
        "2001-09-11",
        "2001-09-12",
        "2001-09-13",
        "2001-09-14",
        "2012-10-29",  # Hurricane Sandy
        "2012-10-30",
        "2018-12-05",  # President G. H. W. Bush's funeral
        "2022-06-20",  # Juneteenth (observed), the first year the NYSE closed for it
        "2023-06-19",
        "2025-01-09",  # President Carter's funeral
        "2026-11-26",  # Thanksgiving
        "1962-01-01",
    ],
)
def test_known_closures(cal: TradingCalendar, closed: str) -> None:
    assert not cal.is_session(d(closed))


@pytest.mark.parametrize(
    "open_day", ["1962-01-02", "2001-09-10", "2001-09-17", "2012-10-31", "2021-06-18", "2026-11-27"]
)
def test_known_sessions(cal: TradingCalendar, open_day: str) -> None:
    assert cal.is_session(d(open_day))


def test_juneteenth_closed_from_2022_only(cal: TradingCalendar) -> None:
    assert cal.is_session(d("2021-06-18"))  # the federal holiday's observed day in 2021: open
    assert cal.is_session(d("2020-06-19"))
    assert not cal.is_session(d("2022-06-20"))
    assert not cal.is_session(d("2023-06-19"))
    assert not cal.is_session(d("2024-06-19"))


def test_closes_regular_and_early(cal: TradingCalendar) -> None:
    assert cal.session_close(d("2026-11-25")) == ny("2026-11-25T16:00")
    assert cal.session_close(d("2026-11-27")) == ny("2026-11-27T13:00")  # day after Thanksgiving
    assert cal.session_close(d("2026-11-27")) == datetime(2026, 11, 27, 18, tzinfo=UTC)
    assert cal.session_close(d("2025-07-03")) == ny("2025-07-03T13:00")
    assert cal.session_close(d("2026-07-06")).tzinfo is not None


def test_origin_and_index(cal: TradingCalendar) -> None:
    assert d("1962-01-02") == ORIGIN
    assert cal.first_session == ORIGIN
    assert cal.session_at(0) == ORIGIN
    assert cal.session_index(ORIGIN) == 0
    assert cal.session_at(1) == d("1962-01-03")
    # 2001-09-10 and 2001-09-17 are consecutive sessions.
    assert cal.session_index(d("2001-09-17")) == cal.session_index(d("2001-09-10")) + 1


def test_index_round_trip(cal: TradingCalendar) -> None:
    sessions = cal.all_sessions()
    assert len(sessions) > 16_000
    assert list(sessions) == sorted(set(sessions))
    for i in range(0, len(sessions), 7):
        assert cal.session_index(cal.session_at(i)) == i
    for day in sessions[::13]:
        assert cal.session_at(cal.session_index(day)) == day


def test_index_errors(cal: TradingCalendar) -> None:
    with pytest.raises(UsageError, match=r"^2026-11-26 is not a XNYS trading session$"):
        cal.session_index(d("2026-11-26"))
    with pytest.raises(UsageError, match="before 1962-01-02"):
        cal.session_index(d("1961-12-29"))
    with pytest.raises(UsageError, match="outside the known calendar"):
        cal.session_at(-1)
    with pytest.raises(UsageError, match="outside the known calendar"):
        cal.session_at(len(cal.all_sessions()))
    with pytest.raises(UsageError, match="before 1962-01-02"):
        cal.sessions_between(d("1961-01-01"), d("1962-01-05"))
    with pytest.raises(UsageError, match="beyond the calendar's horizon"):
        cal.sessions_between(cal.last_known_session + timedelta(days=30), date(2200, 1, 1))


def test_neighbours_and_ranges(cal: TradingCalendar) -> None:
    assert cal.sessions_between(d("2001-09-10"), d("2001-09-17")) == [
        d("2001-09-10"),
        d("2001-09-17"),
    ]
    assert cal.sessions_between(d("2026-11-28"), d("2026-11-29")) == []
    assert cal.next_session(d("2026-11-25")) == d("2026-11-27")
    assert cal.previous_session(d("2026-11-30")) == d("2026-11-27")
    assert cal.previous_session(d("2026-11-27")) == d("2026-11-25")
    assert cal.previous_session(ORIGIN) is None


# -- latest completed session -------------------------------------------------------------------
# (instant, delay minutes, expected). Instants are UTC unless they carry an offset.
LATEST_CASES: list[tuple[str, int, str]] = [
    # A regular Wednesday: close 16:00 ET = 21:00 UTC, plus 15 minutes.
    ("2026-11-25T21:14:59+00:00", 15, "2026-11-24"),
    ("2026-11-25T21:15:00+00:00", 15, "2026-11-25"),
    ("2026-11-25T21:00:00+00:00", 0, "2026-11-25"),
    ("2026-11-25T20:59:59+00:00", 0, "2026-11-24"),
    # Morning in New York: yesterday is the latest.
    ("2026-11-25T14:00:00+00:00", 15, "2026-11-24"),
    # After midnight UTC but still the evening before in New York.
    ("2026-11-25T03:00:00+00:00", 15, "2026-11-24"),
    # Thanksgiving (closed) all day, then the early close of 13:00 ET on Friday.
    ("2026-11-26T22:00:00+00:00", 15, "2026-11-25"),
    ("2026-11-27T18:14:00+00:00", 15, "2026-11-25"),
    ("2026-11-27T18:15:00+00:00", 15, "2026-11-27"),
    ("2026-11-27T13:20:00-05:00", 15, "2026-11-27"),
    # The weekend and Monday morning.
    ("2026-11-28T12:00:00+00:00", 15, "2026-11-27"),
    ("2026-11-29T23:59:00+00:00", 15, "2026-11-27"),
    ("2026-11-30T14:00:00+00:00", 15, "2026-11-27"),
    # Sunday in Tokyo is Saturday in New York.
    ("2026-11-29T08:00:00+09:00", 15, "2026-11-27"),
    # DST ends 2026-11-01: Friday's close is 20:00 UTC, Monday's 21:00 UTC.
    ("2026-10-30T20:15:00+00:00", 15, "2026-10-30"),
    ("2026-11-02T20:15:00+00:00", 15, "2026-10-30"),
    ("2026-11-02T21:14:00+00:00", 15, "2026-10-30"),
    ("2026-11-02T21:15:00+00:00", 15, "2026-11-02"),
    # DST starts 2026-03-08: Friday's close is 21:00 UTC, Monday's 20:00 UTC.
    ("2026-03-06T20:30:00+00:00", 15, "2026-03-05"),
    ("2026-03-09T20:14:00+00:00", 15, "2026-03-06"),
    ("2026-03-09T20:15:00+00:00", 15, "2026-03-09"),
    # A long delay pushes the answer back past a closure.
    ("2026-11-26T20:00:00+00:00", 24 * 60, "2026-11-24"),
    # Hurricane Sandy: no sessions on the 29th and 30th.
    ("2012-10-31T12:00:00+00:00", 15, "2012-10-26"),
]


def _latest_answers(cal: TradingCalendar) -> list[date]:
    return [
        cal.latest_completed_session(datetime.fromisoformat(instant), delay)
        for instant, delay, _ in LATEST_CASES
    ]


@pytest.mark.parametrize(("instant", "delay", "expected"), LATEST_CASES)
def test_latest_completed_session(
    cal: TradingCalendar, instant: str, delay: int, expected: str
) -> None:
    assert cal.latest_completed_session(datetime.fromisoformat(instant), delay) == d(expected)


def test_latest_completed_session_needs_an_aware_time(cal: TradingCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.latest_completed_session(datetime(2026, 11, 25, 22, 0))


@pytest.fixture
def restore_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    time.tzset()
    calendar_module._load_schedule.cache_clear()


def test_host_time_zone_does_not_matter(restore_tz: pytest.MonkeyPatch) -> None:
    """The same instants give the same sessions with the process in Los Angeles or Tokyo."""
    answers: dict[str, list[date]] = {}
    for zone in ("UTC", "America/Los_Angeles", "Asia/Tokyo"):
        restore_tz.setenv("TZ", zone)
        time.tzset()
        assert time.tzname[0] != "" and (zone == "UTC" or time.timezone != 0)
        calendar_module._load_schedule.cache_clear()  # rebuild the schedule in this zone
        cal = TradingCalendar()
        answers[zone] = _latest_answers(cal)
        assert cal.session_close(d("2026-11-27")) == datetime(2026, 11, 27, 18, tzinfo=UTC)
        assert cal.session_index(d("2026-11-27")) == get_calendar().session_index(d("2026-11-27"))
    expected = [d(e) for _, _, e in LATEST_CASES]
    assert answers["UTC"] == expected
    assert answers["America/Los_Angeles"] == expected
    assert answers["Asia/Tokyo"] == expected


# -- the closures override file -----------------------------------------------------------------
def test_closures_file_removes_dates(cal: TradingCalendar, tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text(
        "# ad-hoc closures the library does not know yet\n"
        "\n"
        "2026-12-24   # a made-up closure\n"
        "2026-12-31\n"
        "2026-12-26\n"  # a Saturday: harmless
    )
    assert read_closures_file(path) == [d("2026-12-24"), d("2026-12-31"), d("2026-12-26")]
    custom = get_calendar("XNYS", str(path))
    assert custom.extra_closures == {d("2026-12-24"), d("2026-12-31"), d("2026-12-26")}
    assert cal.is_session(d("2026-12-24")) and not custom.is_session(d("2026-12-24"))
    assert not custom.is_session(d("2026-12-31"))
    after = d("2027-01-04")
    assert custom.session_index(after) == cal.session_index(after) - 2
    assert custom.session_index(d("2026-12-23")) == cal.session_index(d("2026-12-23"))
    late_on_the_24th = datetime(2026, 12, 24, 23, 0, tzinfo=UTC)
    assert cal.latest_completed_session(late_on_the_24th) == d("2026-12-24")
    assert custom.latest_completed_session(late_on_the_24th) == d("2026-12-23")


def test_closures_file_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text("2026-12-28\n")
    settings = load_settings(
        env={"CONDVEST_CALENDAR__CLOSURES_FILE": str(path)},
        overrides={"lake": {"uri": str(tmp_path / "lake")}},
    )
    ctx = JobContext.from_settings(settings)
    assert not ctx.calendar.is_session(d("2026-12-28"))
    assert ctx.calendar.is_session(d("2026-12-29"))


def test_closures_file_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "closures.txt"
    path.write_text("2026-12-24\n# fine\n2026-13-40\n")
    with pytest.raises(ConfigError) as info:
        read_closures_file(path)
    assert str(info.value) == (
        f"calendar.closures_file {path} line 3: '2026-13-40' is not a date "
        "(write one YYYY-MM-DD per line)"
    )
    with pytest.raises(ConfigError, match="line 3"):
        get_calendar("XNYS", str(path))


def test_closures_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.txt"
    with pytest.raises(ConfigError) as info:
        read_closures_file(path)
    assert str(info.value).startswith(f"calendar.closures_file {path} cannot be read: ")
    assert "\n" not in str(info.value)


# -- user dates ----------------------------------------------------------------------------------
def test_parse_date() -> None:
    assert parse_date("2025-01-02") == d("2025-01-02")
    assert parse_date(" 1962-01-02 ") == ORIGIN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-13-01", "--start '2025-13-01' is not a date (use YYYY-MM-DD)"),
        ("yesterday", "--start 'yesterday' is not a date (use YYYY-MM-DD)"),
        ("", "--start '' is not a date (use YYYY-MM-DD)"),
        (
            "1961-12-29",
            "--start 1961-12-29 is before 1962-01-02, the first session known "
            "(use a date from 1962-01-02 on)",
        ),
        (
            "1900-01-01",
            "--start 1900-01-01 is before 1962-01-02, the first session known "
            "(use a date from 1962-01-02 on)",
        ),
    ],
)
def test_parse_date_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_date(text, option="--start")
    assert str(info.value) == message
    assert info.value.exit_code == 2


# -- the schedule cache ---------------------------------------------------------------------------
UNTIL = date(2027, 12, 31)


@pytest.fixture
def fresh_schedules() -> Iterator[None]:
    calendar_module._load_schedule.cache_clear()
    yield
    calendar_module._load_schedule.cache_clear()


def test_schedule_cache_round_trip(tmp_path: Path, fresh_schedules: None) -> None:
    computed = calendar_module._compute_schedule("XNYS", UNTIL)
    first = TradingCalendar(until=UNTIL, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("calendar-XNYS-2027-12-31-pmc*.txt")
    calendar_module._load_schedule.cache_clear()

    def refuse(*_: object) -> None:
        raise AssertionError("the schedule was computed although the cache holds it")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calendar_module, "_compute_schedule", refuse)
        second = TradingCalendar(until=UNTIL, cache_dir=tmp_path)
    assert tuple(first.all_sessions()) == tuple(second.all_sessions()) == computed[0]
    assert tuple(second._closes) == computed[1]
    # Early closes and time zones survive the round trip.
    assert second.session_close(d("2024-11-29")) == datetime(2024, 11, 29, 18, 0, tzinfo=UTC)
    assert second.session_close(d("1999-07-02")).tzinfo is UTC
    assert cached.read_text().startswith("condvest calendar cache v1")


@pytest.mark.parametrize(
    "damage",
    ["", "not a cache\n1 2\n", "condvest calendar cache v1: x\n-2923 abc\n", "truncated"],
)
def test_damaged_schedule_cache_is_recomputed(
    tmp_path: Path, fresh_schedules: None, damage: str
) -> None:
    TradingCalendar(until=UNTIL, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("calendar-*.txt")
    good = cached.read_text()
    if damage == "truncated":
        damage = good[: len(good) // 2]
    cached.write_text(damage)
    calendar_module._load_schedule.cache_clear()
    cal = TradingCalendar(until=UNTIL, cache_dir=tmp_path)
    assert cal.first_session == ORIGIN
    assert tuple(cal.all_sessions()) == calendar_module._compute_schedule("XNYS", UNTIL)[0]
    assert cached.read_text() == good  # rewritten whole


def test_unusable_cache_dir_is_ignored(tmp_path: Path, fresh_schedules: None) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    cal = TradingCalendar(until=UNTIL, cache_dir=blocker / "condvest")
    assert cal.first_session == ORIGIN
    assert blocker.read_text().startswith("a file")


def test_cache_dir_setting(tmp_path: Path, fresh_schedules: None) -> None:
    assert calendar_module.resolve_cache_dir("") is None
    assert calendar_module.resolve_cache_dir(str(tmp_path)) == tmp_path
    folder = tmp_path / "cache"
    settings = load_settings(
        overrides={"lake": {"uri": str(tmp_path / "lake")}, "calendar": {"cache_dir": str(folder)}}
    )
    JobContext.from_settings(settings)
    assert len(list(folder.glob("calendar-XNYS-*.txt"))) == 1
    get_calendar.cache_clear()
    off = load_settings(
        overrides={"lake": {"uri": str(tmp_path / "lake2")}, "calendar": {"cache_dir": ""}}
    )
    JobContext.from_settings(off)
    assert len(list(folder.glob("*"))) == 1


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        ("2028-02-29", 1, "2027-02-28"),  # no 29 February in 2027: the day before, never March
        ("2028-02-29", 4, "2024-02-29"),
        ("2028-02-29", 5, "2023-02-28"),
        ("2027-02-28", 1, "2026-02-28"),
        ("2026-11-25", 3, "2023-11-25"),
        ("2024-03-01", 1, "2023-03-01"),
    ],
)
def test_years_before(day: str, years: int, expected: str) -> None:
    from condvest.core.calendar import years_before

    assert years_before(d(day), years) == d(expected)


def test_one_years_before_for_fetch_and_lambda() -> None:
    """History, new-symbol backfill and Lambda events share the calendar's function (a second
    copy in jobs/fetch raised on 29 February)."""
    import condvest.aws.events as events
    import condvest.jobs.fetch.backfill as backfill
    import condvest.jobs.fetch.history as fetch_extra
    import condvest.jobs.fetch.job as fetch
    from condvest.core import calendar

    assert events.years_before is calendar.years_before
    assert fetch_extra.years_before is calendar.years_before
    assert not hasattr(fetch, "years_before") and not hasattr(backfill, "years_before")

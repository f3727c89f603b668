"""The resample checkpoint as a type: it round-trips through its format, refuses another format
or a body that does not validate (the interval is then rebuilt in full, as before), and an
unreadable file fails the run naming it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.errors import CorruptFileError
from condvest.jobs.resample.checkpoint import (
    FORMAT,
    NONE,
    OTHER_FORMAT,
    Checkpoint,
    CheckpointFormatError,
)
from condvest.jobs.resample.job import ResampleOptions, plan_resample, run_resample
from condvest.state.checkpoints import read_checkpoint, write_checkpoint
from conftest import Lake, at
from resample_helpers import bronze_row, write_data

CAL = get_calendar()
HISTORY = CAL.sessions_between(date(2024, 4, 1), date(2024, 7, 9))
NOW = at("2024-07-09T23:00:00+00:00")


def _checkpoint(**changes: Any) -> Checkpoint:
    fields: dict[str, Any] = {
        "through": date(2024, 7, 9),
        "alignment": "calendar",
        "include_partial": False,
        "since": None,
        "bars": 12,
        "months": {"202406": ("abc:7", "v1"), "202407": ("def:5", None)},
        "symbols": {"A": "123"},
        "spans": {"A": [19800, 19900]},
        "bronze": {"A": [60, 1_700_000_000_000]},
        "run_id": "r1",
        "updated_at": datetime(2024, 7, 9, 23).isoformat(),
    }
    fields.update(changes)
    return Checkpoint(**fields)


def test_checkpoint_round_trips_through_its_format() -> None:
    checkpoint = _checkpoint()
    body = checkpoint.encode()
    assert body["format"] == FORMAT and body["through"] == "2024-07-09"
    assert body["months"]["202406"] == ["abc:7", "v1"]
    assert Checkpoint.decode(body) == checkpoint
    old = _checkpoint(spans=None, bronze=None)  # written before spans and bronze were kept
    assert "spans" not in old.encode() and Checkpoint.decode(old.encode()) == old
    assert checkpoint.month_versions == {"202406": "v1", "202407": None}
    assert checkpoint.options_changed({"alignment": "rows", "since": None}) == ["alignment"]


@pytest.mark.parametrize(
    "change",
    [
        {"format": 1},
        {"format": None},
        {"months": ["202406"]},
        {"months": {"202406": ["abc"]}},
        {"through": "yesterday"},
        {"symbols": None},
    ],
    ids=["old-format", "no-format", "months-list", "short-month", "bad-through", "no-symbols"],
)
def test_another_format_or_an_invalid_body_is_refused(change: dict[str, Any]) -> None:
    body = {**_checkpoint().encode(), **change}
    with pytest.raises(CheckpointFormatError):
        Checkpoint.decode(body)


def test_a_wrong_format_rebuilds_in_full_and_a_corrupt_file_fails_naming_it(lake: Lake) -> None:
    for n, sym in enumerate(("A", "B")):
        write_data(lake.storage, sym, [bronze_row(sym, d, 10.0 + n) for d in HISTORY])
    ctx = lake.context(now=NOW)
    assert Checkpoint.load(lake.storage, 3) == NONE
    assert run_resample(ctx, plan_resample(ctx, ResampleOptions(intervals=(3,)))).ok
    loaded = Checkpoint.load(lake.storage, 3)
    assert isinstance(loaded, Checkpoint) and loaded.through == HISTORY[-1]
    again = plan_resample(ctx, ResampleOptions(intervals=(3,)))
    assert again.intervals[0].mode == "incremental"  # the checkpoint is used
    body = read_checkpoint(lake.storage, 3)
    assert body is not None
    write_checkpoint(lake.storage, 3, {**body, "format": 1})
    assert Checkpoint.load(lake.storage, 3) == OTHER_FORMAT
    rebuilt = plan_resample(ctx, ResampleOptions(intervals=(3,))).intervals[0]
    assert rebuilt.mode == "full" and rebuilt.reason == OTHER_FORMAT
    assert rebuilt.months_to_write  # every month rewritten
    lake.storage.write_bytes(layout.silver_checkpoint(3), b"{not json")
    with pytest.raises(CorruptFileError, match=r"silver_3d_checkpoint\.json is not valid JSON"):
        plan_resample(ctx, ResampleOptions(intervals=(3,)))

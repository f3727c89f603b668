"""The text renderer (cli/output.py) over every result type: an empty nested section prints
nothing — not a lone heading such as the ``failed`` that ended every successful fetch — while a
section with content keeps its heading, and JSON keeps every key (issue 14 item 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from condvest.cli.output import OutputFormat, render
from condvest.jobs.base import JobResult
from condvest.jobs.consolidate.job import ConsolidateResult
from condvest.jobs.fetch import FetchResult
from condvest.jobs.fetch.dbsync import DbSyncResult
from condvest.jobs.resample.plan import ResampleResult
from condvest.jobs.run import RunResult
from condvest.jobs.status.job import StatusResult, run_status
from condvest.jobs.vacuum.job import VacuumResult
from conftest import make_local_lake

RESULT_TYPES: list[type[JobResult]] = [
    FetchResult,
    ConsolidateResult,
    ResampleResult,
    VacuumResult,
    StatusResult,
    RunResult,
    DbSyncResult,
    JobResult,
]


def text_of(data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> list[str]:
    render(data, OutputFormat.TEXT, title="condvest test")
    return [line.rstrip() for line in capsys.readouterr().out.splitlines()]


def empty_sections(data: dict[str, Any]) -> list[str]:
    """Keys holding {} (or only empty dicts); a dict of zeros (an empty lake's bronze) has
    content."""
    return [
        k
        for k, v in data.items()
        if isinstance(v, dict) and all(isinstance(x, dict) and not x for x in v.values())
    ]


@pytest.mark.parametrize("kind", RESULT_TYPES, ids=lambda t: t.__name__)
def test_empty_sections_print_nothing(kind: type[JobResult], capsys: Any) -> None:
    result = kind(stage="x", run_id="r1", dry_run=False, ok=True, duration_s=0.0)
    data = result.to_dict()
    lines = text_of(data, capsys)
    for key in empty_sections(data):
        assert key not in lines, f"{kind.__name__}: a lone {key!r} heading"
    if kind is FetchResult:
        assert "failed" in empty_sections(data)  # the case of the issue is exercised
    assert lines[-1].strip(), "no trailing blank section"
    render(data, OutputFormat.JSON)
    assert set(json.loads(capsys.readouterr().out)) == set(data)  # JSON keeps them all


def test_a_section_with_content_keeps_its_heading(capsys: Any) -> None:
    ok = FetchResult(stage="fetch", run_id="r", dry_run=False, ok=True, duration_s=0.0)
    assert "failed" not in text_of(ok.to_dict(), capsys)
    bad = FetchResult(
        stage="fetch",
        run_id="r",
        dry_run=False,
        ok=False,
        duration_s=0.0,
        failed={"2026-11-20": "HTTP 500"},
    )
    lines = text_of(bad.to_dict(), capsys)
    assert "failed" in lines
    assert any("HTTP 500" in line for line in lines)
    # A section of sections that are all empty is empty too.
    assert "parts" not in text_of({"ok": True, "parts": {"a": {}, "b": {}}}, capsys)


def test_status_of_an_empty_lake_has_no_empty_heading(tmp_path: Path, capsys: Any) -> None:
    lake = make_local_lake(tmp_path / "lake")
    result = run_status(lake.context(now=datetime(2026, 11, 25, 22, tzinfo=UTC)))
    data = result.to_dict()
    lines = text_of(data, capsys)
    for key in empty_sections(data):
        assert key not in lines, key
    assert "missing_sessions" in lines  # {"count": 0, …} has content: it keeps its heading

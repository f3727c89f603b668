"""What ``condvest status`` finds wrong: one list of problems (docs/design.md, "Status
problems"), from which both ``healthy`` (no problem at all) and ``status --check``'s exit code
(any problem that fails the check) are derived — and the parts of the view that come with
problems of their own: the stages' last runs and the locks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from condvest.jobs.base import JobContext
from condvest.state.lock import read_lock
from condvest.state.runs import STAGES, failed_parts, last_runs, last_success, scoped_runs


@dataclass(frozen=True)
class Problem:
    """One thing status reports. ``fails_check``: ``status --check`` exits 1 for it (the lake
    or a built silver interval is stale, a stage's last run or one of its parts failed, the
    PostgreSQL cache cannot be read or is behind the lake); the others are shown, and make the
    lake not ``healthy``, without failing the check."""

    kind: str
    message: str
    fails_check: bool = False


def failing(problems: Sequence[Problem]) -> bool:
    """Whether ``status --check`` fails on ``problems``."""
    return any(p.fails_check for p in problems)


def runs_view(ctx: JobContext) -> tuple[dict[str, Any], list[Problem]]:
    """Each stage's last run (and the last run of each of its parts), and the failed ones."""
    runs = last_runs(ctx.storage)
    view: dict[str, Any] = {}
    problems: list[Problem] = []
    for stage in STAGES:
        record = runs.get(stage)
        view[stage] = _run_line(record)
        success = last_success(ctx.storage, stage, record) if record else None
        view[stage]["last_success_at"] = success.ended_at if success else None
        said = record is not None and record.outcome == "failed"
        if record is not None and said:  # (record checked again for the type checker)
            problems.append(
                Problem(
                    "run-failed",
                    f"the last {stage} run failed ({record.run_id}): {record.error}",
                    True,
                )
            )
        parts = scoped_runs(ctx.storage, stage)
        failed = failed_parts(record, parts)
        if parts:
            view[stage]["parts"] = {p.scope: _run_line(p) for p in parts}
            view[stage]["failed_parts"] = [p.scope for p in failed]
        for part in failed:
            if said and record is not None and part.run_id == record.run_id:
                continue  # said just above
            problems.append(
                Problem(
                    "part-failed",
                    f"the last {stage} run of {part.scope} failed ({part.run_id}): {part.error}",
                    True,
                )
            )
    return view, problems


def _run_line(record: Any) -> dict[str, Any]:
    keys = ("outcome", "started_at", "ended_at", "run_id", "error")
    return {k: getattr(record, k) if record else None for k in keys}


def locks_view(ctx: JobContext, names: list[str]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The locks present, and the expired ones (the next run takes them over)."""
    locks: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for name in names:
        info = read_lock(ctx.storage, name)
        if info is None:
            continue
        expired = info.expires <= ctx.now()
        locks.append(
            {
                "stage": name,
                "run_id": info.run_id,
                "host": info.host,
                "since": info.acquired_at,
                "expires_at": info.expires_at,
                "expired": expired,
            }
        )
        if expired:
            problems.append(
                Problem(
                    "stale-lock",
                    f"a stale {name} lock of run {info.run_id} remains (the next run takes it "
                    "over)",
                )
            )
    return locks, problems

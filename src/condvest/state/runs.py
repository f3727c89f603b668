"""Run records: one small JSON per run (stage, run id, start, end, outcome, counts), plus a
``latest.json`` per stage so status reads one object per stage instead of listing history."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from condvest.core import layout
from condvest.errors import CondvestError, CorruptFileError
from condvest.storage.base import Storage

Outcome = Literal["running", "success", "failed", "partial"]
STAGES = ("fetch", "consolidate", "resample", "vacuum", "run")


@dataclass(frozen=True)
class RunRecord:
    stage: str
    run_id: str
    started_at: str
    outcome: Outcome = "running"
    ended_at: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    scope: str | None = None
    """The part of the stage this run did, when it ran in parts (``consolidate --shard 3/8``:
    "shard-3-of-8"); None for a whole run."""

    @property
    def key(self) -> str:
        stamp = self.started_at.replace(":", "").replace("+0000", "Z")
        return layout.run_record(self.stage, stamp, self.run_id)

    def finished(
        self, outcome: Outcome, ended: datetime, counts: dict[str, Any], error: str | None = None
    ) -> RunRecord:
        return replace(
            self, outcome=outcome, ended_at=ended.isoformat(), counts=counts, error=error
        )

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunRecord:
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__ if k in obj})


def write_run_record(storage: Storage, record: RunRecord) -> None:
    body = asdict(record)
    storage.write_json(record.key, body)
    storage.write_json(layout.run_latest(record.stage), body)
    if record.scope:
        # latest.json is whichever part finished last: each part's own last run is kept too,
        # so that a failed shard is not hidden by another shard's success (status).
        storage.write_json(layout.run_latest_scope(record.stage, record.scope), body)


def scoped_runs(storage: Storage, stage: str) -> list[RunRecord]:
    """The last run of each part of ``stage`` (e.g. each consolidate shard), by scope."""
    out: list[RunRecord] = []
    for obj in storage.list_objects(layout.run_scopes_prefix(stage)):
        if layout.is_temp_key(obj.key) or not obj.key.endswith(".json"):
            continue
        try:
            out.append(RunRecord.from_json(storage.read_json(obj.key)))
        except (CondvestError, TypeError, AttributeError):
            continue  # gone meanwhile, or not a record: nothing to report on
    return sorted(out, key=lambda r: r.scope or "")


def _parts(scope: str | None) -> int | None:
    """N of a "shard-K-of-N" scope."""
    if not scope or "-of-" not in scope:
        return None
    tail = scope.rsplit("-of-", 1)[1]
    return int(tail) if tail.isdigit() else None


def failed_parts(latest: RunRecord | None, parts: list[RunRecord]) -> list[RunRecord]:
    """The parts whose last run failed and that no later whole run has covered. Only the
    latest split counts (after a re-split from 8 shards to 4, the old 8-way records are
    history)."""
    if not parts:
        return []
    newest = max(parts, key=lambda r: r.started_at)
    split = _parts(newest.scope)
    out = []
    for record in parts:
        if record.outcome != "failed" or _parts(record.scope) != split:
            continue
        covered = (
            latest is not None
            and latest.scope is None
            and latest.outcome == "success"
            and latest.started_at > record.started_at
        )
        if not covered:
            out.append(record)
    return out


def last_runs(storage: Storage, stages: tuple[str, ...] = STAGES) -> dict[str, RunRecord | None]:
    out: dict[str, RunRecord | None] = {}
    for stage in stages:
        try:
            seen = storage.read_json_versioned(layout.run_latest(stage))
        except CorruptFileError:
            seen = None
        out[stage] = RunRecord.from_json(seen[0]) if seen else None
    return out


LAST_SUCCESS_SCAN = 50
"""Most run records read, newest first, to find a stage's last success when its latest run
did not succeed (status's SecondsSinceLastSuccess)."""


def _history_keys(storage: Storage, stage: str) -> list[str]:
    """The keys of ``stage``'s run records (``<started stamp>_<run id>.json``), oldest first;
    one listing, without latest.json, the per-part records and temporaries."""
    prefix = layout.run_latest(stage).rsplit("/", 1)[0] + "/"
    return sorted(
        obj.key
        for obj in storage.list_objects(prefix)
        if "/" not in obj.key[len(prefix) :]
        and obj.key.endswith(".json")
        and obj.key != layout.run_latest(stage)
        and not layout.is_temp_key(obj.key)
    )


def last_success(storage: Storage, stage: str, latest: RunRecord | None) -> RunRecord | None:
    """The newest successful run of ``stage`` (any part of it: a consolidate shard counts),
    or None. One read at most when the latest run succeeded; otherwise one listing of the
    stage's run history and up to LAST_SUCCESS_SCAN reads (a lifecycle rule that expired the
    older records leaves None)."""
    if latest is not None and latest.outcome == "success":
        return latest
    for key in _history_keys(storage, stage)[::-1][:LAST_SUCCESS_SCAN]:
        try:
            record = RunRecord.from_json(storage.read_json(key))
        except (CondvestError, TypeError, AttributeError):
            continue
        if record.outcome == "success":
            return record
    return None


def recent_runs(storage: Storage, stage: str, limit: int) -> list[RunRecord]:
    """The last ``limit`` whole runs of ``stage`` recorded in its history, oldest first (the
    health report's durations). One listing and up to ``limit`` reads; records that are gone
    meanwhile or not records are skipped."""
    keys = _history_keys(storage, stage)
    out: list[RunRecord] = []
    for key in keys[-limit:] if limit > 0 else []:
        try:
            out.append(RunRecord.from_json(storage.read_json(key)))
        except (CondvestError, TypeError, AttributeError):
            continue
    return out

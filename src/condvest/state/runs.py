"""Run records: one small JSON per run (stage, run id, start, end, outcome, counts), plus a
``latest.json`` per stage so status reads one object per stage instead of listing history."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from condvest.core import layout
from condvest.errors import CorruptFileError
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


def last_runs(storage: Storage, stages: tuple[str, ...] = STAGES) -> dict[str, RunRecord | None]:
    out: dict[str, RunRecord | None] = {}
    for stage in stages:
        try:
            seen = storage.read_json_versioned(layout.run_latest(stage))
        except CorruptFileError:
            seen = None
        out[stage] = RunRecord.from_json(seen[0]) if seen else None
    return out

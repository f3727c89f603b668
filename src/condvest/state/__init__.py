"""State kept in the lake under ``processing_metadata/`` (docs/design.md §14): the stage lock, run
records, the fetch log and watermarks, the consolidation manifest and the resample checkpoints.

Every state object is either written once per event (run records, fetch-log entries) or updated
by compare-and-swap (watermark, manifest, lock), so concurrent runs never lose an update.
"""

from condvest.state.checkpoints import read_checkpoint, write_checkpoint
from condvest.state.fetchlog import (
    SessionEntry,
    advance_watermark,
    landed_sessions,
    read_session,
    read_watermark,
    record_session,
)
from condvest.state.lock import LockInfo, StageLock
from condvest.state.manifest import ManifestRow, read_manifest, update_manifest
from condvest.state.runs import RunRecord, last_runs, write_run_record

__all__ = [
    "LockInfo",
    "ManifestRow",
    "RunRecord",
    "SessionEntry",
    "StageLock",
    "advance_watermark",
    "landed_sessions",
    "last_runs",
    "read_checkpoint",
    "read_manifest",
    "read_session",
    "read_watermark",
    "record_session",
    "update_manifest",
    "write_checkpoint",
    "write_run_record",
]

"""An interval's resample checkpoint (``processing_metadata/silver_<N>d_checkpoint.json``) as a
frozen type that owns its format: :meth:`Checkpoint.encode` writes it, :meth:`Checkpoint.decode`
validates it (docs/design.md, "The resample checkpoint").

What it proves: the month files of the interval were written from these bars (a content digest
and the file version per month), the bars of each symbol (a digest), where each symbol's bars
lie (``spans``), and how many merged daily rows each symbol had on or before ``through`` with
their newest ``fetched_at`` (``bronze``: the next run's proof that nothing before its cutoff
changed, see :mod:`condvest.jobs.resample.tail`). A checkpoint of another format, or one that
does not validate, is not used: the interval is rebuilt in full (``checkpoint from another
format``); an unreadable file (not JSON) fails the run naming it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from condvest.state.checkpoints import read_checkpoint, write_checkpoint
from condvest.storage.base import Storage

FORMAT = 2
"""The checkpoint format this code writes and reads (1 had no month versions)."""
OTHER_FORMAT = "checkpoint from another format"
NONE = "no checkpoint"


class CheckpointFormatError(ValueError):
    """A checkpoint body that is not this format (the message says what is wrong)."""


@dataclass(frozen=True)
class Checkpoint:
    through: date
    """The latest session the interval's bars were computed through."""
    alignment: str
    include_partial: bool
    since: date | None
    bars: int
    months: Mapping[str, tuple[str, str | None]]
    """Per month label (YYYYMM): (content digest, version of the file written)."""
    symbols: Mapping[str, str]
    """Per symbol: digest of its bars."""
    spans: Mapping[str, list[int]] | None = None
    """Per symbol: [first, last] bar start day (None: written before spans were kept)."""
    bronze: Mapping[str, list[int | None]] | None = None
    """Per symbol: [rows dated through or earlier, their newest fetched_at ms]."""
    run_id: str = ""
    updated_at: str = ""

    # -- options --------------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The run options the bars depend on, as :func:`options_key` builds them."""
        return options_key(self.alignment, self.include_partial, self.since)

    def options_changed(self, wanted: Mapping[str, Any]) -> list[str]:
        """The names of the options in ``wanted`` this checkpoint was not made with."""
        mine = self.options()
        return [name for name, value in wanted.items() if mine.get(name) != value]

    @property
    def month_digests(self) -> dict[str, str]:
        return {label: digest for label, (digest, _) in self.months.items()}

    @property
    def month_versions(self) -> dict[str, str | None]:
        return {label: version for label, (_, version) in self.months.items()}

    # -- the format -----------------------------------------------------------------------------
    def encode(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT,
            "through": self.through.isoformat(),
            **self.options(),
            "bars": self.bars,
            "run_id": self.run_id,
            "updated_at": self.updated_at,
            "months": {
                label: [digest, version] for label, (digest, version) in self.months.items()
            },
            "symbols": dict(self.symbols),
        }
        if self.spans is not None:
            body["spans"] = dict(self.spans)
        if self.bronze is not None:
            body["bronze"] = dict(self.bronze)
        return body

    @classmethod
    def decode(cls, body: Any) -> Checkpoint:
        """Validate ``body`` (a parsed checkpoint); CheckpointFormatError when it is not this
        format."""
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise CheckpointFormatError(f"format is not {FORMAT}")
        try:
            months = {
                str(label): (str(entry[0]), None if entry[1] is None else str(entry[1]))
                for label, entry in _mapping(body, "months").items()
            }
            since = body.get("since")
            return cls(
                through=date.fromisoformat(body["through"]),
                alignment=str(body["alignment"]),
                include_partial=bool(body["include_partial"]),
                since=None if since is None else date.fromisoformat(since),
                bars=int(body.get("bars", 0)),
                months=months,
                symbols={str(k): str(v) for k, v in _mapping(body, "symbols").items()},
                spans=_optional(body, "spans"),
                bronze=_optional(body, "bronze"),
                run_id=str(body.get("run_id", "")),
                updated_at=str(body.get("updated_at", "")),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CheckpointFormatError(f"{type(exc).__name__}: {exc}") from None

    # -- storage --------------------------------------------------------------------------------
    @classmethod
    def load(cls, storage: Storage, interval: int) -> Checkpoint | str:
        """The interval's checkpoint, or why there is none to use (:data:`NONE`,
        :data:`OTHER_FORMAT`). An unreadable file raises CorruptFileError naming it."""
        body = read_checkpoint(storage, interval)
        if body is None:
            return NONE
        try:
            return cls.decode(body)
        except CheckpointFormatError:
            return OTHER_FORMAT

    def save(self, storage: Storage, interval: int) -> None:
        write_checkpoint(storage, interval, self.encode())


def options_key(alignment: str, include_partial: bool, since: date | None) -> dict[str, Any]:
    """The options a checkpoint records (a change makes the interval be rebuilt in full)."""
    return {
        "alignment": alignment,
        "include_partial": include_partial,
        "since": since.isoformat() if since else None,
    }


def recorded(storage: Storage, interval: int, name: str) -> Any:
    """One field of the interval's checkpoint as written, whatever its format (None when there
    is no checkpoint or no such field): what status and the read side show."""
    body = read_checkpoint(storage, interval)
    return body.get(name) if isinstance(body, dict) else None


def _mapping(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body[name]
    if not isinstance(value, dict):
        raise TypeError(f"{name} is not an object")
    return value


def _optional(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _mapping(body, name) if name in body else None

"""Finding bronze work, shared by consolidate and vacuum: which symbols have pending date files
(fetch log + manifest, see :mod:`condvest.core.retention`), their listings, the cleanup journals,
and which landed files are verifiably superseded by data.parquet."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

from condvest.core import layout
from condvest.core.retention import is_pending, is_superseded
from condvest.errors import StorageError
from condvest.jobs.bronze import SymbolFiles, read_file
from condvest.settings import ConsolidateMode
from condvest.state.fetchlog import SessionEntry
from condvest.state.manifest import ManifestRow
from condvest.storage.base import ObjectInfo, Storage


@dataclass(frozen=True)
class DateFile:
    key: str
    day: date
    size: int
    mtime: datetime
    pending: bool
    version: str | None = None
    """The listed version: a delete goes through only while the file is still this one."""

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.key, self.size, self.mtime, self.version)


def read_journals(storage: Storage) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for obj in storage.list_objects(layout.CLEANUP_JOURNAL_PREFIX):
        if layout.is_temp_key(obj.key):
            continue
        try:
            names = storage.read_json(obj.key).get("symbols", [])
        except (StorageError, AttributeError):
            continue  # gone meanwhile (another run finished it) or unreadable: ignore
        out.append((obj.key, tuple(s for s in names if layout.is_valid_symbol(s))))
    return tuple(out)


def candidates(
    storage: Storage,
    manifest: dict[str, ManifestRow],
    mode: ConsolidateMode,
    requested: Sequence[str] | None,
    workers: int,
) -> tuple[list[str] | None, str]:
    """Symbols whose prefixes to list (None = list all of bronze) and how they were chosen."""
    if requested is not None:
        return [layout.validate_symbol(s) for s in requested], "symbols"
    if mode is ConsolidateMode.FULL:
        return None, "listing"
    entries = [o for o in storage.list_objects(layout.FETCH_LOG_PREFIX) if is_entry(o)]
    if not entries:
        return None, "listing"

    def read(obj: ObjectInfo) -> tuple[ObjectInfo, SessionEntry]:
        return obj, SessionEntry.from_json(storage.read_json(obj.key))

    candidates: set[str] = set()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for obj, entry in pool.map(read, entries):
            if entry.status == "landed" and entry.rows > 0 and not entry.symbols:
                return None, "listing"  # an entry without its symbol list: cannot narrow down
            for symbol in entry.symbols:
                row = manifest.get(symbol)
                # A session after the symbol's history is pending whatever the clocks say (a
                # manifest written by another tool may carry a host-clock last_updated).
                if (
                    row is None
                    or row.last_updated is None
                    or row.last_consolidated_date is None
                    or obj.mtime > row.last_updated
                    or entry.session > row.last_consolidated_date
                ):
                    candidates.add(symbol)
    return sorted(s for s in candidates if layout.is_valid_symbol(s)), "fetch-log"


def is_entry(obj: ObjectInfo) -> bool:
    return layout.parse_fetch_log_entry(obj.key) is not None and not layout.is_temp_key(obj.key)


def date_files(
    files: SymbolFiles, row: ManifestRow | None, mode: ConsolidateMode
) -> list[DateFile]:
    out: list[DateFile] = []
    for day, obj in files.dates.items():
        pending = mode is ConsolidateMode.FULL or is_pending(
            day,
            obj.mtime,
            row.last_consolidated_date if row else None,
            row.last_updated if row else None,
        )
        out.append(DateFile(obj.key, day, obj.size, obj.mtime, pending, obj.version))
    return out


def superseded_files(storage: Storage, symbol: str, files: Sequence[DateFile]) -> list[DateFile]:
    """The ``files`` whose every row is verified in the symbol's data.parquet (read now)."""
    history = read_file(storage, layout.data_file(symbol))
    out = []
    for f in files:
        try:
            landed = read_file(storage, f.key)
        except StorageError:
            continue  # gone already, or unreadable: not ours to delete on a guess
        if is_superseded(landed, history):
            out.append(f)
    return out

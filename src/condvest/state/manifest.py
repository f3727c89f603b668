"""The consolidation manifest (seed-compatible parquet: symbol, last_consolidated_date,
row_count, last_updated — one row per symbol). Updated by compare-and-swap so concurrent
shards never lose each other's rows."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.errors import CorruptFileError, NotFoundError, StorageError
from condvest.storage.base import Storage, parquet_bytes

log = logging.getLogger("condvest.manifest")

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("last_consolidated_date", pa.date32()),
        pa.field("row_count", pa.int64(), nullable=False),
        pa.field("last_updated", pa.timestamp("ms", tz="UTC")),
        pa.field("first_date", pa.date32()),
    ]
)


@dataclass(frozen=True)
class ManifestRow:
    symbol: str
    last_consolidated_date: date | None
    row_count: int
    last_updated: datetime | None
    first_date: date | None = None
    """Not in the seed manifest; kept as an extra column so status can show the date range."""


def _decode(data: bytes, where: str) -> dict[str, ManifestRow]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise CorruptFileError(f"{where} is not readable: {exc}", hint=REPAIR_HINT) from None
    out: dict[str, ManifestRow] = {}
    cols = set(table.column_names)
    for row in table.to_pylist():
        last_date = row.get("last_consolidated_date")
        if isinstance(last_date, datetime):
            last_date = last_date.date()
        updated = row.get("last_updated") if "last_updated" in cols else None
        if isinstance(updated, date) and not isinstance(updated, datetime):
            updated = datetime(updated.year, updated.month, updated.day)
        first = row.get("first_date")
        if isinstance(first, datetime):
            first = first.date()
        out[row["symbol"]] = ManifestRow(
            row["symbol"], last_date, int(row.get("row_count") or 0), updated, first
        )
    return out


def _encode(rows: Mapping[str, ManifestRow]) -> bytes:
    ordered = [rows[s] for s in sorted(rows)]
    table = pa.table(
        {
            "symbol": [r.symbol for r in ordered],
            "last_consolidated_date": [r.last_consolidated_date for r in ordered],
            "row_count": [r.row_count for r in ordered],
            "last_updated": [r.last_updated for r in ordered],
            "first_date": [r.first_date for r in ordered],
        },
        schema=MANIFEST_SCHEMA,
    )
    return parquet_bytes(table)


REPAIR_HINT = "rebuild it from the data files: condvest consolidate --mode full"


def read_manifest(
    storage: Storage, *, rebuild: bool = False
) -> tuple[dict[str, ManifestRow], str | None]:
    """Rows by symbol and the version token (None when there is no manifest yet).

    An unreadable manifest raises CorruptFileError naming the repair — except with ``rebuild``
    (a full consolidate, which recomputes every row from the data files): then it reads as
    empty, with its version, so the rebuilt rows replace it."""
    try:
        data, version = storage.read_versioned(layout.CONSOLIDATION_MANIFEST)
    except NotFoundError:
        return {}, None
    try:
        return _decode(data, storage.url(layout.CONSOLIDATION_MANIFEST)), version
    except CorruptFileError as exc:
        if not rebuild:
            raise
        log.warning("%s; a full consolidate rebuilds it from the data files", exc.message)
        return {}, version


def update_manifest(
    storage: Storage,
    changes: Mapping[str, ManifestRow],
    *,
    attempts: int = 50,
    rebuild: bool = False,
) -> None:
    """Merge ``changes`` into the manifest with a CAS loop (no lost updates between shards)."""
    if not changes:
        return
    for _ in range(attempts):
        rows, version = read_manifest(storage, rebuild=rebuild)
        rows.update(changes)
        data = _encode(rows)
        if version is None:
            if storage.create(layout.CONSOLIDATION_MANIFEST, data):
                return
        elif storage.replace(layout.CONSOLIDATION_MANIFEST, data, version):
            return
    raise StorageError("could not update the consolidation manifest: too many concurrent writers")

"""``Lake.daily``'s bulk read on local disk: the canonical bronze files of a read in ONE
multi-threaded DuckDB scan into Arrow (``read_parquet($files, hive_partitioning=false)``; no
extension is installed or loaded). File by file, pyarrow costs ~2x a hand-written DuckDB query
over the same files (docs/performance.md, "Reading the lake"): the Python around each small
``date=`` file's read, not the decoding, is the cost.

Only files whose parquet schema is exactly the canonical one go into the scan (each footer is
read first: DuckDB would silently cast a legacy file's timestamp or string ``date`` to its first
file's type); any other file is left to the caller's per-file path, which normalises legacy
shapes and names a corrupt file. A scan that fails (a file vanished or is unreadable) returns
None: the caller then reads file by file, so the error names the file, never a partial result.
"""

from __future__ import annotations

import functools
import logging
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from condvest.core.schema import BRONZE_COLUMNS, BRONZE_SCHEMA

log = logging.getLogger("condvest.read")
_CONFIG: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
_GLOB = frozenset("*?[]{}")


@functools.cache
def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for the process (opening one costs ~15 ms; a read's own cursor is
    cheap)."""
    return duckdb.connect(":memory:", config=_CONFIG)


_VERDICTS: dict[tuple[str, int, object], bool] = {}
"""Footer verdicts by (path, size, mtime) from the listing: a warm process reads each file's
footer once (a rewritten file has another size or mtime, so it is looked at again)."""
_MAX_VERDICTS = 1_000_000


def is_canonical_file(path: str, stamp: tuple[int, object] | None = None) -> bool:
    """The file's footer says canonical bronze (unreadable: False, left to the per-file path).
    ``stamp`` is the listing's (size, mtime) of it: a verdict is kept for that version."""
    key = (path, *stamp) if stamp is not None else None
    if key is not None and (known := _VERDICTS.get(key)) is not None:
        return known
    try:
        verdict = bool(pq.read_schema(path).equals(BRONZE_SCHEMA, check_metadata=False))
    except (pa.ArrowException, OSError, ValueError):
        return False
    if key is not None:
        if len(_VERDICTS) >= _MAX_VERDICTS:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def scan_files(
    paths: list[str],
    stamps: list[tuple[int, object]],
    start: date | None,
    end: date | None,
) -> list[pa.Table | None] | None:
    """Per path, its rows dated in ``[start, end]`` in the canonical schema, or None for a file
    that is not canonical (read it file by file); None in all when the scan fails. ``stamps``:
    each file's (size, mtime) in the listing."""
    # DuckDB would expand a path with a glob character: such a file is read on its own
    chosen = [
        i
        for i, (p, stamp) in enumerate(zip(paths, stamps, strict=True))
        if not _GLOB & set(p) and is_canonical_file(p, stamp)
    ]
    out: list[pa.Table | None] = [None] * len(paths)
    if not chosen:
        return out
    where: list[str] = []
    params: dict[str, Any] = {"files": [paths[i] for i in chosen]}
    if start is not None:
        where.append("date >= $start")
        params["start"] = start
    if end is not None:
        where.append("date <= $end")
        params["end"] = end
    query = (
        "SELECT file_index::BIGINT AS _file, " + ", ".join(BRONZE_COLUMNS) + " "
        "FROM read_parquet($files, hive_partitioning = false)"
    )
    if where:
        query += " WHERE " + " AND ".join(where)
    con = _database().cursor()
    try:
        table = con.sql(query, params=params).to_arrow_table()
    except duckdb.Error as exc:
        log.info("read: the bulk scan failed (%s); reading file by file", exc)
        return None
    finally:
        con.close()
    owner = table.column("_file").to_numpy()
    if len(owner) > 1 and bool(np.any(owner[1:] < owner[:-1])):
        order = np.argsort(owner, kind="stable")
        table, owner = table.take(pa.array(order)), owner[order]
    # one chunk: DuckDB returns about one per file, and slicing many chunks is quadratic
    rows = table.drop_columns(["_file"]).cast(BRONZE_SCHEMA).combine_chunks()
    bounds = np.searchsorted(owner, np.arange(len(chosen) + 1))
    for j, i in enumerate(chosen):
        out[i] = rows.slice(int(bounds[j]), int(bounds[j + 1] - bounds[j]))
    return out

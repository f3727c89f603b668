"""Reading many bronze files into one Arrow table, fast (resample's input).

On local disk the canonical files are read in ONE multi-threaded DuckDB scan into Arrow
(``read_parquet([...], hive_partitioning=false)``; no extension is installed or loaded) — the
per-file pyarrow reads cost ~40 s on the seed-scale lake, the scan a few seconds. Files with
another schema (the original system's legacy shapes) are read by the one bronze reader
(:func:`condvest.jobs.bronze.read_file`, which normalises them); if the scan fails (a file
vanished or is corrupt) the files are read one by one, which skips a vacuumed date file and
names a corrupt one. On S3 a thread pool reads the files through the Storage.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.bars import day_number
from condvest.core.schema import BAR_INPUT_COLUMNS, BRONZE_SCHEMA, DAILY_ROWS_SCHEMA
from condvest.errors import NotFoundError
from condvest.jobs.bronze import read_file
from condvest.storage.base import Storage

log = logging.getLogger("condvest.resample")
_LOOSE = pa.schema([f.with_nullable(True) for f in BRONZE_SCHEMA])


def read_loose(storage: Storage, key: str) -> pa.Table:
    """One bronze file through the one reader (:func:`condvest.jobs.bronze.read_file`), its
    columns all nullable: nullability flags differ between writers, the columns are what
    matter (zero-copy)."""
    return pa.Table.from_arrays(read_file(storage, key).columns, schema=_LOOSE)


# -- the bulk read ------------------------------------------------------------------------------
COLUMNS = BAR_INPUT_COLUMNS
"""The bronze columns resample needs (``fetched_at`` is read too, as int64 ms, to de-duplicate)."""
ROWS_SCHEMA = DAILY_ROWS_SCHEMA
"""What :class:`Rows` holds."""

# (parquet physical type, converted type) of every canonical column, in order: a file that
# matches is read by DuckDB in the one bulk scan; any other file (legacy shapes) goes through
# the one bronze reader (condvest.jobs.bronze), which normalises them.
_CANONICAL = (
    ("symbol", "BYTE_ARRAY", "UTF8"),
    ("date", "INT32", "DATE"),
    *((name, "DOUBLE", None) for name in ("open", "high", "low", "close", "volume", "vwap")),
    ("transactions", "INT64", None),
    ("fetched_at", "INT64", "TIMESTAMP_MILLIS"),
    ("source", "BYTE_ARRAY", "UTF8"),
)
_SCAN = (
    "SELECT file_index::BIGINT AS owner, " + ", ".join(COLUMNS) + ", "
    "epoch_ms(fetched_at) AS fetched FROM read_parquet($files, hive_partitioning=false)"
)
_TAIL_SUMMARY = (
    "SELECT file_index::BIGINT AS owner, count(*) FILTER (date <= $upto) AS n, "
    "max(epoch_ms(fetched_at)) FILTER (date <= $upto) AS top, "
    "list(date) FILTER (date >= $d0 AND date <= $upto) AS held, "
    "list(struct_pack("
    + ", ".join(f"{c} := {c}" for c in COLUMNS)
    + ", fetched := epoch_ms(fetched_at))) FILTER (date >= $since) AS tail "
    "FROM read_parquet($files, hive_partitioning=false) GROUP BY ALL"
)
_GLOB_CHARS = frozenset("*?[]{}")
NO_DAY = np.iinfo(np.int64).min


def _day(number: int) -> date:
    return date.fromordinal(EPOCH_ORDINAL + number)


EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class FileSummary:
    """Per file (by index): rows dated ``upto`` or earlier, their newest fetched_at (ms; NO_DAY
    when none) and the days in [d0, upto] it holds (only files that hold any)."""

    count: np.ndarray
    max_fetched: np.ndarray
    held: dict[int, set[int]]


def _empty_summary(n: int) -> FileSummary:
    return FileSummary(np.zeros(n, dtype=np.int64), np.full(n, NO_DAY, dtype=np.int64), {})


def _summary_of(rows: Rows, n: int, summary: tuple[int, int] | None) -> FileSummary | None:
    if summary is None:
        return None
    upto, d0 = summary
    out = _empty_summary(n)
    days = day_array(rows.table)
    fetched = np.asarray(pc.fill_null(rows.table.column("fetched"), 0).to_numpy(), np.int64)
    old = days <= upto
    out.count[:] = np.bincount(rows.owner[old], minlength=n)[:n]
    np.maximum.at(out.max_fetched, rows.owner[old], fetched[old])
    recent = old & (days >= d0)
    for owner, day in zip(rows.owner[recent].tolist(), days[recent].tolist(), strict=True):
        out.held.setdefault(owner, set()).add(day)
    return out


def _tail_of(rows: Rows, since: int | None) -> Rows:
    if since is None or rows.table.num_rows == 0:
        return rows
    keep = day_array(rows.table) >= since
    return Rows(rows.table.filter(pa.array(keep)), rows.owner[keep])


@dataclass(frozen=True)
class Rows:
    """Rows of several files: ``COLUMNS`` + ``fetched``; ``owner[i]`` = index of row i's file."""

    table: pa.Table
    owner: np.ndarray


def _rows_of(tables: list[tuple[int, pa.Table]]) -> Rows:
    """Per-file canonical tables -> Rows."""
    parts = [
        pa.table(
            [*(t.column(c) for c in COLUMNS), t.column("fetched_at").cast(pa.int64())],
            names=[*COLUMNS, "fetched"],
        )
        for _, t in tables
    ]
    owner = np.repeat(
        np.array([i for i, _ in tables], dtype=np.int64),
        [t.num_rows for _, t in tables],
    )
    return Rows(pa.concat_tables(parts) if parts else _empty_rows(), owner)


def _empty_rows() -> pa.Table:
    return ROWS_SCHEMA.empty_table()


class BronzeReader:
    """Reads many bronze files into one Arrow table.

    On local disk the canonical files are read in ONE multi-threaded DuckDB scan (the per-file
    pyarrow reads cost ~40 s on the seed-scale lake; the scan ~2 s); on S3 a thread pool reads
    them through the Storage (network-bound). DuckDB never installs or loads an extension."""

    def __init__(
        self, storage: Storage, *, workers: int, threads: int = 0, memory_limit: str = ""
    ) -> None:
        self.storage = storage
        self.workers = max(1, workers)
        self.threads = threads
        self.memory_limit = memory_limit
        self.local = storage.local_path("") is not None

    def read(self, keys: list[str], *, optional: bool) -> Rows:
        """Rows of ``keys`` (``optional``: a file vacuumed since the listing is skipped)."""
        return self.read_tail(keys, optional=optional)[0]

    def read_tail(
        self,
        keys: list[str],
        *,
        optional: bool,
        since: int | None = None,
        summary: tuple[int, int] | None = None,
    ) -> tuple[Rows, FileSummary | None]:
        """Rows of ``keys`` dated ``since`` or later (a day number; None = all rows), and with
        ``summary=(upto, d0)`` a FileSummary of every file's rows dated ``upto`` or earlier."""
        if not keys:
            return Rows(_empty_rows(), np.zeros(0, dtype=np.int64)), _empty_summary(0)
        if self.local:
            try:
                return self._read_bulk(keys, optional, since, summary)
            except duckdb.Error as exc:
                # A file vanished or is unreadable: the per-file path skips a vacuumed date
                # file and names a corrupt file in its error.
                log.info("bulk bronze scan failed (%s); reading file by file", exc)
        rows = self._read_each(keys, list(range(len(keys))), optional)
        return _tail_of(rows, since), _summary_of(rows, len(keys), summary)

    def _read_each(self, keys: list[str], indexes: list[int], optional: bool) -> Rows:
        def one(i: int) -> tuple[int, pa.Table] | None:
            try:
                return i, read_loose(self.storage, keys[i])
            except NotFoundError:
                if not optional:
                    raise
                # Vacuum removed it after our listing: it only does so once the row is
                # verified in data.parquet, so the row is not lost.
                log.info("date file %s vanished during the read (vacuumed)", keys[i])
                return None

        with ThreadPoolExecutor(self.workers) as pool:
            got = [t for t in pool.map(one, indexes) if t is not None]
        return _rows_of(got)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        config: dict[str, Any] = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        if self.threads:
            config["threads"] = self.threads
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        con = duckdb.connect(config=config)
        con.execute("SET enable_progress_bar = false")  # not a connect-time option
        return con

    def _read_bulk(
        self, keys: list[str], optional: bool, since: int | None, summary: tuple[int, int] | None
    ) -> tuple[Rows, FileSummary | None]:
        paths = [str(self.storage.local_path(k)) for k in keys]
        plain = [i for i, p in enumerate(paths) if not (_GLOB_CHARS & set(p))]
        con = self._connect()

        def scan(bulk: list[int]) -> tuple[pa.Table, FileSummary | None]:
            files = [paths[i] for i in bulk]
            found = _empty_summary(len(keys)) if summary is not None else None
            if found is not None and summary is not None and since is not None:
                return self._tail_and_summary(con, files, since, summary, bulk, found), found
            params: dict[str, Any] = {"files": files}
            query = _SCAN
            if since is not None:
                query, params["since"] = query + " WHERE date >= $since", _day(since)
            return con.sql(query, params=params).to_arrow_table(), found

        try:
            try:
                # Optimistic: every file canonical. A legacy file (no `date` column) fails the
                # bind, and only then are the schemas looked at (a footer pass of its own).
                bulk = plain
                table, found = scan(bulk)
            except duckdb.Error:
                bulk = [plain[j] for j in self._canonical(con, [paths[i] for i in plain])]
                table, found = scan(bulk)
        finally:
            con.close()
        rest = sorted(set(range(len(paths))) - set(bulk))
        owner = np.asarray(bulk, dtype=np.int64)[table.column("owner").to_numpy()]
        rows = Rows(table.drop_columns(["owner"]).cast(ROWS_SCHEMA), owner)
        if not rest:
            return rows, found
        other = self._read_each(keys, rest, optional)  # legacy shapes: the one reader
        if found is not None:
            extra = _summary_of(other, len(keys), summary)
            assert extra is not None
            for j in rest:
                found.count[j], found.max_fetched[j] = extra.count[j], extra.max_fetched[j]
                if j in extra.held:
                    found.held[j] = extra.held[j]
        other = _tail_of(other, since)
        rows = Rows(
            pa.concat_tables([rows.table, other.table]), np.concatenate([rows.owner, other.owner])
        )
        return rows, found

    @staticmethod
    def _tail_and_summary(
        con: duckdb.DuckDBPyConnection,
        files: list[str],
        since: int,
        summary: tuple[int, int],
        bulk: list[int],
        found: FileSummary,
    ) -> pa.Table:
        """One scan for both: the rows dated ``since`` or later (aggregated into one list per
        file, then flattened) and each file's summary. Two scans cost twice: each data.parquet
        is one row group, so the date filter cannot skip any decoding."""
        if not files:
            return _empty_rows().add_column(0, "owner", pa.array([], pa.int64()))
        params = {
            "files": files,
            "since": _day(since),
            "upto": _day(summary[0]),
            "d0": _day(summary[1]),
        }
        got = con.sql(_TAIL_SUMMARY, params=params).to_arrow_table()
        owners = got.column("owner").to_numpy()
        for i, n, top, held in zip(
            owners.tolist(),
            got.column("n").to_pylist(),
            got.column("top").to_pylist(),
            got.column("held").to_pylist(),
            strict=True,
        ):
            j = bulk[i]
            found.count[j] = n
            found.max_fetched[j] = NO_DAY if top is None else top
            if held:
                found.held[j] = {day_number(d) for d in held}
        tail = got.column("tail").combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(tail), 0).to_numpy()
        flat = pc.list_flatten(tail)
        columns = {"owner": pa.array(np.repeat(owners, lengths))}
        columns.update({name: flat.field(name) for name in (*COLUMNS, "fetched")})
        return pa.table(columns)

    @staticmethod
    def _canonical(con: duckdb.DuckDBPyConnection, paths: list[str]) -> list[int]:
        """Indexes of the files whose parquet schema is exactly the canonical bronze one."""
        if not paths:
            return []
        query = (
            "SELECT file_name, string_agg(concat_ws(':', name, type, converted_type), ',' "
            "ORDER BY column_id) FROM parquet_schema($files) WHERE type IS NOT NULL "
            "GROUP BY file_name"
        )
        found = dict(con.sql(query, params={"files": paths}).fetchall())
        expected = ",".join(":".join(c for c in col if c) for col in _CANONICAL)
        return [i for i, p in enumerate(paths) if found.get(p) == expected]


def day_array(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("date").cast(pa.int32()).to_numpy(), dtype=np.int64)

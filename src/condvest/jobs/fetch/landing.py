"""The fetch job's write path: per-symbol date files in parallel, quarantine, corporate actions.

Crash tests kill this mid-session with the generic storage-write hook (condvest.faults)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.schema import SPLITS_SCHEMA
from condvest.core.validate import QUARANTINE_SCHEMA
from condvest.sources.base import Split
from condvest.storage import Storage


def by_symbol(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(symbol, its rows sorted by date) for every symbol in ``table`` (zero-copy slices)."""
    if table.num_rows == 0:
        return
    table = table.sort_by([("symbol", "ascending"), ("date", "ascending")])
    symbols = table.column("symbol").to_pylist()
    start = 0
    for i in range(1, len(symbols) + 1):
        if i == len(symbols) or symbols[i] != symbols[start]:
            yield symbols[start], table.slice(start, i - start)
            start = i


def date_file_bytes(table: pa.Table) -> bytes:
    """Parquet for a one-session date file. Uncompressed and without dictionaries: these files
    hold one row, and the zstd/dictionary set-up per column cost ~4x the encode time (5,400
    files a session) while saving nothing; consolidation compresses data.parquet."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none", use_dictionary=False)
    return sink.getvalue()


def write_date_files(
    storage: Storage, session: date, rows: pa.Table, *, workers: int
) -> tuple[list[str], int]:
    """Write ``symbol=<S>/date=<session>.parquet`` for every symbol in ``rows`` (one session,
    canonical schema) with ``workers`` parallel writes. Returns (symbols written, bytes)."""

    def write(item: tuple[str, pa.Table]) -> int:
        symbol, part = item
        data = date_file_bytes(part)
        storage.write_bytes(layout.date_file(symbol, session), data)
        return len(data)

    parts = list(by_symbol(rows))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch-write") as pool:
        sizes = list(pool.map(write, parts))
    return [s for s, _ in parts], sum(sizes)


def restrict(table: pa.Table, symbols: Sequence[str] | None) -> pa.Table:
    """Rows of ``symbols`` only (all rows when None)."""
    if symbols is None or table.num_rows == 0:
        return table
    return table.filter(pc.is_in(table.column("symbol"), pa.array(list(symbols), pa.string())))


def write_quarantine(storage: Storage, day: date, tag: str, tables: Sequence[pa.Table]) -> int:
    """Write rejected rows (reason + raw values) to ``bronze/quarantine/date=<day>/<tag>``."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return 0
    table = pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in parts])
    storage.write_parquet(layout.quarantine_file(day, tag), table)
    return int(table.num_rows)


def write_splits(storage: Storage, splits: Sequence[Split], source: str) -> int:
    """One ``corporate_actions/splits/date=<D>.parquet`` per execution date (the full set seen
    for that date, so a re-run rewrites the same content). Returns bytes written."""
    now = datetime.now(UTC)
    days: dict[date, list[Split]] = {}
    for split in splits:
        days.setdefault(split.execution_date, []).append(split)
    written = 0
    for day, group in sorted(days.items()):
        group = sorted(group, key=lambda s: s.symbol)
        table = pa.table(
            {
                "symbol": [s.symbol for s in group],
                "execution_date": [s.execution_date for s in group],
                "split_from": [s.split_from for s in group],
                "split_to": [s.split_to for s in group],
                "ratio": [s.ratio for s in group],
                "fetched_at": [now] * len(group),
                "source": [source] * len(group),
            },
            schema=SPLITS_SCHEMA,
        )
        written += storage.write_parquet(layout.corporate_actions_file("splits", day), table)
    return written

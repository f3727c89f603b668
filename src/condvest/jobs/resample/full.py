"""The full read of ``condvest resample``: every symbol's rows, every interval's bars.

The lake is read in parts of about ``resample.full_read_rows`` daily rows (whole symbols, in
symbol order; the rows of each symbol come from the consolidation manifest, or are guessed
generously from the file size). Each part is read (one DuckDB scan on disk), turned into numpy
columns, its bars computed for every interval (two intervals at a time: numpy releases the GIL),
and only the bars are kept. Peak memory so follows the part size plus the bars (~75 bytes each,
about 0.8 per daily row), not the whole lake's rows (~200 bytes each while read). A lake that
fits in one part is read exactly as before, in one scan.

Bars never span symbols, so computing them part by part gives the same bars as one pass; the
parts' bars are then put together in symbol order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa

from condvest.core import bars
from condvest.core.bars import WORKING_SCHEMA, BarAlignment, BarOptions
from condvest.core.memory import release_freed_memory
from condvest.errors import StorageError
from condvest.jobs.bronze import SymbolFiles
from condvest.jobs.resample import tail as resample_tail
from condvest.jobs.resample.reader import read_bronze
from condvest.storage.base import Storage

log = logging.getLogger("condvest.resample")

_MIN_BYTES_PER_ROW = 30
"""A row estimate for a data.parquet the manifest does not know: its size over this (real files
hold ~60 bytes per row; guessing more rows than there are only makes the parts smaller)."""


@dataclass
class FullBars:
    """Every interval's bars (sorted by symbol code, start_date) over ``symbols`` (sorted)."""

    symbols: tuple[str, ...]
    bars: dict[int, tuple[pa.Table, np.ndarray]]
    state: dict[str, list[int | None]] = field(default_factory=dict)
    input_rows: int = 0
    files_read: int = 0
    bytes_read: int = 0
    off_calendar_rows: int = 0
    parts: int = 1


def split_listing(
    listing: dict[str, SymbolFiles], known_rows: dict[str, int], budget: int
) -> list[dict[str, SymbolFiles]]:
    """Symbol directories in order, cut into parts of about ``budget`` estimated rows (a
    symbol larger than the budget is a part of its own)."""
    parts: list[dict[str, SymbolFiles]] = []
    current: dict[str, SymbolFiles] = {}
    rows = 0
    for name in sorted(listing):
        files = listing[name]
        size = files.data.size if files.data is not None else 0
        estimate = known_rows.get(name, size // _MIN_BYTES_PER_ROW) + len(files.dates)
        if current and rows + estimate > budget:
            parts.append(current)
            current, rows = {}, 0
        current[name] = files
        rows += estimate
    if current or not parts:
        parts.append(current)
    return parts


def read_and_compute(
    storage: Storage,
    parts: list[dict[str, SymbolFiles]],
    intervals: tuple[int, ...],
    options: Callable[[int], BarOptions],
    alignment: BarAlignment,
    session_days: np.ndarray,
    through: date,
    *,
    workers: int,
    threads: int,
    memory_limit: str,
    on_part: Callable[[], None] = lambda: None,
) -> FullBars:
    """Read ``parts`` one after the other and compute every interval's bars (``on_part``
    after each: progress)."""
    upto = bars.day_number(through)
    done: list[tuple[tuple[str, ...], dict[int, tuple[pa.Table, np.ndarray]]]] = []
    out = FullBars(symbols=(), bars={}, parts=len(parts))
    for i, part in enumerate(parts):
        source = read_bronze(
            storage, part, workers=workers, threads=threads, memory_limit=memory_limit
        )
        daily = bars.daily_arrays(source.table, source.symbols, source.counts)
        out.state.update(resample_tail.bronze_state(source, upto, days=daily.day))
        out.input_rows += source.table.num_rows
        out.files_read += source.files_read
        out.bytes_read += source.bytes_read
        del source  # the numpy copies are all that is needed from here on
        release_freed_memory()  # DuckDB's freed scan buffers (~1 GB for 10 M rows)
        calendar_pos = bars.session_positions(daily.day, session_days)
        out.off_calendar_rows += int(np.count_nonzero(calendar_pos < 0))
        positions = bars.row_numbers(daily.code) if alignment is BarAlignment.ROWS else calendar_pos

        def compute(
            n: int, daily: bars.DailyArrays = daily, positions: np.ndarray = positions
        ) -> tuple[pa.Table, np.ndarray]:
            return bars.compute_bars(daily, session_days, positions, options(n))

        with ThreadPoolExecutor(2) as pool:
            computed = dict(zip(intervals, pool.map(compute, intervals), strict=True))
        done.append((daily.symbols, computed))
        if len(parts) > 1:
            log.info("resample: part %d of %d read (%d symbols)", i + 1, len(parts), len(part))
        del daily, positions, calendar_pos
        release_freed_memory()  # the part's columns: the next part reads into that room
        on_part()
    out.symbols, out.bars = _combine(done, intervals)
    return out


def _combine(
    done: list[tuple[tuple[str, ...], dict[int, tuple[pa.Table, np.ndarray]]]],
    intervals: tuple[int, ...],
) -> tuple[tuple[str, ...], dict[int, tuple[pa.Table, np.ndarray]]]:
    """The parts' bars as one table per interval over all the parts' symbols, in symbol order."""
    if len(done) == 1:
        return done[0]
    symbols = [s for names, _ in done for s in names]
    seen: set[str] = set()
    for name in symbols:
        if name in seen:
            raise StorageError(
                f"symbol {name} has rows in 2 symbol directories",
                hint="keep each symbol's files under bronze/raw_ohlcv/symbol=<SYMBOL>/",
            )
        seen.add(name)
    offsets = np.cumsum([0] + [len(names) for names, _ in done[:-1]])
    # Parts follow the directory order, which is the symbol order unless a directory holds a
    # symbol of another name (allowed, with a warning): then the codes are renumbered.
    rank = np.argsort(np.array(symbols, dtype=object), kind="stable")
    renumber = np.empty(len(symbols), dtype=np.int32)
    renumber[rank] = np.arange(len(symbols), dtype=np.int32)
    in_order = bool(np.all(rank == np.arange(len(symbols))))
    ordered = tuple(symbols[i] for i in rank)
    dictionary = pa.array(ordered, pa.string())
    out: dict[int, tuple[pa.Table, np.ndarray]] = {}
    for n in intervals:
        tables = [part[n][0] for _, part in done]
        codes = np.concatenate(
            [renumber[part[n][1] + off] for (_, part), off in zip(done, offsets, strict=True)]
        )
        # Chunked, not combined: a combined copy of every interval's bars was the peak of a
        # 38 M-row rebuild (the parts' tables are still alive while it is made).
        table = pa.concat_tables([t.drop_columns(["symbol"]) for t in tables])
        for _, part in done:
            del part[n]  # each part's copy goes as soon as it is combined
        if not in_order:
            order = np.argsort(codes, kind="stable")  # bars of a symbol stay in start order
            table, codes = table.take(pa.array(order)), codes[order]
        symbol = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), dictionary)
        out[n] = (table.add_column(0, WORKING_SCHEMA.field("symbol"), symbol), codes)
        del tables, table
    return ordered, out

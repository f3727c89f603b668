"""Build a deterministic, seed-scale benchmark lake (issue 4 item 1; reused by every benchmark).

    python bench/make_lake.py OUT_DIR [--scale 1.0] [--date-files 20] [--seed 1] [--end YYYY-MM-DD]
                              [--date-files-mode pending|merged] [--endpoint-url URL]

At ``--scale 1.0``: ~5,400 symbols with skewed history lengths (about 1% with the full ~60 years /
~15,900 sessions since 1962, the rest 500-4,000 sessions), ~10.8 M daily rows on the real XNYS
calendar, a few random halts (missing sessions), valid OHLC (high >= max(open, close), low <=
min(open, close), prices > 0), vwap/transactions present for ~98% of rows.

Layout (condvest.core.layout): each symbol has a sorted ``data.parquet`` and ``--date-files`` N
``date=`` files for its N most recent sessions. In the default ``pending`` mode those N sessions are
NOT in ``data.parquet`` (fetch landed them, consolidate has not run yet: consolidate has work, and
resample must read them); ``merged`` mode also puts them in ``data.parquet`` (consolidated, not yet
vacuumed; date files are written before ``data.parquet``). The consolidation manifest and fetch-log
entries for the date-file sessions are written through condvest's state API, and the daily
watermark is set to the last session.

OUT_DIR may be a local directory or ``s3://bucket/prefix`` (with ``--endpoint-url`` for an
S3-compatible server); S3 writes go through condvest's Storage.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.calendar import get_calendar
from condvest.core.schema import BRONZE_SCHEMA
from condvest.settings import load_settings
from condvest.state.fetchlog import SessionEntry, advance_watermark, record_session
from condvest.state.manifest import ManifestRow, update_manifest
from condvest.storage import Storage, open_storage

SYMBOLS_AT_SCALE_1 = 5400
FULL_HISTORY_SHARE = 0.01
SOURCE = "bench-synthetic"
RUN_ID = "bench-make-lake"
# Symbols that broke naive readers (hive auto-detection turned `INF` into a float, DESIGN §12).
TRICKY = ["INF", "NAN", "TRUE", "NULL", "1234", "BRK.A"]


def symbol_names(n: int, rng: np.random.Generator) -> list[str]:
    names: set[str] = set(TRICKY[: min(n, len(TRICKY))])
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    while len(names) < n:
        length = int(rng.integers(1, 6))
        names.add("".join(rng.choice(letters, length)))
    return sorted(names)


def history_lengths(n: int, total_sessions: int, rng: np.random.Generator) -> np.ndarray:
    """Skewed like a real market: ~1% full history, the rest 500-4,000 sessions."""
    lengths = (500 + rng.beta(2.0, 3.1, n) * 3500).astype(np.int64)
    n_full = max(1, round(n * FULL_HISTORY_SHARE))
    lengths[rng.choice(n, n_full, replace=False)] = total_sessions
    return np.minimum(lengths, total_sessions)


def build_table(
    symbols: list[str], lengths: np.ndarray, session_days: np.ndarray, rng: np.random.Generator
) -> tuple[pa.Table, np.ndarray]:
    """One table of every row, sorted by (symbol, date); returns it and per-symbol offsets."""
    n_sessions = len(session_days)
    total = int(lengths.sum())
    sym_of_row = np.repeat(np.arange(len(symbols)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos_in_sym = np.arange(total) - np.repeat(starts, lengths)
    day_idx = (n_sessions - np.repeat(lengths, lengths)) + pos_in_sym
    # Halts: ~0.1% of sessions missing (never a symbol's first or last few sessions).
    keep = (rng.random(total) > 0.001) | (pos_in_sym < 1) | (day_idx >= n_sessions - 40)
    sym_of_row, day_idx = sym_of_row[keep], day_idx[keep]
    total = len(sym_of_row)
    counts = np.bincount(sym_of_row, minlength=len(symbols))
    offsets = np.concatenate([[0], np.cumsum(counts)])

    # A random walk of log closes per symbol (cumsum, restarted at each symbol's first row).
    steps = rng.normal(0.0003, 0.02, total)
    start_price = np.exp(rng.uniform(np.log(2.0), np.log(400.0), len(symbols)))
    walk = np.cumsum(steps)
    walk -= np.repeat(walk[offsets[:-1]], counts)
    close = np.repeat(start_price, counts) * np.exp(walk)
    open_ = close * np.exp(rng.normal(0, 0.008, total))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, total)))
    low = np.minimum(open_, close) * (1 - np.minimum(np.abs(rng.normal(0, 0.01, total)), 0.5))
    volume = np.floor(np.exp(rng.normal(12.0, 1.5, total)))
    vwap = (high + low + close) / 3
    vwap_mask = rng.random(total) < 0.02
    transactions = np.maximum(1, (volume / 120).astype(np.int64))
    tx_mask = rng.random(total) < 0.02
    days = session_days[day_idx]
    # Fetched the evening after the session (22:00 UTC).
    fetched = (days.astype(np.int64) * 86_400_000) + 22 * 3_600_000
    names = pa.array(symbols, pa.string())
    table = pa.table(
        {
            "symbol": pa.DictionaryArray.from_arrays(
                pa.array(sym_of_row.astype(np.int32)), names
            ).cast(pa.string()),
            "date": pa.array(days.astype(np.int32), pa.int32()).cast(pa.date32()),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": pa.array(vwap, mask=vwap_mask),
            "transactions": pa.array(transactions, mask=tx_mask),
            "fetched_at": pa.array(fetched, pa.timestamp("ms", tz="UTC")),
            "source": pa.array([SOURCE] * total, pa.string())
            if total < 1
            else pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(total, np.int32)), pa.array([SOURCE])
            ).cast(pa.string()),
        },
        schema=BRONZE_SCHEMA,
    )
    return table, offsets


class Writer:
    """Local: plain file writes (no fsync: bench data, speed matters); S3: condvest's Storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.local = storage.local_path("") if storage.local_path("") is not None else None

    def write(self, key: str, table: pa.Table) -> None:
        if self.local is None:
            self.storage.write_parquet(key, table)
            return
        path = self.local / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")


def write_symbol(
    writer: Writer, symbol: str, rows: pa.Table, n_date: int, mode: str
) -> tuple[int, int]:
    """Date files first, then data.parquet (so in merged mode data.parquet is the newer file)."""
    n_date = min(n_date, rows.num_rows - 1)
    tail_start = rows.num_rows - n_date
    for i in range(tail_start, rows.num_rows):
        one = rows.slice(i, 1)
        writer.write(layout.date_file(symbol, one.column("date")[0].as_py()), one)
    data = rows if mode == "merged" else rows.slice(0, tail_start)
    writer.write(layout.data_file(symbol), data)
    return data.num_rows, n_date


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", help="lake directory or s3://bucket/prefix")
    p.add_argument("--scale", type=float, default=1.0, help="1.0 = ~5,400 symbols, ~10.8 M rows")
    p.add_argument("--date-files", type=int, default=20, help="recent sessions as date= files")
    p.add_argument("--date-files-mode", choices=("pending", "merged"), default="pending")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--end", help="last session (default: latest completed session now)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// target")
    p.add_argument("--workers", type=int, default=min(16, (os.cpu_count() or 2) * 4))
    args = p.parse_args(argv)
    if not 0 <= args.date_files <= 40:
        p.error("--date-files must be between 0 and 40")
    t0 = time.perf_counter()
    cal = get_calendar()
    end = (
        date.fromisoformat(args.end)
        if args.end
        else cal.latest_completed_session(datetime.now(UTC))
    )
    if not cal.is_session(end):
        end = cal.previous_session(end) or end
    sessions = cal.sessions_between(cal.first_session, end)
    epoch = date(1970, 1, 1)
    session_days = np.array([(d - epoch).days for d in sessions], np.int64)
    rng = np.random.default_rng(args.seed)
    n_symbols = max(len(TRICKY), round(SYMBOLS_AT_SCALE_1 * args.scale))
    symbols = symbol_names(n_symbols, rng)
    lengths = history_lengths(n_symbols, len(sessions), rng)
    table, offsets = build_table(symbols, lengths, session_days, rng)
    t_build = time.perf_counter() - t0

    overrides: dict[str, dict[str, object]] = {"lake": {"uri": args.out}}
    if args.endpoint_url:
        overrides["s3"] = {"endpoint_url": args.endpoint_url}
    settings = load_settings(env={}, overrides=overrides)
    storage = open_storage(args.out, settings)
    writer = Writer(storage)

    def one(i: int) -> tuple[int, int]:
        rows = table.slice(int(offsets[i]), int(offsets[i + 1] - offsets[i]))
        return write_symbol(writer, symbols[i], rows, args.date_files, args.date_files_mode)

    with ThreadPoolExecutor(args.workers) as pool:
        written = list(pool.map(one, range(n_symbols)))
    data_rows = sum(w[0] for w in written)
    date_files = sum(w[1] for w in written)

    now = datetime.now(UTC)
    manifest: dict[str, ManifestRow] = {}
    for i, symbol in enumerate(symbols):
        n_data = written[i][0]
        first = table.column("date")[int(offsets[i])].as_py()
        last = table.column("date")[int(offsets[i]) + n_data - 1].as_py()
        manifest[symbol] = ManifestRow(symbol, last, n_data, now, first)
    update_manifest(storage, manifest)
    recent = sessions[-args.date_files :] if args.date_files > 0 else []
    for day in recent:
        # The last 40 sessions are never halted (build_table): every symbol landed each of them.
        landed = symbols
        fetched = datetime(day.year, day.month, day.day, 22, tzinfo=UTC)
        record_session(
            storage,
            SessionEntry(day, "landed", len(landed), RUN_ID, fetched.isoformat(), SOURCE, landed),
        )
    if recent:
        advance_watermark(storage, recent[-1], run_id=RUN_ID)
    elapsed = time.perf_counter() - t0
    print(
        f"lake {storage.uri}: {n_symbols} symbols, {table.num_rows:,} rows "
        f"({data_rows:,} in data.parquet, {date_files:,} date= files, "
        f"mode {args.date_files_mode}), "
        f"sessions {sessions[0]}..{end}, longest history {int(lengths.max()):,} sessions; "
        f"manifest + {len(recent)} fetch-log entries; built in {t_build:.1f} s, "
        f"total {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

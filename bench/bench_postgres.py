"""PostgreSQL sink throughput (prints rows/s; not a test).

    .venv/bin/python bench/bench_postgres.py [--dsn postgresql://postgres@127.0.0.1:5432/test]
                                              [--symbols 5400] [--days 186]

Works in a scratch schema it drops afterwards. Phases: a backfill of symbols x days rows (COPY
into a temp table + INSERT … ON CONFLICT, in batches of 200k rows as the db sync does), the same
backfill repeated (nothing changes), then one daily session of `symbols` rows on top of that
history (rows + watermark in one transaction), and that session repeated.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pyarrow as pa

from condvest.core.schema import BRONZE_SCHEMA
from condvest.jobs.fetch.dbsync import BATCH_ROWS
from condvest.settings import load_settings
from condvest.sinks.postgres import PostgresSink


def make_rows(symbols: int, days: list[date], seed: int = 0) -> pa.Table:
    n = symbols * len(days)
    sym = [f"S{i:05d}" for i in range(symbols)] * len(days)
    day = [d for d in days for _ in range(symbols)]
    # Prices with 2-4 decimals, as Polygon sends them (their text form is what COPY parses).
    base = [round(10.0 + ((i * 7919 + seed) % 10007) / 97.0, 2) for i in range(n)]
    return pa.table(
        {
            "symbol": sym,
            "date": pa.array(day, pa.date32()),
            "open": base,
            "high": [round(b * 1.02, 4) for b in base],
            "low": [round(b * 0.98, 4) for b in base],
            "close": [round(b * 1.001, 4) for b in base],
            "volume": [float(1000 + i % 5000) for i in range(n)],
            "vwap": [round(b * 1.0005, 4) for b in base],
            "transactions": pa.array([i % 900 for i in range(n)], pa.int64()),
            "fetched_at": pa.array(
                [datetime(2026, 11, 25, 22, tzinfo=UTC)] * n, pa.timestamp("ms", tz="UTC")
            ),
            "source": ["bench"] * n,
        },
        schema=BRONZE_SCHEMA,
    )


def timed(label: str, rows: int, fn: object) -> None:
    started = time.perf_counter()
    changed = fn()  # type: ignore[operator]
    took = time.perf_counter() - started
    print(
        f"{label:<38} {rows:>9,} rows {took:7.2f} s {rows / took:>9,.0f} rows/s changed={changed:,}"
    )


def backfill(sink: PostgresSink, table: pa.Table) -> int:
    changed = 0
    for offset in range(0, table.num_rows, BATCH_ROWS):
        changed += sink.upsert_rows(table.slice(offset, BATCH_ROWS))
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--symbols", type=int, default=5400)
    parser.add_argument("--days", type=int, default=186)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        env={}, overrides={"postgres": {"dsn": args.dsn, "schema_name": schema}}
    )
    first = date(2026, 1, 2)
    days = [first + timedelta(days=i) for i in range(args.days)]
    history = make_rows(args.symbols, days)
    session_day = days[-1] + timedelta(days=1)
    session = make_rows(args.symbols, [session_day], seed=1)
    print(f"schema {schema}; history {history.num_rows:,} rows; session {session.num_rows:,} rows")
    sink = PostgresSink.from_settings(settings)
    try:
        sink.init_schema()
        timed(
            "backfill (COPY + upsert, new rows)", history.num_rows, lambda: backfill(sink, history)
        )
        timed("backfill repeated (0 changes)", history.num_rows, lambda: backfill(sink, history))
        timed(
            "one session + watermark (new rows)",
            session.num_rows,
            lambda: sink.upsert_session(session_day, session, run_id="bench"),
        )
        timed(
            "one session repeated (0 changes)",
            session.num_rows,
            lambda: sink.upsert_session(session_day, session, run_id="bench"),
        )
    finally:
        sink.close()
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'drop schema if exists "{schema}" cascade')
        print(f"dropped schema {schema}")


if __name__ == "__main__":
    main()

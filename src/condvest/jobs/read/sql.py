"""``Lake.sql``: one read-only SELECT over the lake's views, run by an in-memory DuckDB.

The views are the Arrow tables the read methods return — ``daily`` (deduplicated as
``Lake.daily``), ``bars_<N>d`` per built interval, ``metadata``, ``splits``, ``dividends``,
``factors`` —
registered only when the query names them, so every read goes through the storage layer (local
disk or S3 alike) and DuckDB itself touches no file. The connection is opened with external
access off and extension auto-install/auto-load off: ``COPY ... TO``, ``ATTACH``, ``INSTALL``,
``LOAD``, ``read_parquet('/etc/...')`` cannot run; and anything but a single SELECT is refused
before DuckDB runs it, with a message naming what was refused."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import duckdb
import pyarrow as pa

from condvest.errors import UsageError
from condvest.jobs.base import JobContext

_ALLOWED = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # the query cannot SET them back
}


def sql_error(exc: duckdb.Error) -> UsageError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"SQL error: {first}")


def view_loaders(ctx: JobContext, intervals: list[int]) -> dict[str, Callable[[], pa.Table]]:
    """View name → the function that reads its table (called only for views a query names)."""
    from condvest.jobs.read.adjust import read_factors
    from condvest.jobs.read.bars import read_bars
    from condvest.jobs.read.tables import read_daily, read_dividends, read_metadata, read_splits

    loaders: dict[str, Callable[[], pa.Table]] = {
        "daily": lambda: read_daily(ctx, None, None, None, None),
        "metadata": lambda: read_metadata(ctx),
        "splits": lambda: read_splits(ctx),
        "factors": lambda: read_factors(ctx),
        "dividends": lambda: read_dividends(ctx),
    }
    for n in intervals:
        loaders[f"bars_{n}d"] = functools.partial(read_bars, ctx, n, None, None, None, False)
    return loaders


def run_sql(query: str, loaders: dict[str, Callable[[], pa.Table]]) -> duckdb.DuckDBPyRelation:
    """The relation of ``query`` (one SELECT) over the views it names."""
    if not query.strip():
        raise UsageError(
            "the query is empty", hint='e.g. condvest sql "SELECT count(*) FROM daily"'
        )
    con = duckdb.connect(":memory:", config=_CONFIG)
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise sql_error(exc) from None
    if len(statements) != 1:
        raise UsageError(
            f"one statement at a time, not {len(statements)}", hint="run each query on its own"
        )
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise UsageError(
            f"the lake is read-only here: {kind.name} statements are refused",
            hint="only SELECT queries run; write files with condvest read --out",
        )
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query)}
    for name, load in loaders.items():
        if name in words:
            con.register(name, load())
    try:
        return con.sql(query)
    except duckdb.Error as exc:
        raise sql_error(exc) from None

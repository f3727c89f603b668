"""Writing a result table (``condvest read``, ``condvest sql``): a rich table of the first rows
and the count, or csv / json / ndjson / parquet. csv and ndjson stream batch by batch, so
``| head`` gets its rows at once and a closed pipe ends the command quietly. ``--out`` writes a
temporary sibling and renames it into place: an existing file is refused unless ``--force``,
and a failed write leaves nothing behind."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from condvest.errors import UsageError

TABLE_ROWS = 20
"""Rows a table on the terminal shows (the count says how many there are)."""
_BATCH_ROWS = 8192


class TableFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    NDJSON = "ndjson"
    PARQUET = "parquet"


def check_out(fmt: TableFormat, out: Path | None, force: bool) -> None:
    """Refused before anything is read: parquet to a terminal, an existing ``--out``."""
    if fmt is TableFormat.PARQUET and out is None:
        raise UsageError("--format parquet needs --out PATH", hint="parquet is not for a terminal")
    if fmt is TableFormat.TABLE and out is not None:
        raise UsageError("--format table is for the terminal", hint="pass --format csv or parquet")
    if out is not None and out.exists() and not force:
        raise UsageError(f"--out {out} exists", hint="pass --force to replace it")
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out} is a directory", hint="name a file")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        for row in batch.to_pylist():
            yield {k: _jsonable(v) for k, v in row.items()}


def _write_text(table: pa.Table, fmt: TableFormat, stream: IO[str]) -> None:
    if fmt is TableFormat.NDJSON:
        for row in _rows(table):
            stream.write(json.dumps(row) + "\n")
    elif fmt is TableFormat.JSON:
        stream.write("[")
        for i, row in enumerate(_rows(table)):
            stream.write(("," if i else "") + "\n " + json.dumps(row))
        stream.write("\n]\n" if table.num_rows else "]\n")
    elif fmt is TableFormat.CSV:
        stream.flush()
        binary = stream.buffer if hasattr(stream, "buffer") else None
        if binary is None:  # pragma: no cover - a text-only stream (tests' StringIO)
            sink = pa.BufferOutputStream()
            pcsv.write_csv(table, sink)
            stream.write(sink.getvalue().to_pybytes().decode())
            return
        options = pcsv.WriteOptions(include_header=True)
        with pcsv.CSVWriter(binary, table.schema, write_options=options) as writer:
            for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
                writer.write_batch(batch)
                binary.flush()


def _table(table: pa.Table, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = table.slice(0, TABLE_ROWS)
    grid = Table(title=title, show_lines=False)
    for name in table.column_names:
        grid.add_column(name, no_wrap=True)
    for row in shown.to_pylist():
        grid.add_row(*("-" if v is None else str(_jsonable(v)) for v in row.values()))
    # a pipe or file gets whole rows, not the 80 columns rich assumes without a terminal
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 250)
    console.print(grid)
    more = f" (first {shown.num_rows} shown)" if table.num_rows > shown.num_rows else ""
    console.print(f"{table.num_rows:,} rows{more}")


def write_table(
    table: pa.Table, fmt: TableFormat, out: Path | None, *, force: bool, title: str
) -> None:
    """``table`` to stdout, or to ``out`` (a temporary sibling renamed into place)."""
    if out is None:
        try:
            if fmt is TableFormat.TABLE:
                _table(table, title)
            else:
                _write_text(table, fmt, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head` closed the pipe: nothing more is wanted
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return
    check_out(fmt, out, force)
    temp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if fmt is TableFormat.PARQUET:
            pq.write_table(table, temp, compression="zstd")
        elif fmt is TableFormat.CSV:
            pcsv.write_csv(table, temp)
        else:
            with temp.open("w", encoding="utf-8") as stream:
                _write_text(table, fmt, stream)
        os.replace(temp, out)
    except OSError as exc:
        raise UsageError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    sys.stderr.write(f"wrote {table.num_rows:,} rows to {out}\n")

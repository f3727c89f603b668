"""One output interface, two renderers: a rich table on a terminal, one JSON object with
``--output json``. Results go to stdout; nothing else does."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from condvest.logging import redact


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        shown = ", ".join(_scalar(v) for v in value[:12])
        return shown + (f" … (+{len(value) - 12})" if len(value) > 12 else "")
    return str(value)


def render(result: dict[str, Any], fmt: OutputFormat, *, title: str | None = None) -> None:
    """Print ``result`` (a job's ``to_dict()``) to stdout in ``fmt``."""
    if fmt is OutputFormat.JSON:
        sys.stdout.write(redact(json.dumps(result, default=str)) + "\n")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    main = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    main.add_column("key", style="bold")
    main.add_column("value", overflow="fold")
    nested: list[tuple[str, Any]] = []
    for key, value in result.items():
        if isinstance(value, dict) or (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            nested.append((key, value))
        else:
            main.add_row(key, redact(_scalar(value)))
    console.print(main)
    for key, value in nested:
        console.print()
        if isinstance(value, dict):
            rows = [(k, v) for k, v in value.items()]
            if rows and all(isinstance(v, dict) for _, v in rows):
                columns = sorted(
                    {c for _, v in rows for c in v},
                    key=lambda c: list(rows[0][1]).index(c) if c in rows[0][1] else 99,
                )
                table = Table(title=key, title_justify="left")
                table.add_column("")
                for c in columns:
                    table.add_column(c)
                for k, v in rows:
                    table.add_row(str(k), *(redact(_scalar(v.get(c))) for c in columns))
            else:
                table = Table(title=key, show_header=False, title_justify="left", box=None)
                table.add_column("key", style="bold")
                table.add_column("value", overflow="fold")
                for k, v in rows:
                    table.add_row(str(k), redact(_scalar(v)))
            console.print(table)
        else:
            columns = list(dict.fromkeys(c for row in value for c in row))
            table = Table(title=key, title_justify="left")
            for c in columns:
                table.add_column(c)
            for row in value[:200]:
                table.add_row(*(redact(_scalar(row.get(c))) for c in columns))
            if len(value) > 200:
                table.caption = f"{len(value) - 200} more rows; use --output json for all"
            console.print(table)

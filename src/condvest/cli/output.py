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
    OPENMETRICS = "openmetrics"
    """Prometheus text exposition of status's health figures (status only, docs/metrics.md)."""


OPENMETRICS_COMMANDS = frozenset({"status"})


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
        if not value:
            return "-"
        # Sentences (problems) read best one per line; short items (dates) on one line.
        sep = "\n" if any(isinstance(v, str) and " " in v for v in value) else ", "
        shown = sep.join(_scalar(v) for v in value[:12])
        return shown + (f"{sep}… (+{len(value) - 12})" if len(value) > 12 else "")
    if isinstance(value, dict):
        # A mapping inside a section (status's missing_sessions.reasons): one "key: value" per
        # line, never Python's repr.
        if not value:
            return "-"
        lines = [f"{k}: {_scalar(v)}" for k, v in list(value.items())[:12]]
        more = f"\n… (+{len(value) - 12})" if len(value) > 12 else ""
        return "\n".join(lines) + more
    return str(value)


def _is_nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _is_empty_section(value: Any) -> bool:
    """A section with nothing to show: ``{}``, or a dict whose every value is an empty dict (a
    successful fetch's ``failed``). It prints nothing — not even its name — in text; JSON keeps
    it."""
    return isinstance(value, dict) and all(isinstance(v, dict) and not v for v in value.values())


def render(
    result: dict[str, Any],
    fmt: OutputFormat,
    *,
    title: str | None = None,
    text_hidden: frozenset[str] = frozenset(),
) -> None:
    """Print ``result`` (a job's ``to_dict()``) to stdout in ``fmt``.

    ``text_hidden`` keys are left out of the text rendering only (too wide for a terminal;
    JSON always carries everything)."""
    if fmt is OutputFormat.OPENMETRICS:  # refused before the command runs (global_options)
        raise ValueError("--output openmetrics renders status's health figures only")
    if fmt is OutputFormat.JSON:
        sys.stdout.write(redact(json.dumps(result, default=str)) + "\n")
        sys.stdout.flush()
        return
    result = {k: v for k, v in result.items() if k not in text_hidden}
    from rich.console import Console
    from rich.padding import Padding

    # Piped or logged output (cron, Batch) is not cut at 80 columns; tables only take the
    # width their content needs.
    width = None if sys.stdout.isatty() else 200
    console = Console(highlight=False, soft_wrap=False, width=width)
    if title:
        console.print(title, style="bold")
    main = _key_value_table()
    for key, value in result.items():
        if not _is_nested(value):
            main.add_row(key, redact(_scalar(value)))
    console.print(main)
    for key, value in result.items():
        if _is_nested(value) and not _is_empty_section(value):
            console.print()
            # The section name is a line of its own: as a table title it would be wrapped to
            # the width of a narrow table ("missing_sessi / ons").
            console.print(key, style="bold")
            console.print(Padding(_nested_table(value), (0, 0, 0, 2), expand=False))


def _key_value_table() -> Any:
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    return table


def _nested_table(value: dict[str, Any] | list[dict[str, Any]]) -> Any:
    from rich.table import Table

    if isinstance(value, list):
        columns = list(dict.fromkeys(c for row in value for c in row))
        table = Table()
        for c in columns:
            table.add_column(c)
        for row in value[:200]:
            table.add_row(*(redact(_scalar(row.get(c))) for c in columns))
        if len(value) > 200:
            table.caption = f"{len(value) - 200} more rows; use --output json for all"
        return table
    rows = list(value.items())
    if rows and all(isinstance(v, dict) for _, v in rows):
        first = list(rows[0][1])
        columns = sorted(
            {c for _, v in rows for c in v},
            key=lambda c: first.index(c) if c in first else len(first),
        )
        table = Table()
        table.add_column("", no_wrap=True)
        for c in columns:
            table.add_column(c)
        for k, v in rows:
            table.add_row(str(k), *(redact(_scalar(v.get(c))) for c in columns))
        return table
    table = _key_value_table()
    for k, v in rows:
        table.add_row(str(k), redact(_scalar(v)))
    return table

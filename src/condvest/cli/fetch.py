"""`condvest fetch` (not implemented yet: see the project's open issues)."""

from __future__ import annotations

import typer

from condvest.cli.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("fetch", help=HELP)
    def _fetch() -> None:
        not_implemented("fetch")


HELP = "Fetch daily OHLCV for missing sessions, history, splits and metadata (not implemented yet)."

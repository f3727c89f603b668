"""`condvest consolidate` (not implemented yet: see the project's open issues)."""

from __future__ import annotations

import typer

from condvest.cli.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("consolidate", help=HELP)
    def _consolidate() -> None:
        not_implemented("consolidate")


HELP = "Merge each symbol's date= files into its data.parquet, then clean up (not implemented yet)."

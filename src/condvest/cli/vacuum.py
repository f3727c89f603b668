"""`condvest vacuum` (not implemented yet: see the project's open issues)."""

from __future__ import annotations

import typer

from condvest.cli.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("vacuum", help=HELP)
    def _vacuum() -> None:
        not_implemented("vacuum")


HELP = "Delete date= files provably merged and older than the retention (not implemented yet)."

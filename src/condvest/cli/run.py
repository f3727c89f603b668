"""`condvest run` (not implemented yet: see the project's open issues)."""

from __future__ import annotations

import typer

from condvest.cli.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("run", help=HELP)
    def _run() -> None:
        not_implemented("run")


HELP = "The daily pipeline: fetch, consolidate, resample (not implemented yet)."

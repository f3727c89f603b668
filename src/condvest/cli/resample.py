"""`condvest resample` (not implemented yet: see the project's open issues)."""

from __future__ import annotations

import typer

from condvest.cli.common import not_implemented


def register(app: typer.Typer) -> None:
    @app.command("resample", help=HELP)
    def _resample() -> None:
        not_implemented("resample")


HELP = "Build N-session bars into silver (not implemented yet)."

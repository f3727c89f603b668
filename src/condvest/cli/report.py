"""``condvest report``: the lake's health as one self-contained HTML page (condvest.report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from condvest.cli.common import emit, state_of
from condvest.report import (
    RUNS_DEFAULT,
    SESSIONS_DEFAULT,
    check_out,
    require_matplotlib,
    write_page,
)

HELP = (
    "Write the lake's health as one self-contained HTML page (inline SVG charts, no network): "
    "symbols landed and rows quarantined per session, stage durations, silver coverage, "
    "freshness, open problems. Needs the report extra: pip install 'condvest[report]'."
)


def register(app: typer.Typer) -> None:
    @app.command("report", help=HELP)
    def report(
        ctx: typer.Context,
        out: Annotated[
            Path, typer.Option("--out", help="The HTML file to write (default report.html).")
        ] = Path("report.html"),
        force: Annotated[
            bool, typer.Option("--force", help="Overwrite --out when it exists.")
        ] = False,
        sessions: Annotated[
            int, typer.Option("--sessions", help="How many recent sessions the charts show.")
        ] = SESSIONS_DEFAULT,
        runs: Annotated[
            int, typer.Option("--runs", help="How many recent runs of each stage to chart.")
        ] = RUNS_DEFAULT,
    ) -> None:
        state = state_of(ctx)
        require_matplotlib()  # before any lake read: the refusal costs nothing
        check_out(out, force=force)  # before the lake is read, too
        with state.open() as lake:
            result = lake.report(sessions=sessions, runs=runs)
        write_page(out, result.html, force=force)
        emit(state, {"out": str(out), **result.to_dict()}, title="condvest report")

"""``condvest report``: the lake's health as one self-contained HTML page — symbols landed and
rows quarantined per session (from the fetch log), stage durations (from the run records), silver
coverage, freshness and open problems (from ``status``). Charts are matplotlib SVG inlined in the
page, so it opens anywhere with no network; every string from the lake goes through
:func:`html.escape`.

matplotlib is the optional extra ``report`` (``pip install 'condvest[report]'``): with numpy,
pillow and fonttools it is ~40 MB that the Lambda/Batch image, which never draws, does not need."""

from __future__ import annotations

import dataclasses
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from condvest.errors import CorruptFileError, UsageError
from condvest.jobs.base import JobContext
from condvest.jobs.status import StatusResult, run_status
from condvest.state.fetchlog import landed_sessions, read_session
from condvest.state.runs import STAGES, recent_runs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SESSIONS_DEFAULT = 60
RUNS_DEFAULT = 30
INSTALL_HINT = "install the report extra: pip install 'condvest[report]'"

SessionState = Literal["landed", "empty", "missing", "unreadable"]


@dataclass(frozen=True)
class SessionPoint:
    """One session of the window: what its fetch-log entry says (missing: no entry)."""

    session: date
    state: SessionState
    symbols: int = 0
    rows: int = 0
    quarantined: int = 0


@dataclass(frozen=True)
class RunPoint:
    stage: str
    started_at: datetime
    duration_s: float | None
    outcome: str


@dataclass(frozen=True)
class HealthReport:
    """The page and the figures it was drawn from (``to_dict`` is what the CLI prints)."""

    lake: str
    generated_at: str
    html: str
    status: StatusResult
    sessions: list[SessionPoint] = field(default_factory=list)
    runs: list[RunPoint] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.status.latest_landed_session is None and not self.runs

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake": self.lake,
            "generated_at": self.generated_at,
            "healthy": self.status.healthy,
            "problems": len(self.status.problems),
            "sessions_shown": len(self.sessions),
            "sessions_missing": sum(1 for s in self.sessions if s.state == "missing"),
            "runs_shown": len(self.runs),
            "empty_lake": self.empty,
            "bytes": len(self.html.encode()),
        }


def require_matplotlib() -> None:
    """UsageError (exit 2) naming the install command when matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("condvest report needs matplotlib", hint=INSTALL_HINT) from None


def build_report(
    ctx: JobContext, *, sessions: int = SESSIONS_DEFAULT, runs: int = RUNS_DEFAULT
) -> HealthReport:
    """Gather the figures and render the page. Reads only."""
    if sessions < 1:
        raise UsageError(f"--sessions {sessions} must be at least 1")
    if runs < 1:
        raise UsageError(f"--runs {runs} must be at least 1")
    require_matplotlib()
    status = run_status(ctx)
    points = session_window(ctx, status, sessions)
    run_points = [
        _run_point(record.stage, record.started_at, record.ended_at, record.outcome)
        for stage in STAGES
        for record in recent_runs(ctx.storage, stage, runs)
    ]
    report = HealthReport(
        lake=status.lake,
        generated_at=status.generated_at,
        html="",
        status=status,
        sessions=points,
        runs=[p for p in run_points if p is not None],
    )
    return dataclasses.replace(report, html=render_html(report))


def session_window(ctx: JobContext, status: StatusResult, count: int) -> list[SessionPoint]:
    """The last ``count`` sessions through the latest completed one, from the first landed
    session on (earlier sessions are before the lake's history, not gaps)."""
    landed = landed_sessions(ctx.storage)
    if not landed or status.latest_completed_session is None:
        return []
    end = date.fromisoformat(status.latest_completed_session)
    # ~252 sessions a year: 2 calendar days per session and two weeks reach back far enough.
    start = max(min(landed), end - timedelta(days=2 * count + 14))
    window = ctx.calendar.sessions_between(start, end)[-count:]
    out = []
    for day in window:
        if day not in landed:
            out.append(SessionPoint(day, "missing"))
            continue
        try:
            entry = read_session(ctx.storage, day)
        except CorruptFileError:
            out.append(SessionPoint(day, "unreadable"))
            continue
        if entry is None:  # deleted since the listing
            out.append(SessionPoint(day, "missing"))
            continue
        out.append(
            SessionPoint(
                day,
                "landed" if entry.status == "landed" else "empty",
                symbols=len(entry.symbols),
                rows=entry.rows,
                quarantined=entry.quarantined,
            )
        )
    return out


def _run_point(stage: str, started: str, ended: str | None, outcome: str) -> RunPoint | None:
    try:
        start = datetime.fromisoformat(started)
        end = datetime.fromisoformat(ended) if ended else None
    except (TypeError, ValueError):
        return None  # a record with a hand-edited time is not worth a crash here
    duration = (end - start).total_seconds() if end else None
    return RunPoint(stage, start, duration, outcome)


def check_out(path: Path, *, force: bool) -> None:
    """UsageError (exit 2) when ``path`` is a folder, or exists and ``force`` is off."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory", hint="name a file, e.g. report.html")
    if path.exists() and not force:
        raise UsageError(f"--out {path} exists", hint="pass --force to overwrite it")


def write_page(path: Path, page: str, *, force: bool) -> None:
    """Write the page whole (temp file, then rename); refused as :func:`check_out` says."""
    check_out(path, force=force)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except FileNotFoundError:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--out {path}: its folder does not exist") from None


# -- charts ------------------------------------------------------------------------------------
MISSING_COLOUR = "#d62728"
LANDED_COLOUR = "#1f77b4"
QUARANTINE_COLOUR = "#ff7f0e"
OTHER_COLOUR = "#bcbd22"


def _svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no DOCTYPE)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _figure(height_in: float = 2.6) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(11, height_in), dpi=100)


def _with_rc(name: str) -> Any:
    """Text as SVG text (smaller, selectable); each figure's ids (clip paths) salted apart, so
    that two SVGs inlined in one page cannot share an id with different definitions."""
    import matplotlib

    return matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": f"condvest-{name}", "font.size": 9}
    )


def _session_ticks(points: Sequence[SessionPoint]) -> tuple[list[int], list[str]]:
    step = max(1, len(points) // 12)
    positions = list(range(0, len(points), step))
    return positions, [points[i].session.isoformat() for i in positions]


def sessions_chart(points: Sequence[SessionPoint]) -> str:
    """Symbols landed per session; a missing or unreadable session is a full-height red bar."""
    from matplotlib.ticker import MaxNLocator

    with _with_rc("sessions"):
        fig = _figure()
        ax = fig.add_subplot()
        top = max([p.symbols for p in points] + [1])
        xs = range(len(points))
        ax.bar(
            xs,
            [p.symbols for p in points],
            color=[LANDED_COLOUR if p.state == "landed" else OTHER_COLOUR for p in points],
            width=0.8,
            label="symbols landed",
        )
        gaps = [i for i, p in enumerate(points) if p.state in ("missing", "unreadable")]
        if gaps:
            ax.bar(
                gaps,
                [top] * len(gaps),
                color=MISSING_COLOUR,
                alpha=0.35,
                width=0.8,
                hatch="//",
                label="missing session",
            )
        positions, labels = _session_ticks(points)
        ax.set_xticks(positions, labels, rotation=30, ha="right")
        ax.set_ylabel("symbols")
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, ncols=2)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="y", alpha=0.3)
        return _svg(fig)


def quarantine_chart(points: Sequence[SessionPoint]) -> str:
    from matplotlib.ticker import MaxNLocator

    with _with_rc("quarantine"):
        fig = _figure(2.2)
        ax = fig.add_subplot()
        values = [p.quarantined for p in points]
        ax.bar(range(len(points)), values, color=QUARANTINE_COLOUR, width=0.8)
        if not any(values):
            ax.text(
                0.5, 0.5, "no rows quarantined", transform=ax.transAxes, ha="center", va="center"
            )
            ax.set_ylim(0, 1)
        positions, labels = _session_ticks(points)
        ax.set_xticks(positions, labels, rotation=30, ha="right")
        ax.set_ylabel("rows quarantined")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.6, len(points) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        return _svg(fig)


def durations_chart(points: Sequence[RunPoint]) -> str:
    """Each stage's run durations over time; runs that did not succeed are red crosses."""
    from matplotlib import dates

    mdates: Any = dates  # untyped module: its three calls below are checked by the tests

    with _with_rc("durations"):
        fig = _figure(3.0)
        ax = fig.add_subplot()
        for stage in STAGES:
            mine = [(p, p.duration_s) for p in points if p.stage == stage]
            done = [(mdates.date2num(p.started_at), d, p.outcome) for p, d in mine if d is not None]
            if not done:
                continue
            ax.plot(
                [x for x, _, _ in done],
                [d for _, d, _ in done],
                marker="o",
                markersize=3,
                label=stage,
            )
            failed = [(x, d) for x, d, outcome in done if outcome != "success"]
            if failed:
                ax.plot(
                    [x for x, _ in failed],
                    [d for _, d in failed],
                    linestyle="none",
                    marker="x",
                    markersize=8,
                    color=MISSING_COLOUR,
                )
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.set_ylim(bottom=0)
        ax.set_ylabel("duration (s)")
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), frameon=False, ncols=len(STAGES))
        ax.grid(alpha=0.3)
        return _svg(fig)


# -- HTML --------------------------------------------------------------------------------------
def _e(value: object) -> str:
    return html.escape("—" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _freshness(status: StatusResult) -> str:
    rows = [
        ("latest completed session", status.latest_completed_session),
        ("latest landed session", status.latest_landed_session),
        ("sessions behind", status.sessions_behind),
        ("watermark", status.watermark),
        ("missing sessions", status.missing_sessions.get("count")),
        ("pending date files", status.bronze.get("pending_date_files")),
        ("symbols in bronze", status.bronze.get("symbols")),
        ("quarantined rows (all)", status.quarantine.get("rows")),
    ]
    runs = [
        (stage, view.get("outcome"), view.get("ended_at"), view.get("last_success_at"))
        for stage, view in status.runs.items()
    ]
    return (
        _table(("figure", "value"), rows)
        + "<h3>Last runs</h3>"
        + _table(("stage", "outcome", "ended", "last success"), runs)
    )


def _problems(status: StatusResult) -> str:
    if not status.problems:
        return '<p class="ok">No open problems.</p>'
    return "<ul>" + "".join(f"<li>{_e(p)}</li>" for p in status.problems) + "</ul>"


def _silver(status: StatusResult) -> str:
    if not status.silver:
        return "<p>No silver interval is configured or built.</p>"
    rows = [
        (
            name,
            view.get("months"),
            view.get("first_month"),
            view.get("last_month"),
            view.get("through"),
            view.get("lag_sessions"),
            "yes" if view.get("configured") else "no",
        )
        for name, view in status.silver.items()
    ]
    return (
        _table(
            ("interval", "months", "first month", "last month", "through", "lag", "configured"),
            rows,
        )
        + '<p class="meta">lag: completed sessions bronze holds that the interval does not.</p>'
    )


def _sessions_sections(report: HealthReport) -> str:
    points = report.sessions
    if not points:
        none = "<p>No session has landed yet.</p>"
        return _section("sessions", "Symbols landed per session", none) + _section(
            "quarantine", "Quarantined rows per session", none
        )
    missing = [p.session.isoformat() for p in points if p.state == "missing"]
    gap_note = (
        f'<p class="bad">{len(missing)} missing: {_e(", ".join(missing[:10]))}'
        f"{' …' if len(missing) > 10 else ''}</p>"
        if missing
        else '<p class="ok">No gaps.</p>'
    )
    span = f"<p>The last {len(points)} sessions, {points[0].session} to {points[-1].session}.</p>"
    return _section(
        "sessions", "Symbols landed per session", span + gap_note + sessions_chart(points)
    ) + _section("quarantine", "Quarantined rows per session", quarantine_chart(points))


def _durations(report: HealthReport) -> str:
    if not any(p.duration_s is not None for p in report.runs):
        return "<p>No finished run is recorded yet.</p>"
    return durations_chart(report.runs)


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:1140px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px}table{border-collapse:collapse;margin:4px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f4f4f4}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.healthy{background:#2ca02c}.unhealthy{background:#d62728}.ok{color:#2ca02c}.bad{color:#d62728}
.empty{background:#fff3cd;border:1px solid #e0c060;padding:10px;border-radius:4px}
.meta{color:#666}svg{max-width:100%;height:auto}
"""


def render_html(report: HealthReport) -> str:
    """The whole page: no script, no external reference."""
    status = report.status
    badge = (
        '<span class="badge healthy">healthy</span>'
        if status.healthy
        else f'<span class="badge unhealthy">{len(status.problems)} problem(s)</span>'
    )
    empty = (
        '<p class="empty">This lake holds no data yet: run <code>condvest fetch</code> '
        "(or <code>condvest run</code>).</p>"
        if report.empty
        else ""
    )
    body = "".join(
        (
            f"<h1>condvest health report {badge}</h1>",
            f'<p class="meta">{_e(report.lake)} · generated {_e(report.generated_at)}</p>',
            empty,
            _section("problems", "Open problems", _problems(status)),
            _section("freshness", "Freshness now", _freshness(status)),
            _sessions_sections(report),
            _section("durations", "Stage durations over the last runs", _durations(report)),
            _section("silver", "Silver coverage per interval", _silver(status)),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>condvest health report: {_e(report.lake)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )

"""``condvest status``: one health view of the lake (docs/design.md §2). Reads only; never
writes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from condvest.core import layout
from condvest.errors import CondvestError, CorruptFileError
from condvest.jobs.base import JobContext, JobResult, clock_skew, to_jsonable
from condvest.jobs.bronze import list_bronze
from condvest.jobs.fetch import suspicious_problems
from condvest.jobs.status.problems import Problem, failing, locks_view, runs_view
from condvest.state.fetchlog import (
    empty_entries,
    landed_sessions,
    read_failures,
    read_watermark,
)
from condvest.state.manifest import read_manifest
from condvest.state.runs import STAGES

MISSING_SHOWN = 100
log = logging.getLogger("condvest.status")


@dataclass(frozen=True)
class StatusResult(JobResult):
    lake: str = ""
    generated_at: str = ""
    latest_completed_session: str | None = None
    latest_landed_session: str | None = None
    sessions_behind: int | None = None
    """Completed sessions after the latest landed one (None: nothing landed yet)."""
    watermark: str | None = None
    stale: bool = True
    silver_stale: bool = False
    """A built silver interval's checkpoint is behind the latest landed session."""
    healthy: bool = False
    problems: list[str] = field(default_factory=list)
    """Every problem's message (``problem_list`` has each one's kind and whether it fails
    ``--check``); ``healthy`` is true when there is none."""
    problem_list: list[Problem] = field(default_factory=list)
    bronze: dict[str, Any] = field(default_factory=dict)
    missing_sessions: dict[str, Any] = field(default_factory=dict)
    silver: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)
    locks: list[dict[str, Any]] = field(default_factory=list)
    quarantine: dict[str, Any] = field(default_factory=dict)
    database: dict[str, Any] = field(default_factory=dict)
    suspicious_splits: list[dict[str, Any]] = field(default_factory=list)
    """Splits whose restatement showed another ratio (symbol, date, expected, observed)."""


def _bronze_summary(ctx: JobContext) -> tuple[dict[str, Any], date | None]:
    bronze = list_bronze(ctx.storage)
    manifest_error = None
    try:
        manifest, _ = read_manifest(ctx.storage)
    except CorruptFileError as exc:  # a problem to show, not a reason to show nothing
        manifest, manifest_error = {}, str(exc)
    data_files = date_files = pending_files = 0
    pending_symbols: set[str] = set()
    rows = 0
    latest_landed: date | None = None
    first: date | None = None
    last: date | None = None
    for symbol, files in bronze.symbols.items():
        entry = manifest.get(symbol)
        if entry is not None:
            rows += entry.row_count
            if entry.last_consolidated_date and (
                last is None or entry.last_consolidated_date > last
            ):
                last = entry.last_consolidated_date
            if entry.first_date and (first is None or entry.first_date < first):
                first = entry.first_date
        data_files += files.data is not None
        for day, obj in files.dates.items():
            date_files += 1
            latest_landed = day if latest_landed is None or day > latest_landed else latest_landed
            merged = (
                entry is not None
                and entry.last_updated is not None
                and obj.mtime <= entry.last_updated
                and entry.last_consolidated_date is not None
                and day <= entry.last_consolidated_date
            )
            if not merged:
                pending_files += 1
                pending_symbols.add(symbol)
                rows += 1
                first = day if first is None or day < first else first
                last = day if last is None or day > last else last
    summary: dict[str, Any] = {
        "symbols": len(bronze.symbols),
        "consolidated_symbols": sum(1 for s in bronze.symbols if s in manifest),
        "rows": rows,
        "first_date": first,
        "last_date": last,
        "data_files": data_files,
        "date_files": date_files,
        "pending_date_files": pending_files,
        "pending_symbols": len(pending_symbols),
        "temp_files": bronze.temp_files,
        "temp_files_elsewhere": _temp_files_elsewhere(ctx),
        "bytes": bronze.bytes,
    }
    if manifest_error:
        summary["manifest_error"] = manifest_error
    return summary, latest_landed


_OTHER_PREFIXES = (
    layout.SILVER + "/",
    layout.METADATA + "/",
    layout.BRONZE_META + "/",
    layout.BRONZE_ACTIONS + "/",
    layout.BRONZE_QUARANTINE + "/",
)


def _temp_files_elsewhere(ctx: JobContext) -> int:
    """Temp files of interrupted writes outside bronze/raw_ohlcv: a process killed while writing
    a silver month file, the manifest or a fetch-log entry leaves one there too (vacuum, which
    lists the whole lake, removes them)."""
    return sum(
        1
        for prefix in _OTHER_PREFIXES
        for obj in ctx.storage.list_objects(prefix)
        if layout.is_temp_key(obj.key)
    )


def _silver_summary(ctx: JobContext) -> dict[str, Any]:
    from condvest.jobs.resample import recorded  # resample's DuckDB stays out of status's import

    out: dict[str, Any] = {}
    present = {
        int(name[len("silver_") : -1])
        for name in ctx.storage.list_dirs(layout.SILVER + "/")
        if name.startswith("silver_") and name.endswith("d") and name[7:-1].isdigit()
    }
    for interval in sorted(set(ctx.settings.resample.intervals) | present):
        files = [
            o
            for o in ctx.storage.list_objects(layout.silver_prefix(interval))
            if not layout.is_temp_key(o.key)
        ]
        months = sorted(
            f"{p[1]:04d}-{p[2]:02d}"
            for o in files
            if (p := layout.parse_silver_file(o.key)) is not None
        )
        try:
            through = recorded(ctx.storage, interval, "through")
        except CondvestError:
            through = None  # unreadable: resample names it when it runs
        out[f"{interval}d"] = {
            "months": len(months),
            "first_month": months[0] if months else None,
            "last_month": months[-1] if months else None,
            "bytes": sum(o.size for o in files),
            "through": through,
            "configured": interval in ctx.settings.resample.intervals,
        }
    return out


def _lock_names(ctx: JobContext) -> list[str]:
    """The locks present, stages first (in STAGES order), then the locks of stages run in parts
    (consolidate-shard-3-of-8): one listing, and no read of a lock that is not there."""
    found = {
        name
        for obj in ctx.storage.list_objects(layout.LOCKS_PREFIX)
        if not layout.is_temp_key(obj.key)
        and obj.key.endswith(".json")
        and "/" not in (name := obj.key[len(layout.LOCKS_PREFIX) : -len(".json")])
    }
    return [s for s in STAGES if s in found] + sorted(found - set(STAGES))


def _quarantine_summary(ctx: JobContext) -> dict[str, Any]:
    files = [
        o
        for o in ctx.storage.list_objects(layout.BRONZE_QUARANTINE + "/")
        if o.key.endswith(".parquet")
    ]
    rows = 0
    unreadable = 0
    for obj in files:
        try:
            import pyarrow.parquet as pq

            path = ctx.storage.local_path(obj.key)
            if path is not None:
                rows += pq.ParquetFile(path).metadata.num_rows
            else:
                rows += ctx.storage.read_parquet(obj.key, columns=["reason"]).num_rows
        except (CondvestError, OSError, ValueError):
            unreadable += 1
    return {"files": len(files), "rows": rows, "unreadable_files": unreadable}


def _database_summary(
    ctx: JobContext, lake_mark: date | None
) -> tuple[dict[str, Any], list[Problem]]:
    """The PostgreSQL cache's freshness beside the lake's (``{"enabled": false}`` when off).

    An unreachable database is a problem in the view, not a crash of ``status`` (creating the
    tables is a stage of its own: :data:`condvest.jobs.status.INIT_DB`)."""
    sink = ctx.sink()
    if sink is None:
        return {"enabled": False}, []
    out: dict[str, Any] = {"enabled": True, "schema": ctx.settings.postgres.schema_name}
    try:
        out["target"] = sink.where
        fresh = sink.freshness()
        runs = sink.last_runs()
    except CondvestError as exc:
        out["error"] = str(exc)
        return out, [Problem("database", f"the PostgreSQL cache cannot be read: {exc}", True)]
    behind = lake_mark is not None and (fresh.watermark is None or fresh.watermark < lake_mark)
    out.update(
        schema_version=fresh.schema_version,
        schema_latest=fresh.latest_version,
        watermark=fresh.watermark.isoformat() if fresh.watermark else None,
        max_date=fresh.max_date.isoformat() if fresh.max_date else None,
        rows=fresh.rows,
        behind_lake=behind,
        runs=runs,
        error=None,
    )
    problems = []
    if fresh.schema_version < fresh.latest_version:
        message = (
            f"the PostgreSQL tables are at schema version {fresh.schema_version} of "
            f"{fresh.latest_version}: run condvest status --init-db"
        )
        problems.append(Problem("database-schema", message))
    if behind and lake_mark is not None:
        shown = fresh.watermark.isoformat() if fresh.watermark else "unset"
        message = (
            f"the database watermark ({shown}) is behind the lake's ({lake_mark.isoformat()}): "
            "run condvest fetch --sync-db"
        )
        problems.append(Problem("database-behind", message, True))
    return out, problems


def run_status(ctx: JobContext) -> StatusResult:
    """Gather the health view. Works on an empty (or absent) lake. Read-only."""
    started = time.monotonic()
    problems: list[Problem] = []
    latest_completed = ctx.latest_completed_session()
    bronze, latest_file = _bronze_summary(ctx)
    sessions = landed_sessions(ctx.storage)
    watermark = read_watermark(ctx.storage)
    latest_landed = max(sessions) if sessions else latest_file
    if bronze["last_date"] and (latest_landed is None or bronze["last_date"] > latest_landed):
        latest_landed = bronze["last_date"]
    missing: list[date] = []
    failures = read_failures(ctx.storage)
    known = sessions | {d for d in failures if d <= latest_completed}
    if known:
        window = ctx.calendar.sessions_between(min(known), latest_completed)
        missing = [d for d in window if d not in sessions]
    stale = latest_landed is None or latest_landed < latest_completed
    problems += _lake_problems(ctx, bronze, latest_landed, latest_completed, missing, failures)
    silver = _silver_summary(ctx)
    # What silver should cover: the newest completed session bronze holds.
    due = min(latest_landed, latest_completed) if latest_landed is not None else None
    silver_stale, silver_problems = _silver_problems(ctx, silver, due)
    problems += silver_problems
    run_view, run_problems = runs_view(ctx)
    problems.extend(run_problems)
    locks, lock_problems = locks_view(ctx, _lock_names(ctx))
    problems.extend(lock_problems)
    temps = bronze["temp_files"] + bronze["temp_files_elsewhere"]
    if temps:
        message = f"{temps} temporary file(s) from interrupted writes: condvest vacuum removes them"
        problems.append(Problem("temp-files", message))
    quarantine = _quarantine_summary(ctx)
    suspicious, split_problems = suspicious_problems(ctx.storage)
    problems.extend(Problem("suspicious-split", m) for m in split_problems)
    database, db_problems = _database_summary(ctx, watermark or latest_landed)
    problems.extend(db_problems)
    result = StatusResult(
        stage="status",
        run_id=ctx.run_id,
        dry_run=False,
        ok=True,
        duration_s=round(time.monotonic() - started, 3),
        lake=ctx.storage.uri,
        generated_at=ctx.now().isoformat(),
        latest_completed_session=latest_completed.isoformat(),
        latest_landed_session=latest_landed.isoformat() if latest_landed else None,
        sessions_behind=(
            _sessions_after(ctx, latest_landed, latest_completed) if latest_landed else None
        ),
        watermark=watermark.isoformat() if watermark else None,
        stale=stale,
        silver_stale=silver_stale,
        healthy=not problems,
        problems=[p.message for p in problems],
        problem_list=problems,
        bronze=to_jsonable(bronze),
        missing_sessions={
            "count": len(missing),
            "since": min(known).isoformat() if known else None,
            "sessions": [d.isoformat() for d in missing[:MISSING_SHOWN]],
            "reasons": {
                d.isoformat(): failures[d] for d in missing[:MISSING_SHOWN] if d in failures
            },
        },
        silver=silver,
        runs=run_view,
        locks=locks,
        quarantine=quarantine,
        database=database,
        suspicious_splits=suspicious,
    )
    _emit_metrics(ctx, result)
    log.info(
        "status of %s: %s",
        result.lake,
        "healthy" if result.healthy else f"{len(problems)} problem(s)",
        extra={"lake": result.lake, "healthy": result.healthy, "stale": result.stale},
    )
    return result


def _lake_problems(
    ctx: JobContext,
    bronze: dict[str, Any],
    latest_landed: date | None,
    latest_completed: date,
    missing: list[date],
    failures: dict[date, str],
) -> list[Problem]:
    """What is wrong with bronze's freshness and the fetch log."""
    problems: list[Problem] = []
    if latest_landed is None:
        problems.append(Problem("stale", "the lake holds no data yet: run condvest fetch", True))
    elif latest_landed < latest_completed:
        message = f"latest landed session {latest_landed.isoformat()} is behind the latest "
        problems.append(
            Problem("stale", message + f"completed session {latest_completed.isoformat()}", True)
        )
    if bronze.get("manifest_error"):
        problems.append(Problem("manifest", str(bronze["manifest_error"])))
    skew = clock_skew(ctx)
    if skew:
        message = skew + "; writing commands refuse to run until it is fixed"
        problems.append(Problem("clock-skew", message))
    recorded_empty = [d for d in empty_entries(ctx.storage) if ctx.calendar.is_session(d)]
    if recorded_empty:
        shown = ", ".join(d.isoformat() for d in recorded_empty[:5])
        message = (
            f"{len(recorded_empty)} session(s) recorded as empty by an older condvest ({shown}"
            f"{', …' if len(recorded_empty) > 5 else ''}): they hold no data and no run asks for "
            f"them again; re-fetch each with: condvest fetch --date {recorded_empty[0]} --force "
            "(or add real closures to calendar.closures_file)"
        )
        problems.append(Problem("empty-sessions", message))
    if missing:
        first = missing[0]
        why = f" ({failures[first]})" if failures.get(first) else ""
        message = f"{len(missing)} session(s) missing from the fetch log, e.g. {first.isoformat()}"
        problems.append(Problem("missing-sessions", message + why))
    return problems


def _silver_problems(
    ctx: JobContext, silver: dict[str, Any], due: date | None
) -> tuple[bool, list[Problem]]:
    """Whether a configured silver interval is behind ``due`` (the newest completed session
    bronze holds), and the problem saying so; sets each interval's ``lag_sessions``."""
    problems: list[Problem] = []
    behind = [
        (name, view["through"])
        for name, view in silver.items()
        if view["configured"]
        and isinstance(view.get("through"), str)
        and due is not None
        and date.fromisoformat(view["through"]) < due
    ]
    for view in silver.values():
        through = view.get("through")
        view["lag_sessions"] = (
            _sessions_after(ctx, date.fromisoformat(through), due)
            if isinstance(through, str) and due is not None
            else None
        )
    if behind and due is not None:
        oldest = min(through for _, through in behind)
        message = (
            f"silver {', '.join(name for name, _ in behind)} is only through {oldest} while "
            f"bronze holds {due.isoformat()}: run condvest resample"
        )
        problems.append(Problem("silver-stale", message, True))
    return bool(behind), problems


def _sessions_after(ctx: JobContext, after: date, through: date) -> int | None:
    """Sessions with after < day <= through (0 when ``after`` is not before ``through``; None
    when the calendar does not reach back to ``after``)."""
    if after >= through:
        return 0
    try:
        return sum(1 for d in ctx.calendar.sessions_between(after, through) if d > after)
    except CondvestError:
        return None


def _emit_metrics(ctx: JobContext, result: StatusResult) -> None:
    from condvest.metrics import emit_emf, health_metrics

    emit_emf(
        ctx.settings,
        "status",
        result.lake,
        health_metrics(result.to_dict()),
        when=ctx.now(),
        properties={"RunId": result.run_id},
    )


def check_failed(result: StatusResult) -> bool:
    """``status --check``: any of the status's problems fails the check (see
    :class:`~condvest.jobs.status.problems.Problem`)."""
    return failing(result.problem_list)

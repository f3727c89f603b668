"""Metrics (docs/metrics.md): CloudWatch Embedded Metric Format (EMF) documents on stderr, one
JSON object per line, at the end of every stage run (jobs.base.run_job) and of every
``status``; and the same health figures as Prometheus/OpenMetrics text for
``status --output openmetrics`` (node_exporter's textfile collector).

EMF is a log line CloudWatch Logs turns into metrics: no API call, no credentials, no network.
Metric names here are a contract with alarms and dashboards (deploy/terraform): rename none."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit, urlunsplit

from condvest.logging import redact
from condvest.settings import Settings

log = logging.getLogger("condvest.metrics")

Unit = Literal["Seconds", "Count", "Bytes", "Count/Second"]
"""The CloudWatch units condvest uses (a subset of CloudWatch's StandardUnit)."""

MAX_METRICS_PER_DOCUMENT = 100
"""The EMF specification: a MetricDirective holds at most 100 MetricDefinitions."""
MAX_DIMENSION_VALUE = 1024
"""CloudWatch's longest dimension value."""


@dataclass(frozen=True)
class Metric:
    """One figure. ``dimensions`` are added to the document's (Stage, Lake): ``Interval`` for a
    silver interval's lag, ``ForStage`` for the age of a stage's last success."""

    name: str
    value: int | float
    unit: Unit
    dimensions: tuple[tuple[str, str], ...] = ()


# -- stage runs ---------------------------------------------------------------------------------
CORE_STAGE_METRICS: tuple[tuple[str, Unit], ...] = (
    ("StageDuration", "Seconds"),
    ("StageFailed", "Count"),
    ("StageSucceeded", "Count"),
    ("RowsLanded", "Count"),
    ("RowsQuarantined", "Count"),
    ("FilesWritten", "Count"),
    ("BytesWritten", "Bytes"),
)
"""Emitted by every stage run, failed ones included (zeros for what a failed run cannot say)."""

_CORE_KEYS: dict[str, dict[str, str]] = {
    "fetch": {
        "RowsLanded": "rows",
        "RowsQuarantined": "quarantined",
        "FilesWritten": "files",
        "BytesWritten": "bytes",
    },
    "consolidate": {
        "RowsLanded": "rows_added",
        # one data.parquet rewritten per changed symbol
        "FilesWritten": "symbols_changed",
        "BytesWritten": "bytes_written",
    },
    "resample": {"RowsLanded": "rows_written", "FilesWritten": "months_written"},
    "vacuum": {},
}
"""Which count of a stage's result each core metric is (absent: 0)."""

STAGE_COUNT_METRICS: dict[str, tuple[str, Unit]] = {
    "partial": ("Partial", "Count"),
    "sessions_planned": ("SessionsPlanned", "Count"),
    "requests": ("Requests", "Count"),
    "retries": ("Retries", "Count"),
    "symbols": ("Symbols", "Count"),
    "new_symbols": ("NewSymbols", "Count"),
    "splits": ("Splits", "Count"),
    "dividends": ("Dividends", "Count"),
    "symbols_planned": ("SymbolsPlanned", "Count"),
    "files_planned": ("FilesPlanned", "Count"),
    "bytes_planned": ("BytesPlanned", "Bytes"),
    "symbols_done": ("SymbolsDone", "Count"),
    "symbols_failed": ("SymbolsFailed", "Count"),
    "rows_replaced": ("RowsReplaced", "Count"),
    "files_merged": ("FilesMerged", "Count"),
    "files_deleted": ("FilesDeleted", "Count"),
    "bytes_deleted": ("BytesDeleted", "Bytes"),
    "symbols_per_s": ("SymbolsPerSecond", "Count/Second"),
    "input_rows": ("InputRows", "Count"),
    "bars": ("Bars", "Count"),
    "bytes_read": ("BytesRead", "Bytes"),
    "files_read": ("FilesRead", "Count"),
    "data_files_from_index": ("DataFilesFromIndex", "Count"),
    "months_deleted": ("MonthsDeleted", "Count"),
    "symbols_scanned": ("SymbolsScanned", "Count"),
    "symbols_cleaned": ("SymbolsCleaned", "Count"),
    "bytes_freed": ("BytesFreed", "Bytes"),
    "files_kept_pending": ("FilesKeptPending", "Count"),
    "temp_files_deleted": ("TempFilesDeleted", "Count"),
    "temp_bytes_freed": ("TempBytesFreed", "Bytes"),
    "delete_failures": ("DeleteFailures", "Count"),
    "db_rows_deleted": ("DatabaseRowsDeleted", "Count"),
}
"""The other numeric counts of the results (JobResult.counts()), by result key."""

STAGE_LIST_METRICS: dict[str, tuple[str, Unit]] = {
    "sessions": ("SessionsLanded", "Count"),
    "empty_sessions": ("SessionsEmpty", "Count"),
    "failed": ("Failures", "Count"),
    "failures": ("Failures", "Count"),
    "failed_intervals": ("IntervalsFailed", "Count"),
    "stages_run": ("StagesRun", "Count"),
}
"""Lists and mappings of a result counted as one figure (fetch's landed sessions, ...)."""

NOT_METRICS = frozenset(
    {
        "stage",
        "run_id",
        "dry_run",
        "ok",
        "duration_s",
        "mode",
        "source",
        "selection",
        "shard",
        "alignment",
        "through",
        "watermark",
        "retention_days",
        "db_retention_days",
        "failed_stage",
        "error",
        "database_error",
    }
)
"""Scalar fields of results that are settings, labels or text, not counts."""


def unmapped_counts(data: Mapping[str, Any]) -> list[str]:
    """Numeric scalar fields of a result that no metric covers (a test keeps this empty, so a
    count added to a result gets a named metric and a line in docs/metrics.md)."""
    return sorted(
        k
        for k, v in data.items()
        if isinstance(v, int | float)
        and k not in NOT_METRICS
        and k not in STAGE_COUNT_METRICS
        and not any(k in keys.values() for keys in _CORE_KEYS.values())
    )


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    return value if isinstance(value, int | float) else 0


def _core_values(stage: str, data: Mapping[str, Any]) -> dict[str, int | float]:
    if stage == "run":
        results = data.get("results") or {}
        fetch = results.get("fetch") or {}
        parts = [_core_values(s, body) for s, body in results.items() if isinstance(body, dict)]
        return {
            "RowsLanded": _number(fetch.get("rows")),
            "RowsQuarantined": _number(fetch.get("quarantined")),
            "FilesWritten": sum(p["FilesWritten"] for p in parts),
            "BytesWritten": sum(p["BytesWritten"] for p in parts),
        }
    keys = _CORE_KEYS.get(stage, {})
    return {
        name: _number(data.get(keys[name])) if name in keys else 0
        for name, _ in CORE_STAGE_METRICS[3:]
    }


def stage_metrics(
    stage: str, outcome: str, elapsed_s: float, data: Mapping[str, Any] | None
) -> list[Metric]:
    """The figures of one finished run: ``data`` is its result's ``to_dict()`` (None when the
    run raised). A partial run (out of time, continued next run) has succeeded."""
    data = data or {}
    failed = outcome == "failed"
    values: dict[str, int | float] = {
        "StageDuration": round(max(elapsed_s, 0.0), 3),
        "StageFailed": int(failed),
        "StageSucceeded": int(not failed),
        **_core_values(stage, data),
    }
    out = [Metric(name, values[name], unit) for name, unit in CORE_STAGE_METRICS]
    consumed = set(_CORE_KEYS.get(stage, {}).values())
    for key, value in data.items():
        if key in consumed or value is None:
            continue
        if key in STAGE_COUNT_METRICS and isinstance(value, int | float):
            name, unit = STAGE_COUNT_METRICS[key]
            out.append(Metric(name, _number(value), unit))
        elif key in STAGE_LIST_METRICS and isinstance(value, list | dict):
            name, unit = STAGE_LIST_METRICS[key]
            out.append(Metric(name, len(value), unit))
    return out


# -- status -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HealthFigure:
    name: str
    unit: Unit
    openmetrics: str
    help: str


HEALTH_FIGURES: tuple[HealthFigure, ...] = (
    HealthFigure(
        "SessionsBehind",
        "Count",
        "condvest_sessions_behind",
        "Completed sessions after the latest landed one (0 = fresh).",
    ),
    HealthFigure(
        "MissingSessions",
        "Count",
        "condvest_missing_sessions",
        "Sessions missing from the fetch log since the first one known.",
    ),
    HealthFigure(
        "PendingDateFiles",
        "Count",
        "condvest_pending_date_files",
        "Bronze date files not merged into data.parquet yet.",
    ),
    HealthFigure(
        "QuarantinedRows", "Count", "condvest_quarantined_rows", "Rows held in bronze quarantine."
    ),
    HealthFigure("Healthy", "Count", "condvest_healthy", "1 when status reports no problem."),
    HealthFigure(
        "SilverLagSessions",
        "Count",
        "condvest_silver_lag_sessions",
        "Sessions a silver interval's checkpoint is behind the latest landed session.",
    ),
    HealthFigure(
        "SecondsSinceLastSuccess",
        "Seconds",
        "condvest_seconds_since_last_success",
        "Seconds since a stage's last successful run ended.",
    ),
)


def health_metrics(status: Mapping[str, Any]) -> list[Metric]:
    """The health figures of a ``status`` result (its ``to_dict()``). A figure that cannot be
    known is left out rather than reported as 0: SessionsBehind on a lake without data, the lag
    of a silver interval never built, the age of a stage's success that never happened."""
    out: list[Metric] = []
    if status.get("sessions_behind") is not None:
        out.append(Metric("SessionsBehind", int(status["sessions_behind"]), "Count"))
    out.append(
        Metric(
            "MissingSessions", int((status.get("missing_sessions") or {}).get("count", 0)), "Count"
        )
    )
    bronze = status.get("bronze") or {}
    out.append(Metric("PendingDateFiles", int(bronze.get("pending_date_files", 0)), "Count"))
    quarantine = status.get("quarantine") or {}
    out.append(Metric("QuarantinedRows", int(quarantine.get("rows", 0)), "Count"))
    out.append(Metric("Healthy", int(bool(status.get("healthy"))), "Count"))
    for interval, view in (status.get("silver") or {}).items():
        view = view or {}
        lag = view.get("lag_sessions")
        if view.get("configured") and lag is not None:
            out.append(
                Metric("SilverLagSessions", int(lag), "Count", (("Interval", str(interval)),))
            )
    now = _parse_time(status.get("generated_at"))
    for stage, view in (status.get("runs") or {}).items():
        since = _parse_time((view or {}).get("last_success_at"))
        if now is not None and since is not None:
            age = max((now - since).total_seconds(), 0.0)
            out.append(
                Metric("SecondsSinceLastSuccess", round(age, 3), "Seconds", (("ForStage", stage),))
            )
    return out


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# -- EMF ----------------------------------------------------------------------------------------
def lake_label(uri: str) -> str:
    """The lake URI as a dimension value: no user:password@, no query string, no secret."""
    parts = urlsplit(uri)
    if parts.scheme and parts.netloc:
        netloc = parts.netloc.rpartition("@")[2]
        uri = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return redact(uri)[:MAX_DIMENSION_VALUE] or "-"


def emf_enabled(settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """``metrics.emf``: on/off, or auto — on where CloudWatch Logs reads stderr (Lambda, Batch)
    and where JSON logs were asked for (log.format = json: a CloudWatch agent tails them); off
    otherwise, so that a terminal or a plain cron mail shows no metric lines."""
    mode = settings.metrics.emf
    if mode != "auto":
        return mode == "on"
    env = os.environ if env is None else env
    in_aws = bool(env.get("AWS_LAMBDA_FUNCTION_NAME") or env.get("AWS_BATCH_JOB_ID"))
    return in_aws or settings.log.format == "json"


def emf_documents(
    namespace: str,
    dimensions: Mapping[str, str],
    metrics: Sequence[Metric],
    *,
    timestamp_ms: int,
    properties: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """EMF documents for ``metrics``: one per extra dimension set, at most 100 metrics each
    (values are members of the root, so a name appears once per document)."""
    groups: dict[tuple[tuple[str, str], ...], dict[str, Metric]] = {}
    for metric in metrics:
        groups.setdefault(metric.dimensions, {})[metric.name] = metric
    docs: list[dict[str, Any]] = []
    for extra, named in groups.items():
        dims = {**dimensions, **{k: v[:MAX_DIMENSION_VALUE] for k, v in extra}}
        group = list(named.values())
        for start in range(0, len(group), MAX_METRICS_PER_DOCUMENT):
            chunk = group[start : start + MAX_METRICS_PER_DOCUMENT]
            directive = {
                "Namespace": namespace,
                "Dimensions": [list(dims)],
                "Metrics": [{"Name": m.name, "Unit": m.unit} for m in chunk],
            }
            doc: dict[str, Any] = {
                "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]}
            }
            doc.update(properties or {})
            doc.update(dims)
            doc.update({m.name: m.value for m in chunk})
            docs.append(doc)
    return docs


def emit_emf(
    settings: Settings,
    stage: str,
    lake_uri: str,
    metrics: Sequence[Metric],
    *,
    when: datetime,
    properties: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Write the EMF lines of ``metrics`` to stderr when EMF is on (whatever ``-q`` says: they
    are data for CloudWatch, not log messages). Never raises: a metric must not fail a run."""
    if not metrics or not emf_enabled(settings):
        return
    docs = emf_documents(
        settings.metrics.namespace,
        {"Stage": stage, "Lake": lake_label(lake_uri)},
        metrics,
        timestamp_ms=int(when.timestamp() * 1000),
        properties=properties,
    )
    out = stream if stream is not None else sys.stderr
    try:
        for doc in docs:
            out.write(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")
        out.flush()
    except (OSError, ValueError) as exc:
        log.debug("could not write the %s metrics: %s", stage, exc)


# -- OpenMetrics --------------------------------------------------------------------------------
_LABELS = {"Interval": "interval", "ForStage": "stage"}


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def openmetrics_text(lake_uri: str, metrics: Sequence[Metric]) -> str:
    """The health figures in the Prometheus text exposition format (OpenMetrics-compatible:
    gauges with HELP and TYPE, ending with ``# EOF``), for node_exporter's textfile collector."""
    lake = _label_value(lake_label(lake_uri))
    families: dict[str, list[Metric]] = {}
    for metric in metrics:
        families.setdefault(metric.name, []).append(metric)
    lines: list[str] = []
    for figure in HEALTH_FIGURES:
        samples = families.get(figure.name)
        if not samples:
            continue
        lines.append(f"# HELP {figure.openmetrics} {figure.help}")
        lines.append(f"# TYPE {figure.openmetrics} gauge")
        for m in samples:
            labels = [f'lake="{lake}"'] + [
                f'{_LABELS[k]}="{_label_value(v)}"' for k, v in m.dimensions if k in _LABELS
            ]
            lines.append(f"{figure.openmetrics}{{{','.join(labels)}}} {_sample(m.value)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"

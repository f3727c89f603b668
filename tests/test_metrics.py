"""Metrics (docs/metrics.md): real stages on synthetic lakes print CloudWatch EMF documents on
stderr that satisfy the EMF specification and carry the run's own counts; status's health
figures match its result, in EMF and in ``--output openmetrics`` (read back with
prometheus_client's parsers); EMF never disturbs ``--output json`` on stdout."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import cli_proc
from condvest.errors import StorageError
from condvest.jobs.base import run_stage
from condvest.jobs.consolidate.job import ConsolidateResult
from condvest.jobs.fetch import FetchOptions, FetchResult, plan_fetch, run_fetch
from condvest.jobs.resample.plan import ResampleResult
from condvest.jobs.run import RunOptions, RunResult, plan_run, run_run
from condvest.jobs.status.job import StatusResult, run_status
from condvest.jobs.vacuum.job import VacuumResult
from condvest.metrics import (
    CORE_STAGE_METRICS,
    HEALTH_FIGURES,
    STAGE_COUNT_METRICS,
    STAGE_LIST_METRICS,
    Metric,
    emf_documents,
    emf_enabled,
    lake_label,
    unmapped_counts,
)
from condvest.settings import load_settings
from conftest import Lake
from test_cli import cli_env

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)  # after the 2026-11-25 close
LATER = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)  # two sessions later: 11-27 (half day), 11-30
SYNTHETIC = {"source": "synthetic", "synthetic_symbols": 6}
EMF_ON = {"metrics": {"emf": "on"}}

# -- a validator of the EMF specification ------------------------------------------------------
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
CLOUDWATCH_UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Percent", "Count", "Count/Second", "None"),
    *(f"{p}{u}" for p in ("", "Kilo", "Mega", "Giga", "Tera") for u in ("Bytes", "Bits")),
    *(f"{p}{u}/Second" for p in ("", "Kilo", "Mega", "Giga", "Tera") for u in ("Bytes", "Bits")),
}


def validate_emf(doc: Any) -> None:
    """Assert ``doc`` is an EMF document CloudWatch Logs would turn into metrics."""
    assert isinstance(doc, dict)
    meta = doc["_aws"]
    assert isinstance(meta, dict)
    assert isinstance(meta["Timestamp"], int) and not isinstance(meta["Timestamp"], bool)
    assert meta["Timestamp"] > 0
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
        namespace = directive["Namespace"]
        assert isinstance(namespace, str) and 1 <= len(namespace) <= 255
        assert not namespace.startswith("AWS/")
        dimension_sets = directive["Dimensions"]
        assert isinstance(dimension_sets, list)
        for dimension_set in dimension_sets:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(key, str) and key in doc, key
                value = doc[key]
                assert isinstance(value, str) and 1 <= len(value) <= 1024, (key, value)
        metrics = directive["Metrics"]
        assert isinstance(metrics, list) and 1 <= len(metrics) <= 100
        names = [m["Name"] for m in metrics]
        assert len(names) == len(set(names))
        for definition in metrics:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            name = definition["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= 255
            assert definition.get("Unit", "None") in CLOUDWATCH_UNITS, definition
            value = doc[name]
            assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
            assert math.isfinite(value)


def emf_lines(stderr: str) -> list[dict[str, Any]]:
    """The EMF documents among stderr's lines, each validated; every other line is a log."""
    docs = []
    for line in stderr.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)  # one whole JSON object per line, nothing around it
        validate_emf(doc)
        docs.append(doc)
    return docs


def by_stage(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stage → its metric values (one run per stage in these tests; base dimension set)."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        dims = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        if dims != ["Stage", "Lake"]:
            continue
        assert doc["Stage"] not in out, f"two documents for {doc['Stage']}"
        names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
        out[doc["Stage"]] = {n: doc[n] for n in names} | {"_doc": doc}
    return out


def _seed(lake: Lake) -> None:
    ctx = lake.context(now=NOW, fetch=SYNTHETIC)
    assert run_fetch(ctx, plan_fetch(ctx, FetchOptions(start=date(2026, 9, 1), end=NOW.date()))).ok


# -- stage runs ---------------------------------------------------------------------------------
def test_every_stage_run_emits_its_counts(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(lake)
    capsys.readouterr()
    ctx = lake.context(now=LATER, fetch=SYNTHETIC, **EMF_ON)
    result = run_run(ctx, plan_run(ctx, RunOptions(vacuum=True)))
    assert result.ok, result.to_dict()
    docs = emf_lines(capsys.readouterr().err)
    stages = by_stage(docs)
    assert set(stages) == {"fetch", "consolidate", "resample", "vacuum", "run"}
    for stage, values in stages.items():
        doc = values["_doc"]
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "condvest"
        assert doc["_aws"]["Timestamp"] == int(LATER.timestamp() * 1000)
        assert doc["Lake"] == lake.uri and doc["Outcome"] == "success" and doc["RunId"]
        for name, unit in CORE_STAGE_METRICS:
            assert name in values, (stage, name)
            units = {m["Name"]: m["Unit"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
            assert units[name] == unit
        assert values["StageFailed"] == 0 and values["StageSucceeded"] == 1
        assert values["StageDuration"] >= 0
    fetch, consolidate, resample, vacuum = (
        result.results[s] for s in ("fetch", "consolidate", "resample", "vacuum")
    )
    assert fetch["rows"] > 0 and consolidate["rows_added"] > 0 and resample["rows_written"] > 0
    assert stages["fetch"]["RowsLanded"] == fetch["rows"]
    assert stages["fetch"]["RowsQuarantined"] == fetch["quarantined"]
    assert stages["fetch"]["FilesWritten"] == fetch["files"]
    assert stages["fetch"]["BytesWritten"] == fetch["bytes"]
    assert stages["fetch"]["SessionsLanded"] == len(fetch["sessions"]) == 2
    assert stages["fetch"]["Requests"] == fetch["requests"]
    assert stages["consolidate"]["RowsLanded"] == consolidate["rows_added"]
    assert stages["consolidate"]["FilesWritten"] == consolidate["symbols_changed"]
    assert stages["consolidate"]["BytesWritten"] == consolidate["bytes_written"]
    assert stages["consolidate"]["FilesMerged"] == consolidate["files_merged"]
    assert stages["consolidate"]["SymbolsPerSecond"] == consolidate["symbols_per_s"]
    assert stages["resample"]["RowsLanded"] == resample["rows_written"]
    assert stages["resample"]["FilesWritten"] == resample["months_written"]
    assert stages["resample"]["Bars"] == resample["bars"]
    assert stages["vacuum"]["FilesDeleted"] == vacuum["files_deleted"]
    assert stages["vacuum"]["BytesFreed"] == vacuum["bytes_freed"]
    assert stages["run"]["RowsLanded"] == fetch["rows"]
    assert stages["run"]["FilesWritten"] == sum(
        stages[s]["FilesWritten"] for s in result.stages_run
    )
    assert stages["run"]["BytesWritten"] == sum(
        stages[s]["BytesWritten"] for s in result.stages_run
    )
    assert stages["run"]["StagesRun"] == 4
    # Every numeric count of every result has a named metric.
    for body in (*result.results.values(), result.to_dict()):
        assert unmapped_counts(body) == []


@pytest.mark.parametrize(
    "cls", [FetchResult, ConsolidateResult, ResampleResult, VacuumResult, RunResult]
)
def test_every_numeric_field_of_a_result_is_a_metric(cls: type) -> None:
    """A count added to a result must get a metric name (and a line in docs/metrics.md)."""
    numeric = [f.name for f in fields(cls) if f.type in ("int", "float", "bool", "int | None")]
    assert numeric  # the check sees the fields
    result = cls(stage="x", run_id="r", dry_run=False, ok=True, duration_s=0.0)
    assert unmapped_counts(result.to_dict()) == []


def test_a_failed_run_emits_stage_failed(
    local_lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(local_lake)
    capsys.readouterr()
    ctx = local_lake.context(now=NOW, **EMF_ON)

    def broken() -> Any:
        raise StorageError("the disk went away")

    with pytest.raises(StorageError):
        run_stage(ctx, "vacuum", broken)
    (values,) = by_stage(emf_lines(capsys.readouterr().err)).values()
    assert values["_doc"]["Stage"] == "vacuum" and values["_doc"]["Outcome"] == "failed"
    assert values["StageFailed"] == 1 and values["StageSucceeded"] == 0
    assert values["RowsLanded"] == values["FilesWritten"] == values["BytesWritten"] == 0


def test_emf_is_off_unless_asked_or_in_aws(
    local_lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(local_lake)
    assert "_aws" not in capsys.readouterr().err  # auto, not in AWS, log.format auto
    auto = load_settings(env={})
    assert not emf_enabled(auto, env={})
    assert emf_enabled(auto, env={"AWS_LAMBDA_FUNCTION_NAME": "condvest-fetch"})
    assert emf_enabled(auto, env={"AWS_BATCH_JOB_ID": "a1b2"})
    assert emf_enabled(load_settings(env={"CONDVEST_LOG__FORMAT": "json"}), env={})
    off = load_settings(env={"CONDVEST_METRICS__EMF": "off"})
    assert not emf_enabled(off, env={"AWS_BATCH_JOB_ID": "a1b2"})


def test_documents_hold_at_most_100_metrics_and_one_dimension_set_each() -> None:
    metrics = [Metric(f"M{i}", i, "Count") for i in range(250)]
    metrics += [Metric("Lag", 3, "Count", (("Interval", "5d"),))]
    docs = emf_documents("ns", {"Stage": "s", "Lake": "l"}, metrics, timestamp_ms=1)
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs] == [100, 100, 50, 1]
    for doc in docs:
        validate_emf(doc)
    assert docs[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "Lake", "Interval"]]


def test_the_lake_dimension_carries_no_credentials() -> None:
    assert lake_label("s3://AKIAX:secret@bucket/lake?token=abc") == "s3://bucket/lake"
    assert lake_label("/data/lake") == "/data/lake"
    assert lake_label("s3://bucket") == "s3://bucket"


# -- status -------------------------------------------------------------------------------------
def _check_health(status: StatusResult, docs: list[dict[str, Any]]) -> None:
    base = by_stage(docs)["status"]
    assert base["_doc"]["Lake"] == status.lake
    if status.sessions_behind is None:
        assert "SessionsBehind" not in base
    else:
        assert base["SessionsBehind"] == status.sessions_behind
    assert base["MissingSessions"] == status.missing_sessions["count"]
    assert base["PendingDateFiles"] == status.bronze["pending_date_files"]
    assert base["QuarantinedRows"] == status.quarantine["rows"]
    assert base["Healthy"] == int(status.healthy)
    lags = {
        d["Interval"]: d["SilverLagSessions"]
        for d in docs
        if d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "Lake", "Interval"]]
    }
    assert lags == {
        name: view["lag_sessions"]
        for name, view in status.silver.items()
        if view["configured"] and view["lag_sessions"] is not None
    }
    ages = {
        d["ForStage"]: d["SecondsSinceLastSuccess"]
        for d in docs
        if d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Stage", "Lake", "ForStage"]]
    }
    now = datetime.fromisoformat(status.generated_at)
    assert ages == {
        stage: pytest.approx(
            (now - datetime.fromisoformat(view["last_success_at"])).total_seconds()
        )
        for stage, view in status.runs.items()
        if view["last_success_at"]
    }


def test_status_emits_the_health_figures(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(lake)
    ctx = lake.context(now=NOW, fetch=SYNTHETIC)
    assert run_run(ctx, plan_run(ctx, RunOptions(vacuum=True))).ok
    capsys.readouterr()
    # Fresh.
    status = run_status(lake.context(now=NOW, **EMF_ON))
    docs = emf_lines(capsys.readouterr().err)
    _check_health(status, docs)
    assert status.sessions_behind == 0 and status.healthy
    assert {d.get("ForStage") for d in docs} >= {
        "fetch",
        "consolidate",
        "resample",
        "vacuum",
        "run",
    }
    assert all(v["lag_sessions"] == 0 for v in status.silver.values())
    # Two sessions later, nothing fetched: two sessions behind, unhealthy.
    status = run_status(lake.context(now=LATER, **EMF_ON))
    _check_health(status, emf_lines(capsys.readouterr().err))
    assert status.sessions_behind == 2 and not status.healthy
    # Fetched but not resampled: silver lags two sessions; pending files wait for consolidate.
    later = lake.context(now=LATER, fetch=SYNTHETIC)
    assert run_fetch(later, plan_fetch(later, FetchOptions())).ok
    capsys.readouterr()
    status = run_status(lake.context(now=LATER, **EMF_ON))
    _check_health(status, emf_lines(capsys.readouterr().err))
    assert status.sessions_behind == 0
    assert {v["lag_sessions"] for v in status.silver.values()} == {2}
    assert status.bronze["pending_date_files"] == 12


def test_seconds_since_last_success_outlives_a_failed_run(
    local_lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed(local_lake)
    succeeded = run_status(local_lake.context(now=NOW)).runs["fetch"]["last_success_at"]
    assert succeeded

    def broken() -> Any:
        raise StorageError("the disk went away")

    ctx = local_lake.context(now=NOW + timedelta(hours=1))
    with pytest.raises(StorageError):
        run_stage(ctx, "fetch", broken)
    capsys.readouterr()
    status = run_status(local_lake.context(now=NOW + timedelta(hours=2), **EMF_ON))
    assert status.runs["fetch"]["outcome"] == "failed"
    assert status.runs["fetch"]["last_success_at"] == succeeded
    docs = emf_lines(capsys.readouterr().err)
    _check_health(status, docs)
    (age,) = [d["SecondsSinceLastSuccess"] for d in docs if d.get("ForStage") == "fetch"]
    assert age == pytest.approx(2 * 3600, abs=120)


def test_an_empty_lake_reports_what_it_can(
    local_lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run_status(local_lake.context(now=NOW, **EMF_ON))
    docs = emf_lines(capsys.readouterr().err)
    _check_health(status, docs)
    assert status.sessions_behind is None and len(docs) == 1
    assert by_stage(docs)["status"]["Healthy"] == 0


# -- the command line ---------------------------------------------------------------------------
def _cli(tmp_path: Path, *args: str, **env: str) -> Any:
    return cli_proc.run(
        ["--lake", str(tmp_path / "lake"), *args],
        env=cli_env({"CONDVEST_FETCH__SYNTHETIC_SYMBOLS": "4", **env}),
        cwd=tmp_path,
    )


def _start() -> str:
    return (datetime.now(UTC).date() - timedelta(days=10)).isoformat()


def test_json_output_stays_one_document_with_emf_on_even_quiet(tmp_path: Path) -> None:
    out = _cli(
        tmp_path,
        "-q",
        "-o",
        "json",
        "fetch",
        "--source",
        "synthetic",
        "--start",
        _start(),
        CONDVEST_METRICS__EMF="on",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stage"] == "fetch"  # the whole of stdout is one JSON document
    (fetch,) = by_stage(emf_lines(out.stderr)).values()
    assert fetch["RowsLanded"] == json.loads(out.stdout)["rows"] > 0
    assert [ln for ln in out.stderr.splitlines() if '"_aws"' not in ln] == []  # -q: nothing else
    status = _cli(tmp_path, "-o", "json", "status", CONDVEST_METRICS__EMF="on")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stage"] == "status"
    assert by_stage(emf_lines(status.stderr))["status"]["Healthy"] in (0, 1)


def test_emf_is_on_in_batch_and_off_on_a_plain_run(tmp_path: Path) -> None:
    plain = _cli(tmp_path, "-q", "status")
    assert plain.returncode == 0 and '"_aws"' not in plain.stderr
    batch = _cli(tmp_path, "-q", "status", AWS_BATCH_JOB_ID="5f1c")
    assert batch.returncode == 0 and by_stage(emf_lines(batch.stderr))["status"]["Healthy"] == 0
    namespaced = _cli(
        tmp_path, "-q", "status", AWS_BATCH_JOB_ID="5f1c", CONDVEST_METRICS__NAMESPACE="Lake/Prod"
    )
    (doc, *_) = emf_lines(namespaced.stderr)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Lake/Prod"


def test_status_openmetrics_matches_status_json(tmp_path: Path) -> None:
    fetched = _cli(tmp_path, "-q", "fetch", "--source", "synthetic", "--start", _start())
    assert fetched.returncode == 0, fetched.stderr
    data = json.loads(_cli(tmp_path, "-o", "json", "status").stdout)
    out = _cli(tmp_path, "status", "-o", "openmetrics", CONDVEST_METRICS__EMF="on")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("# EOF\n")
    assert emf_lines(out.stderr)  # EMF still on stderr; stdout holds only the exposition
    families = {f.name: f for f in text_string_to_metric_families(out.stdout)}
    strict = {f.name: f for f in openmetrics_families(out.stdout)}  # the OpenMetrics grammar too
    assert set(strict) == set(families)
    for family in families.values():
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            assert sample.labels["lake"] == data["lake"]

    def value(name: str, **labels: str) -> float:
        (sample,) = [
            s
            for s in families[name].samples
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return sample.value

    assert value("condvest_sessions_behind") == data["sessions_behind"]
    assert value("condvest_missing_sessions") == data["missing_sessions"]["count"]
    assert value("condvest_pending_date_files") == data["bronze"]["pending_date_files"] > 0
    assert value("condvest_quarantined_rows") == data["quarantine"]["rows"]
    assert value("condvest_healthy") == int(data["healthy"])
    assert value("condvest_seconds_since_last_success", stage="fetch") >= 0
    assert "condvest_silver_lag_sessions" not in families  # no interval built yet
    # --check keeps its exit code (pending files do not fail it; a stale lake would).
    checked = _cli(tmp_path, "status", "--check", "-o", "openmetrics")
    assert checked.returncode == (1 if data["stale"] or data["silver_stale"] else 0)
    assert list(text_string_to_metric_families(checked.stdout))


def test_openmetrics_names_silver_intervals_and_stages(local_lake: Lake) -> None:
    from condvest.metrics import health_metrics, openmetrics_text

    _seed(local_lake)
    ctx = local_lake.context(now=NOW, fetch=SYNTHETIC)
    assert run_run(ctx, plan_run(ctx, RunOptions())).ok
    status = run_status(local_lake.context(now=LATER))
    text = openmetrics_text(status.lake, health_metrics(status.to_dict()))
    families = {f.name: f for f in openmetrics_families(text)}
    lags = {s.labels["interval"]: s.value for s in families["condvest_silver_lag_sessions"].samples}
    assert lags == {name: view["lag_sessions"] for name, view in status.silver.items()}
    stages = {s.labels["stage"] for s in families["condvest_seconds_since_last_success"].samples}
    assert stages == {"fetch", "consolidate", "resample", "run"}
    assert families["condvest_sessions_behind"].samples[0].value == 2


@pytest.mark.parametrize("command", ["fetch", "consolidate", "resample", "vacuum", "run"])
def test_openmetrics_is_for_status_only(tmp_path: Path, command: str) -> None:
    out = _cli(tmp_path, "-o", "openmetrics", command)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: --output openmetrics is for condvest status only, not {command} "
        "(use --output json or text)"
    )
    assert out.stdout == "" and not (tmp_path / "lake").exists()


# -- docs ---------------------------------------------------------------------------------------
def test_docs_list_every_metric() -> None:
    text = (REPO / "docs" / "metrics.md").read_text()
    names = {n for n, _ in CORE_STAGE_METRICS}
    names |= {n for n, _ in STAGE_COUNT_METRICS.values()} | {
        n for n, _ in STAGE_LIST_METRICS.values()
    }
    names |= {f.name for f in HEALTH_FIGURES} | {f.openmetrics for f in HEALTH_FIGURES}
    for name in sorted(names):
        assert re.search(rf"`{re.escape(name)}`", text), f"{name} is not in docs/metrics.md"
    assert "metrics.md" in (REPO / "README.md").read_text()
    assert "metrics.md" in (REPO / "docs" / "commands" / "status.md").read_text()

"""docs/deploy/ holds JSON meant to be pasted into the AWS CLI. Every ```json block parses, says
what it is for (a marker comment, tests/deploy_docs.py) and, placeholders filled, has the shape
of that operation's input in AWS's own service model (botocore); no environment sets a name
Batch reserves (AWS_BATCH_*); the IAM documents are well-formed; and every documented
consolidate job runs through the real CLI on a synthetic lake — as a plain job and as the
children of its array job, whose shards cover every symbol exactly once."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import cli_proc
from condvest.state.manifest import read_manifest
from conftest import Lake, make_local_lake
from consolidate_helpers import land
from deploy_docs import (
    DEPLOY,
    BatchJob,
    Block,
    blocks,
    consolidate_jobs,
    fill,
    operation_inputs,
    policies,
    state_machine_tasks,
)

PAGES = ("README", "eventbridge", "batch", "lambda", "iam", "step-functions", "cron", "terraform")
SYMBOLS = [f"S{i:02d}" for i in range(14)] + ["BRK.A", "aapl"]
DAYS = [date(2026, 3, 2), date(2026, 3, 3)]
INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"


@cache
def _session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def validation_errors(service: str, operation: str, params: Any) -> str | None:
    from botocore.validate import ParamValidator

    shape = _session().get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    return report.generate_report() if report.has_errors() else None


# -- (a) shapes ----------------------------------------------------------------------------------
def test_every_page_exists() -> None:
    missing = [p for p in PAGES if not (DEPLOY / f"{p}.md").is_file()]
    assert not missing, f"docs/deploy is missing {missing}"


def test_every_json_block_parses_and_says_what_it_is() -> None:
    failures = []
    found = blocks()
    for block in found:
        if not block.kind:
            failures.append(f"{block.page} json block #{block.number}: no marker comment before it")
        try:
            json.loads(block.text)
        except json.JSONDecodeError as exc:
            failures.append(f"{block.where}: {exc}")
    assert not failures, "\n".join(failures)
    assert len(found) >= 28  # the pages really carry their JSON (a broken fence would hide blocks)


def test_marker_and_placeholder_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deploy_docs

    page = tmp_path / "probe.md"
    page.write_text(
        'a\n<!-- botocore: batch SubmitJob -->\n\n```json\n{"a": "<BUCKET>/<PREFIX>/x"}\n```\n'
        "b\n```json\n[1,\n```\n"
    )
    monkeypatch.setattr(deploy_docs, "DEPLOY", tmp_path)
    first, second = deploy_docs.blocks("probe")
    assert (first.kind, first.what, second.kind) == ("botocore", ("batch", "SubmitJob"), "")
    assert first.data("b", "p") == {"a": "b/p/x"} and first.data("b", "") == {"a": "b/x"}
    with pytest.raises(json.JSONDecodeError):
        json.loads(second.text)
    with pytest.raises(AssertionError, match="<SECRET>"):
        fill("<SECRET>")


def _sfn_integration_inputs(block: Block, definition: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """A Task state's Parameters are its integration's API input (JSONPath values: ".$")."""
    out = []
    for name, resource, parameters in state_machine_tasks(definition):
        service, _, action = resource.removeprefix("arn:aws:states:::").partition(":")
        action = action.split(".")[0]
        params = {
            k.removesuffix(".$"): ("x" if k.endswith(".$") else v) for k, v in parameters.items()
        }
        if service == "batch":
            from deploy_docs import _camel

            params = _camel(params)
        if service == "lambda" and isinstance(params.get("Payload"), dict):
            params["Payload"] = json.dumps(params["Payload"])
        operation = action[:1].upper() + action[1:]
        out.append((f"{block.where} state {name}", f"{service} {operation}", params))
    return out


def test_every_operation_block_has_its_operations_input_shape() -> None:
    checked, failures = [], []
    for block, data in operation_inputs():
        service, operation, *mode = block.what
        cases = [(block.where, f"{service} {operation}", data)]
        if mode == ["definition"]:
            role = "arn:aws:iam::123456789012:role/condvest-states"
            whole = {"name": "condvest-daily", "roleArn": role, "definition": json.dumps(data)}
            cases = [(block.where, f"{service} {operation}", whole)]
            cases += _sfn_integration_inputs(block, data)
        for where, op, params in cases:
            checked.append(op)
            errors = validation_errors(*op.split(), params)
            if errors:
                failures.append(f"{where}:\n{errors}")
    assert not failures, "\n\n".join(failures)
    # each page's operations, and the state machine's Batch, Lambda and SNS tasks
    assert {
        "batch RegisterJobDefinition",
        "batch SubmitJob",
        "events PutTargets",
        "scheduler CreateSchedule",
        "lambda CreateFunction",
        "lambda Invoke",
        "sns Publish",
        "cloudwatch PutMetricAlarm",
    } <= set(checked)


def test_botocore_validation_catches_a_wrong_shape() -> None:
    """The check has teeth: a misspelt member and a wrong type are reported."""
    (block, data), *_ = operation_inputs()
    assert block.what == ("batch", "RegisterJobDefinition")
    assert validation_errors("batch", "RegisterJobDefinition", data) is None
    bad = {**data, "containerProperties": {**data["containerProperties"], "vcpus": "2"}}
    bad["retryStrategy"] = {"attempt": 3}
    errors = validation_errors("batch", "RegisterJobDefinition", bad) or ""
    assert "vcpus" in errors and "attempt" in errors


def _environment_names(data: Any) -> Iterator[str]:
    """Names of every environment a block sets: Batch's [{name, value}] (any case, also in
    overrides and Step Functions' PascalCase) and Lambda's Variables."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.lower() == "environment" and isinstance(value, list):
                yield from (str(item.get("name", item.get("Name"))) for item in value)
            elif key == "Variables" and isinstance(value, dict):
                yield from value
            yield from _environment_names(value)
    elif isinstance(data, list):
        for item in data:
            yield from _environment_names(item)


def test_no_environment_sets_a_reserved_batch_name() -> None:
    """Batch reserves AWS_BATCH_* ("Environment variables cannot start with AWS_BATCH", its
    model of ContainerProperties.environment); it sets AWS_BATCH_JOB_ARRAY_INDEX itself."""
    names: list[tuple[str, str]] = []
    for block in blocks():
        data = block.data()
        names += [(block.where, n) for n in _environment_names(data)]
        if block.what[:2] == ("stepfunctions", "CreateStateMachine"):
            for _, _, parameters in state_machine_tasks(data):
                names += [(block.where, n) for n in _environment_names(parameters)]
        text = json.dumps(data)
        assert "AWS_BATCH" not in text, f"{block.where} mentions a reserved AWS_BATCH name"
    assert any(n == "CONDVEST_LAKE__URI" for _, n in names)  # the walk does find environments
    reserved = [f"{where}: {name}" for where, name in names if name.upper().startswith("AWS_BATCH")]
    assert not reserved, reserved
    shape = _session().get_service_model("batch").shape_for("ContainerProperties")
    assert "AWS_BATCH" in shape.members["environment"].documentation  # what the rule rests on


def test_condvest_never_reads_the_array_size() -> None:
    src = Path(__file__).resolve().parent.parent / "src"
    readers = [p for p in src.rglob("*.py") if "AWS_BATCH_JOB_ARRAY_SIZE" in p.read_text()]
    assert not readers, readers


_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z*]+$")
_OPERATORS = {"StringLike", "StringEquals", "ArnLike", "ArnEquals", "Bool"}


def test_iam_documents_are_well_formed() -> None:
    docs = policies()
    assert {
        "condvest-fetch",
        "condvest-consolidate",
        "condvest-resample",
        "condvest-vacuum",
        "condvest-status",
        "condvest-scheduler",
        "condvest-states",
        "trust",
    } <= set(docs)
    for name, policy in docs.items():
        assert set(policy) == {"Version", "Statement"}, name
        assert policy["Version"] == "2012-10-17"
        sids = [s["Sid"] for s in policy["Statement"] if "Sid" in s]
        assert len(sids) == len(set(sids)), f"{name}: duplicate Sid"
        for statement in policy["Statement"]:
            where = f"{name} {statement.get('Sid', '')}"
            assert statement["Effect"] in ("Allow", "Deny"), where
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert actions and all(_ACTION.match(a) for a in actions), where
            assert set(statement.get("Condition", {})) <= _OPERATORS, where
            if name == "trust":
                assert statement["Principal"]["Service"].endswith(".amazonaws.com")
                assert actions == ["sts:AssumeRole"]
                continue
            assert "Principal" not in statement, where
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            assert resources, where
            for resource in resources:
                assert resource == "*" or resource.startswith("arn:aws:"), (where, resource)
            for action in actions:
                if action == "s3:ListBucket":  # a bucket action: the bucket's ARN, no key
                    assert all("/" not in r for r in resources), where
                elif action.startswith("s3:"):  # object actions: object ARNs
                    assert all(r.startswith("arn:aws:s3:::condvest-lake/") for r in resources)


def test_batch_job_definitions_use_the_original_resources() -> None:
    definitions = [d for b, d in operation_inputs() if b.what == ("batch", "RegisterJobDefinition")]
    definitions = [d for d in definitions if "jobDefinitionName" in d]
    assert definitions
    for definition in definitions:
        resources = {
            r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]
        }
        assert resources == {"VCPU": "2", "MEMORY": "4096"}
        # Exit code 2 (usage/config error) must not be retried.
        rules = definition["retryStrategy"]["evaluateOnExit"]
        assert rules[0] == {"onExitCode": "2", "action": "EXIT"}


def test_state_machine_transitions_point_at_states() -> None:
    (machine,) = [d for b, d in operation_inputs() if b.what[0] == "stepfunctions"]
    states = machine["States"]
    assert machine["StartAt"] in states
    targets = []
    for state in states.values():
        targets += [state[k] for k in ("Next", "Default") if k in state]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
    assert targets and all(t in states for t in targets), targets
    assert any(s["Type"] == "Fail" for s in states.values())


def test_lambda_doc_events_are_accepted_by_the_handler() -> None:
    from condvest.aws.events import EventError, parse_event

    events = [b.data() for b in blocks("lambda") if b.what == ("lambda-event",)]
    assert len(events) >= 4
    for event in events:
        try:
            parse_event(event, env={}, today=date(2026, 11, 25))
        except EventError as exc:  # every documented event must map onto real options
            raise AssertionError(f"{event}: {exc}") from None


# -- (b) the documented consolidate jobs on a synthetic lake --------------------------------------
@pytest.fixture(scope="module")
def template_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with two landed sessions of every symbol, copied for each run."""
    root = tmp_path_factory.mktemp("deploy") / "lake"
    lake = make_local_lake(root)
    for symbol in SYMBOLS:
        for day in DAYS:
            land(lake.storage, symbol, day)
    return root


def _fresh_lake(template: Path, where: Path) -> Lake:
    shutil.copytree(template, where)
    return make_local_lake(where)


def _run_job(job: BatchJob, lake: Lake, index: int | None) -> tuple[int, dict[str, Any], str]:
    """The container command as Batch would start it: the image's entrypoint is `condvest`,
    the environment is the documented one with the lake pointed at ``lake``, and Batch's own
    AWS_BATCH_JOB_ARRAY_INDEX in an array child."""
    env = {
        k: v for k, v in os.environ.items() if not k.upper().startswith(("CONDVEST_", "AWS_BATCH"))
    }
    env.update(dict(job.environment))
    assert env["CONDVEST_LAKE__URI"].startswith("s3://")  # the docs' lake, replaced here
    env["CONDVEST_LAKE__URI"] = lake.uri
    if index is not None:
        env[INDEX_ENV] = str(index)
    done = cli_proc.run(list(job.command), env=env)
    body = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, body, done.stderr


def _jobs(*, arrays: bool) -> list[BatchJob]:
    """The documented jobs, one per distinct (command, environment[, array size]), named after
    every page that submits it: the array jobs, or every command as a plain job."""
    unique: dict[tuple[Any, ...], BatchJob] = {}
    for job in consolidate_jobs():
        if arrays and not job.array_size:
            continue
        if not arrays:
            job = replace(job, array_size=None)
        key = (job.command, job.environment, job.array_size)
        if key in unique:
            job = replace(unique[key], source=f"{unique[key].source}+{job.source}")
        unique[key] = job
    return list(unique.values())


def test_the_pages_describe_plain_and_sharded_consolidate_jobs() -> None:
    jobs = consolidate_jobs()
    sources = {j.source.split(" ", 1)[0] for j in jobs if j.array_size}
    assert sources == {"batch.md", "step-functions.md", "eventbridge.md"}
    assert any(j.array_size is None for j in jobs)
    for job in jobs:  # an array job's command carries its count (BatchParameters cannot)
        if job.array_size:
            assert ("--shards", str(job.array_size)) in zip(
                job.command, job.command[1:], strict=False
            ), job


@pytest.mark.parametrize("job", _jobs(arrays=False), ids=lambda j: j.source.replace(" ", "-"))
def test_documented_consolidate_job_as_a_plain_job(
    job: BatchJob, template_lake: Path, tmp_path: Path
) -> None:
    """Submitted without an array (no index), every documented command consolidates the
    whole lake and exits 0 (it used to exit 2: 'set both or none')."""
    lake = _fresh_lake(template_lake, tmp_path / "lake")
    code, body, stderr = _run_job(job, lake, None)
    assert code == 0, stderr
    assert body["shard"] is None
    if body["dry_run"]:
        assert body["symbols_planned"] == len(SYMBOLS)
        assert read_manifest(lake.storage)[0] == {}
    else:
        assert body["symbols_done"] == len(SYMBOLS)
        assert sorted(read_manifest(lake.storage)[0]) == sorted(SYMBOLS)


@pytest.mark.parametrize("job", _jobs(arrays=True), ids=lambda j: j.source.replace(" ", "-"))
def test_documented_array_job_children_cover_every_symbol_once(
    job: BatchJob, template_lake: Path, tmp_path: Path
) -> None:
    """Children 0..N-1 of the documented array job, each with Batch's index: disjoint shards
    that together are every symbol; an index beyond the count is a usage error (exit 2)."""
    assert job.array_size is not None
    lake = _fresh_lake(template_lake, tmp_path / "lake")
    seen: dict[int, set[str]] = {}
    before: set[str] = set()
    for index in range(job.array_size):
        code, body, stderr = _run_job(job, lake, index)
        assert code == 0, stderr
        assert body["shard"] == f"{index}/{job.array_size}"
        after = set(read_manifest(lake.storage)[0])
        seen[index] = after - before
        assert body["symbols_done"] == len(seen[index])
        before = after
    assert sorted(s for shard in seen.values() for s in shard) == sorted(SYMBOLS)
    assert sum(len(shard) for shard in seen.values()) == len(SYMBOLS)  # each exactly once
    assert sum(1 for shard in seen.values() if shard) >= 2  # really split
    code, _, stderr = _run_job(job, _fresh_lake(template_lake, tmp_path / "more"), job.array_size)
    assert code == 2 and f"{INDEX_ENV}={job.array_size}" in stderr


def test_lambda_consolidate_events_are_whole_or_one_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the Lambda handler (no array index there): ``shards`` alone consolidates the
    whole lake, ``shard`` one part; both map onto the real options."""
    import tempfile

    from condvest.aws.events import build_argv
    from condvest.aws.lambda_handler import handler

    assert build_argv("consolidate", {"shards": 4})[1][-2:] == ["--shards", "4"]
    assert build_argv("consolidate", {"shard": "1/4"})[1][-2:] == ["--shard", "1/4"]

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 120_000

    root = Path(tempfile.mkdtemp(prefix="condvest-deploy-", dir="/tmp"))
    try:
        lake = make_local_lake(root / "lake")
        for symbol in SYMBOLS:
            land(lake.storage, symbol, DAYS[0])
        monkeypatch.setenv("CONDVEST_LAKE__URI", lake.uri)
        one = handler({"command": "consolidate", "args": {"shard": "1/4"}}, Context())
        assert one["shard"] == "1/4" and 0 < one["symbols_done"] < len(SYMBOLS)
        rest = handler({"command": "consolidate", "args": {"shards": 4}}, Context())
        assert rest["shard"] is None
        assert one["symbols_done"] + rest["symbols_done"] == len(SYMBOLS)
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""deploy/terraform, checked three ways. Without terraform: its IAM policies are
docs/deploy/iam.md's blocks (one source of truth) and every metric it names is in the metric
contract (metrics.json). With terraform (offline, the provider from a filesystem mirror):
``fmt -check``, ``init`` + ``validate``, bad variables refused at plan time; and one
``apply`` against the moto server on 127.0.0.1, then assertions on what exists there (boto3):
every job definition's command runs through the real CLI on a temporary lake, the schedules'
expressions and time zone, the alarms' and dashboard's metric names, the roles' policies equal
iam.md's after its placeholders are filled, the Glue tables' locations and columns match
core/layout.py and core/schema.py; then ``destroy``.

Skips with one message when terraform or the provider mirror is missing, unless
CONDVEST_REQUIRE_TERRAFORM=1 (.ci/run sets it): then it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cli_proc
from condvest.aws.events import build_argv
from condvest.core import layout, schema
from deploy_docs import blocks, policies

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "deploy" / "terraform"
MIRROR = Path(os.environ.get("CONDVEST_TERRAFORM_MIRROR", "/opt/tf-plugins"))
REQUIRE = "CONDVEST_REQUIRE_TERRAFORM"

BUCKET, PREFIX, REGION, ACCOUNT = "condvest-lake", "lake", "us-east-1", "123456789012"
POLYGON_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:condvest/polygon-AbCdEf"
DATABASE_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:condvest/rds-AbCdEf"
SHARDS = 3

MODULE_POLICIES = {
    "condvest-fetch": "fetch",
    "condvest-consolidate": "consolidate",
    "condvest-resample": "resample",
    "condvest-vacuum": "vacuum",
    "condvest-status": "status",
    "condvest-scheduler": "scheduler",
}
"""iam.md role → the module's policies/<file>.json (and its role condvest-<file>)."""
NOT_IN_MODULE = {
    "condvest-batch-execution": "the jobs inject no secret: the managed policy is enough",
    "condvest-states": "the module schedules the stages directly, no Step Functions",
}
CONTRACT = json.loads((MODULE / "metrics.json").read_text())
CONTRACT_NAMES = {
    name
    for section in ("stage", "status", "status_per_interval", "status_per_stage")
    for name in CONTRACT[section]["metrics"]
}
AWS_METRICS = {("AWS/Lambda", "Errors")}
"""Metrics of AWS's own namespaces the module alarms on (not condvest's to emit)."""


# -- without terraform ----------------------------------------------------------------------------
def test_policy_files_are_iam_md_blocks() -> None:
    documented = {
        block.what[1]: json.loads(block.text)
        for block in blocks("iam")
        if block.kind == "iam" and block.what[0] == "policy"
    }
    assert set(documented) == set(MODULE_POLICIES) | set(NOT_IN_MODULE), (
        "iam.md's roles changed: map each to a policies/ file or say why the module has none"
    )
    files = {p.stem for p in (MODULE / "policies").glob("*.json")}
    assert files == set(MODULE_POLICIES.values())
    for role, name in MODULE_POLICIES.items():
        module = json.loads((MODULE / "policies" / f"{name}.json").read_text())
        assert module == documented[role], f"policies/{name}.json differs from iam.md's {role}"


def test_metric_contract() -> None:
    assert CONTRACT["default_namespace"] == "condvest"
    assert {
        "StageDuration",
        "StageFailed",
        "StageSucceeded",
        "RowsLanded",
        "RowsQuarantined",
        "FilesWritten",
        "BytesWritten",
        "SessionsBehind",
        "MissingSessions",
        "PendingDateFiles",
        "QuarantinedRows",
        "Healthy",
        "SilverLagSessions",
        "SecondsSinceLastSuccess",
    } == CONTRACT_NAMES
    used = set()
    for tf in MODULE.glob("*.tf"):
        used |= set(re.findall(r'metric_name\["(\w+)"\]', tf.read_text()))
        for names in re.findall(r"for metric in \[([^\]]*)\]", tf.read_text()):
            used |= set(re.findall(r'"(\w+)"', names))
    assert used and used <= CONTRACT_NAMES, sorted(used - CONTRACT_NAMES)


def test_metric_contract_is_what_condvest_emits() -> None:
    """metrics.json against condvest.metrics: names and units of the stage metrics and the
    health figures; the status figures per interval and per stage carry their extra dimension."""
    from condvest import metrics

    stage = dict(metrics.CORE_STAGE_METRICS)
    assert CONTRACT["stage"]["metrics"] == stage
    health = {f.name: f.unit for f in metrics.HEALTH_FIGURES}
    status = {
        **CONTRACT["status"]["metrics"],
        **CONTRACT["status_per_interval"]["metrics"],
        **CONTRACT["status_per_stage"]["metrics"],
    }
    assert status == health
    assert CONTRACT["default_namespace"] == metrics_namespace_default()


def metrics_namespace_default() -> str:
    from condvest.settings import MetricsSettings

    return str(MetricsSettings().namespace)


# -- terraform ------------------------------------------------------------------------------------
def _missing() -> str | None:
    if shutil.which("terraform") is None:
        return "terraform is not on PATH"
    if not list(MIRROR.glob("registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*")):
        return f"no hashicorp/aws provider in the filesystem mirror {MIRROR}"
    return None


@dataclass
class Terraform:
    env: dict[str, str]

    def __call__(self, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["terraform", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if ok:
            assert done.returncode == 0, (
                f"terraform {' '.join(args)}:\n{done.stderr}\n{done.stdout[-3000:]}"
            )
        return done


@pytest.fixture(scope="module")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    missing = _missing()
    if missing:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but {missing}", pytrace=False)
        pytest.skip(f"terraform tests skipped: {missing}")
    home = tmp_path_factory.mktemp("tf-home")
    config = home / "cli.tfrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{MIRROR}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return Terraform(env)


def _root(tmp: Path, endpoint: str, **overrides: Any) -> Path:
    """A root configuration in ``tmp``: the module (copied, so init writes nothing in the
    repository), the provider aimed at ``endpoint`` and the network moto needs to exist."""
    shutil.copytree(MODULE, tmp / "module", ignore=shutil.ignore_patterns(".terraform*"))
    services = [
        "batch",
        "cloudwatch",
        "cloudwatchlogs",
        "ec2",
        "eventbridge",
        "glue",
        "iam",
        "lambda",
        "s3",
        "scheduler",
        "sns",
        "sts",
    ]
    inputs = {
        "image_uri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/condvest:1.0.0",
        "lake_bucket": BUCKET,
        "lake_prefix": PREFIX,
        "create_bucket": True,
        "polygon_secret_arn": POLYGON_SECRET,
        "database_secret_arn": DATABASE_SECRET,
        "alert_email": "ops@example.com",
        "consolidate_shards": SHARDS,
        "log_retention_days": 30,
        "schedule_times": {"fetch": "16:35", "status": "18:05"},
    }
    inputs.update(overrides)
    module_args = "\n".join(f"  {k} = {json.dumps(v)}" for k, v in inputs.items())
    module_args = re.sub(r'"(\w+)": ', r"\1 = ", module_args)  # HCL object syntax
    (tmp / "main.tf").write_text(
        f"""
provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
{chr(10).join(f'    {s} = "{endpoint}"' for s in services)}
  }}
}}

resource "aws_vpc" "test" {{
  cidr_block = "10.0.0.0/16"
}}

resource "aws_subnet" "test" {{
  vpc_id     = aws_vpc.test.id
  cidr_block = "10.0.1.0/24"
}}

resource "aws_security_group" "test" {{
  vpc_id = aws_vpc.test.id
  name   = "condvest-batch"
}}

# moto's CreateComputeEnvironment requires a service role (AWS defaults to the linked one)
resource "aws_iam_role" "batch_service" {{
  name = "condvest-test-batch-service"
  assume_role_policy = jsonencode({{
    Version   = "2012-10-17"
    Statement = [{{
      Effect    = "Allow"
      Principal = {{ Service = "batch.amazonaws.com" }}
      Action    = "sts:AssumeRole"
    }}]
  }})
}}

module "condvest" {{
  source                 = "./module"
  subnet_ids             = [aws_subnet.test.id]
  security_group_ids     = [aws_security_group.test.id]
  batch_service_role_arn = aws_iam_role.batch_service.arn
{module_args}
}}
"""
    )
    return tmp


@pytest.fixture(scope="module")
def initialised(
    terraform: Terraform, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root = _root(tmp_path_factory.mktemp("tf-root"), moto_endpoint)
    terraform(root, "init", "-backend=false", "-input=false", "-no-color")
    return root


def test_fmt(terraform: Terraform) -> None:
    done = terraform(MODULE, "fmt", "-check", "-recursive", "-diff", "-no-color", ok=False)
    assert done.returncode == 0, f"terraform fmt -recursive deploy/terraform:\n{done.stdout}"


def test_init_offline_and_validate(terraform: Terraform, initialised: Path) -> None:
    done = terraform(initialised, "validate", "-no-color")
    assert "The configuration is valid" in done.stdout


def test_bad_variables_are_refused_at_plan(
    terraform: Terraform, initialised: Path, moto_endpoint: str, tmp_path: Path
) -> None:
    bad = _root(
        tmp_path,
        moto_endpoint,
        consolidate_shards=0,
        schedule_times={"fetch": "25:00"},
        batch_resources={
            "consolidate": {"vcpu": 2, "memory": 2048},
            "resample": {"vcpu": 2, "memory": 4096},
            "vacuum": {"vcpu": 2, "memory": 4096},
            "status": {"vcpu": 2, "memory": 4096},
        },
        lake_prefix="/lake/",
    )
    shutil.copytree(initialised / ".terraform", bad / ".terraform")
    shutil.copy(initialised / ".terraform.lock.hcl", bad)
    done = terraform(bad, "plan", "-input=false", "-no-color", "-refresh=false", ok=False)
    assert done.returncode != 0
    text = re.sub(r"\s+", " ", done.stderr.replace("│", " "))
    for message in (
        "consolidate_shards is a whole number from 1 to 10000",
        "schedule_times are HH:MM",
        "must be a Fargate combination",
        "lake_prefix has no slash at either end",
    ):
        assert message in text, f"{message!r} not in:\n{done.stderr}"


def _planned(terraform: Terraform, initialised: Path, root: Path) -> dict[str, dict[str, Any]]:
    """``terraform plan`` of ``root`` (no apply): the module's planned resources by address."""
    shutil.copytree(initialised / ".terraform", root / ".terraform")
    shutil.copy(initialised / ".terraform.lock.hcl", root)
    terraform(root, "plan", "-input=false", "-no-color", "-refresh=false", "-out=tf.plan")
    plan = json.loads(terraform(root, "show", "-json", "-no-color", "tf.plan").stdout)
    (module,) = plan["planned_values"]["root_module"]["child_modules"]
    return {r["address"].removeprefix("module.condvest."): r for r in module["resources"]}


def test_plan_lake_at_bucket_root_without_database(
    terraform: Terraform, initialised: Path, moto_endpoint: str, tmp_path: Path
) -> None:
    """iam.md: "for a lake at the bucket root drop <PREFIX>/ everywhere", "Drop the rds secret
    when PostgreSQL is off": the module's rendering of both, compared to the page's."""
    root = _root(
        tmp_path,
        moto_endpoint,
        lake_prefix="",
        database_secret_arn=None,
        create_bucket=False,
        consolidate_shards=1,
    )
    planned = _planned(terraform, initialised, root)
    documented = policies(bucket=BUCKET, prefix="")
    rds = DATABASE_SECRET
    for role, name in MODULE_POLICIES.items():
        expected = []
        for statement in _statements(documented[role]):
            resources = [r for r in statement["Resource"] if r != rds]
            if resources:
                expected.append({**statement, "Resource": resources})
        policy = json.loads(planned[f'aws_iam_role_policy.stage["{name}"]']["values"]["policy"])
        assert _statements(policy) == expected, role
    assert not any(a.startswith("aws_s3_bucket") for a in planned)
    variables = planned["aws_lambda_function.condvest"]["values"]["environment"][0]["variables"]
    assert variables["CONDVEST_LAKE__URI"] == f"s3://{BUCKET}"
    assert "CONDVEST_POSTGRES__SECRET_ARN" not in variables
    silver = planned['aws_glue_catalog_table.silver["3"]']["values"]["storage_descriptor"][0]
    assert silver["location"] == f"s3://{BUCKET}/" + layout.silver_prefix(3)


# -- applied against moto -------------------------------------------------------------------------
def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """IAM's equivalences: a one-string Resource is a list of one."""
    out = []
    for statement in policy["Statement"]:
        s = dict(statement)
        if isinstance(s.get("Resource"), str):
            s["Resource"] = [s["Resource"]]
        out.append(s)
    return out


def _run_cli(command: list[str], env: dict[str, str], lake: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONDVEST_")}
    environ.update(env, CONDVEST_LAKE__URI=str(lake))
    environ.pop("CONDVEST_POSTGRES__SECRET_ARN", None)  # no database here: the flags are checked
    return cli_proc.run(command, env=environ)


@pytest.fixture
def applied(
    terraform: Terraform, initialised: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, str, dict[str, bool]]]:
    # AmazonECSTaskExecutionRolePolicy must exist to be attached: moto loads AWS's managed
    # policies into the IAM backend the reset below recreates only when told to
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    terraform(initialised, "apply", "-auto-approve", "-input=false", "-no-color")
    cleanup = {"destroyed": False}
    yield initialised, moto_endpoint, cleanup
    if not cleanup["destroyed"]:  # the test failed before its own destroy
        terraform(initialised, "destroy", "-auto-approve", "-input=false", "-no-color", ok=False)


# first=True: started before every other test (conftest): it mostly waits on moto and the
# provider's pollers, so it overlaps the CPU-bound tests instead of trailing after them
@pytest.mark.slow(first=True)
def test_apply_against_moto_then_destroy(
    terraform: Terraform, applied: tuple[Path, str, dict[str, bool]], tmp_path: Path
) -> None:
    """One apply per run (slow: moto's Batch queue alone takes ~30 s each way), many checks."""
    root, endpoint, cleanup = applied
    problems: list[str] = []

    # Batch job definitions: real commands with valid flags, Fargate resources of batch.md
    batch = _client("batch", endpoint)
    definitions = {
        d["jobDefinitionName"]: d
        for d in batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    }
    assert set(definitions) == {
        f"condvest-{s}" for s in ("consolidate", "resample", "vacuum", "status")
    }
    lake = tmp_path / "lake"
    for name, definition in sorted(definitions.items()):
        props = definition["containerProperties"]
        command = props["command"]
        env = {e["name"]: e["value"] for e in props.get("environment", [])}
        if any(n.upper().startswith("AWS_BATCH") for n in env):
            problems.append(f"{name}: sets a name Batch reserves: {sorted(env)}")
        if env.get("CONDVEST_LAKE__URI") != f"s3://{BUCKET}/{PREFIX}":
            problems.append(f"{name}: lake {env.get('CONDVEST_LAKE__URI')}")
        if env.get("CONDVEST_METRICS__NAMESPACE") != "condvest":
            problems.append(f"{name}: emits to {env.get('CONDVEST_METRICS__NAMESPACE')}")
        resources = {r["type"]: r["value"] for r in props["resourceRequirements"]}
        if resources != {"VCPU": "2", "MEMORY": "4096"} or definition["platformCapabilities"] != [
            "FARGATE"
        ]:
            problems.append(f"{name}: {resources} {definition['platformCapabilities']}")
        if not props["jobRoleArn"].endswith(f":role/{name}"):
            problems.append(f"{name}: job role {props['jobRoleArn']}")
        subcommand = command[command.index("json") + 1]
        if subcommand == "consolidate":
            if command[-2:] != ["--shards", str(SHARDS)]:
                problems.append(f"{name}: {command} does not carry --shards {SHARDS}")
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(SHARDS - 1)  # the last child of the array
        dry = ["--dry-run"] if subcommand != "status" else []
        done = _run_cli([*command, *dry], env, lake)
        # status --check on an empty lake is a finding (exit 1), not a usage error (2)
        expected = {0, 1} if subcommand == "status" else {0}
        if done.returncode not in expected:
            problems.append(f"{name}: {command + dry} exited {done.returncode}: {done.stderr}")
        else:
            json.loads(done.stdout)  # --output json: one object

    # schedules: New York time, the configured HH:MM, targets that exist
    scheduler = _client("scheduler", endpoint)
    schedules = {
        s["Name"]: scheduler.get_schedule(Name=s["Name"])
        for s in scheduler.list_schedules()["Schedules"]
    }
    expected_cron = {
        "condvest-fetch-daily": "cron(35 16 ? * MON-FRI *)",
        "condvest-consolidate-daily": "cron(0 17 ? * MON-FRI *)",
        "condvest-resample-daily": "cron(30 17 ? * MON-FRI *)",
        "condvest-status-daily": "cron(5 18 ? * MON-FRI *)",
        "condvest-vacuum-weekly": "cron(0 8 ? * SUN *)",
    }
    assert {n: s["ScheduleExpression"] for n, s in schedules.items()} == expected_cron
    for name, schedule in schedules.items():
        if schedule["ScheduleExpressionTimezone"] != "America/New_York":
            problems.append(f"{name}: time zone {schedule['ScheduleExpressionTimezone']}")
        if not schedule["Target"]["RoleArn"].endswith(":role/condvest-scheduler"):
            problems.append(f"{name}: role {schedule['Target']['RoleArn']}")
        event = json.loads(schedule["Target"]["Input"])
        if name == "condvest-fetch-daily":
            assert schedule["Target"]["Arn"].endswith(":function:condvest")
            build_argv(event["command"], event["args"])  # the handler accepts the event
            continue
        assert schedule["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:batch:submitJob"
        job_definition = event["JobDefinition"].rsplit("/", 1)[-1]
        if job_definition not in definitions or not event["JobQueue"].endswith(
            ":job-queue/condvest"
        ):
            problems.append(f"{name}: submits {event}")
        if job_definition == "condvest-consolidate" and event.get("ArrayProperties") != {
            "Size": SHARDS
        }:
            problems.append(f"{name}: array size is not --shards {SHARDS}: {event}")

    # alarms and the dashboard: condvest's metrics are the contract's
    cloudwatch = _client("cloudwatch", endpoint)
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms()["MetricAlarms"]}
    assert set(alarms) == {"condvest-lambda-errors", "condvest-sessions-behind"}
    for alarm in alarms.values():
        metric = (alarm["Namespace"], alarm["MetricName"])
        if alarm["Namespace"] == "condvest":
            if alarm["MetricName"] not in CONTRACT_NAMES:
                problems.append(f"{alarm['AlarmName']}: {metric} is not in metrics.json")
        elif metric not in AWS_METRICS:
            problems.append(f"{alarm['AlarmName']}: {metric}")
    behind = alarms["condvest-sessions-behind"]
    assert behind["TreatMissingData"] == "breaching"
    assert (behind["Threshold"], behind["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert {d["Name"]: d["Value"] for d in behind["Dimensions"]} == {
        "Stage": "status",
        "Lake": f"s3://{BUCKET}/{PREFIX}",
    }
    body = json.loads(cloudwatch.get_dashboard(DashboardName="condvest")["DashboardBody"])
    shown = {
        row[1]
        for w in body["widgets"]
        for row in w["properties"]["metrics"]
        if row[0] == "condvest"
    }
    assert shown and shown <= CONTRACT_NAMES, sorted(shown - CONTRACT_NAMES)
    assert {"StageDuration", "RowsLanded", "RowsQuarantined", "SessionsBehind"} <= shown
    assert "SilverLagSessions" in shown

    # Batch FAILED -> SNS
    events = _client("events", endpoint)
    rule = events.describe_rule(Name="condvest-batch-job-failed")
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail-type"] == ["Batch Job State Change"]
    assert pattern["detail"]["status"] == ["FAILED"]
    targets = events.list_targets_by_rule(Rule="condvest-batch-job-failed")["Targets"]
    assert [t["Arn"].rsplit(":", 1)[-1] for t in targets] == ["condvest-alerts"]

    # IAM: each role's policy is iam.md's with the placeholders filled as tests/deploy_docs does
    iam = _client("iam", endpoint)
    documented = policies(bucket=BUCKET, prefix=PREFIX)
    for role in MODULE_POLICIES:
        attached = iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"]
        if isinstance(attached, str):
            attached = json.loads(attached)
        if _statements(attached) != _statements(documented[role]):
            problems.append(f"{role}: the applied policy differs from iam.md's")

    # the function: an image, the lake, its log group with retention
    function = _client("lambda", endpoint).get_function(FunctionName="condvest")["Configuration"]
    assert function["PackageType"] == "Image"
    variables = function["Environment"]["Variables"]
    assert variables["CONDVEST_LAKE__URI"] == f"s3://{BUCKET}/{PREFIX}"
    assert variables["CONDVEST_METRICS__NAMESPACE"] == "condvest"
    logs = _client("logs", endpoint)
    groups = {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}
    for group in ("/aws/lambda/condvest", "/aws/batch/condvest"):
        assert groups[group].get("retentionInDays") == 30, group

    # the bucket's lifecycle rule for the run records
    s3 = _client("s3", endpoint)
    rules = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    runs = [r for r in rules if r["ID"] == "condvest-run-records"]
    assert runs and runs[0]["Filter"]["Prefix"] == f"{PREFIX}/{layout.RUNS_PREFIX}"

    # Glue: locations and columns from layout.py and schema.py
    glue = _client("glue", endpoint)
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="condvest")["TableList"]}
    base = f"s3://{BUCKET}/{PREFIX}/"
    intervals = [3, 5, 8, 13, 21, 34]
    assert set(tables) == {"bronze_ohlcv", *(f"silver_{i}d" for i in intervals)}
    bronze = tables["bronze_ohlcv"]["StorageDescriptor"]
    assert bronze["Location"] == base + layout.BRONZE_OHLCV + "/"
    assert [c["Name"] for c in bronze["Columns"]] == schema.BRONZE_SCHEMA.names
    for interval in intervals:
        table = tables[f"silver_{interval}d"]
        assert table["StorageDescriptor"]["Location"] == base + layout.silver_prefix(interval)
        template = table["Parameters"]["storage.location.template"]
        one = template.replace("${year}", "2026").replace("${month}", "03")
        assert one == base + layout.silver_file(interval, 2026, 3).rsplit("/", 1)[0] + "/"
        assert [
            c["Name"] for c in table["StorageDescriptor"]["Columns"]
        ] == schema.SILVER_SCHEMA.names
        assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month"]

    assert not problems, "\n".join(problems)

    terraform(root, "destroy", "-auto-approve", "-input=false", "-no-color")
    cleanup["destroyed"] = True
    state = json.loads(terraform(root, "show", "-json", "-no-color").stdout)
    assert not state.get("values"), "resources left in the state after destroy"
    assert not batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert not scheduler.list_schedules()["Schedules"]
    assert not cloudwatch.describe_alarms()["MetricAlarms"]

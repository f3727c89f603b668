"""Least privilege proven, not asserted: the documented consolidate job (with a cleanup due),
the documented weekly vacuum (no --symbols: it lists the lake root) and fetch run through the
CLI against the S3 server while every request is recorded (tests/iam_policy.RecordingS3); each
request is then authorised against that stage's policy from docs/deploy/iam.md, as AWS would,
with a small evaluator. Every request of each stage is allowed by its own role; requests outside
a role are denied; and the grants issue 20 added are each needed by a recorded request."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

import cli_proc
from condvest.core import layout
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from conftest import Lake, make_s3_lake
from consolidate_helpers import date_files, land
from deploy_docs import DEPLOY, consolidate_jobs, policies
from iam_policy import HttpRequest, RecordingS3, Request, evaluate, s3_authorisations

SYMBOLS = ["AAPL", "BRK.A", "MSFT", "ZZ"]
TODAY = date.today()
OLD = [TODAY - timedelta(days=62), TODAY - timedelta(days=61)]
"""Past the documented 30-day retention: consolidate deletes them once merged."""
RECENT = TODAY - timedelta(days=2)


@pytest.fixture(scope="module")
def recorder(moto_endpoint: str) -> Iterator[RecordingS3]:
    server = RecordingS3()  # same in-process backend as moto_endpoint's server
    yield server
    server.stop()


def _stage_command(job_definition: str) -> list[str]:
    """A stage's container command from batch.md's table."""
    text = (DEPLOY / "batch.md").read_text()
    found = re.search(rf"^\| `{job_definition}` \| `(\[[^`]*\])`", text, re.MULTILINE)
    assert found, f"batch.md has no row for {job_definition}"
    command: list[str] = json.loads(found.group(1))
    return command


def _run(command: list[str], lake: Lake, endpoint: str, **env: str) -> tuple[dict[str, Any], str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("CONDVEST_")}
    environ.update(env, CONDVEST_LAKE__URI=lake.uri, CONDVEST_S3__ENDPOINT_URL=endpoint)
    done = cli_proc.run(command, env=environ)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def _authorisations(requests: list[HttpRequest]) -> list[Request]:
    return [a for r in requests for a in s3_authorisations(r)]


def _denied(policy: dict[str, Any], requests: list[Request]) -> list[str]:
    return [str(r) for r in requests if evaluate(policy, r) != "allow"]


def _lake_prefix(prefix: str) -> str:
    """The S3 key prefix of the lake root as condvest lists it."""
    return f"{prefix}/" if prefix else ""


@pytest.mark.parametrize("prefix", ["lake", ""], ids=["prefix", "bucket-root"])
def test_each_stage_is_allowed_by_its_own_role(
    prefix: str, moto_endpoint: str, s3_bucket: str, recorder: RecordingS3
) -> None:
    lake = make_s3_lake(moto_endpoint, s3_bucket, prefix)  # set-up, not recorded
    for symbol in SYMBOLS:
        for day in [*OLD, RECENT]:
            land(lake.storage, symbol, day)
    roles = policies(bucket=s3_bucket, prefix=prefix)
    definition = consolidate_jobs()[0]
    assert definition.source == "batch.md job definition"

    # consolidate, as the documented job definition runs it (a plain job), cleanup due
    with recorder.recording() as requests:
        body, _ = _run(
            list(definition.command), lake, recorder.endpoint, **dict(definition.environment)
        )
    assert body["symbols_done"] == len(SYMBOLS)
    assert body["files_deleted"] == len(SYMBOLS) * len(OLD)
    assert lake.storage.list_objects(layout.CLEANUP_JOURNAL_PREFIX) == []
    consolidate = _authorisations(requests)
    assert not _denied(roles["condvest-consolidate"], consolidate), "\n".join(
        _denied(roles["condvest-consolidate"], consolidate)
    )
    journal = f"arn:aws:s3:::{s3_bucket}/{_lake_prefix(prefix)}{layout.CLEANUP_JOURNAL_PREFIX}"
    assert any(
        r.action == "s3:DeleteObject" and r.resource.startswith(journal) for r in consolidate
    )

    # vacuum: old date files merged but kept (--skip-cleanup), and stale temporaries
    for symbol in SYMBOLS:
        land(lake.storage, symbol, TODAY - timedelta(days=45))
    ctx = lake.context()
    assert run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(skip_cleanup=True))).ok
    temps = [  # condvest's own temp names (vacuum deletes no other)
        "silver/interval=3d/.tmp-0123456789ab-data.parquet",
        "processing_metadata/.tmp-abcdef012345-x.json",
    ]
    for key in temps:
        lake.storage.write_bytes(key, b"left by a crashed write")
    with recorder.recording() as requests:
        body, _ = _run(
            _stage_command("condvest-vacuum"),
            lake,
            recorder.endpoint,
            CONDVEST_VACUUM__TEMP_GRACE_HOURS="0",  # the temporaries above count as stale
        )
    assert (body["files_deleted"], body["temp_files_deleted"]) == (len(SYMBOLS), len(temps))
    assert all(date_files(lake.storage, s) == [RECENT] for s in SYMBOLS)
    vacuum = _authorisations(requests)
    assert not _denied(roles["condvest-vacuum"], vacuum), "\n".join(
        _denied(roles["condvest-vacuum"], vacuum)
    )
    root = Request(
        "s3:ListBucket",
        f"arn:aws:s3:::{s3_bucket}",
        {"s3:prefix": _lake_prefix(prefix), "s3:delimiter": "/"},
    )
    assert root in vacuum  # the lake root's top level: is this a condvest lake? (issue 13/20)

    # the grants issue 20 added are each needed by a request just made
    narrowed = copy.deepcopy(roles["condvest-consolidate"])
    for statement in narrowed["Statement"]:
        if isinstance(statement["Resource"], list):
            statement["Resource"] = [
                r for r in statement["Resource"] if "consolidate_cleanup" not in r
            ]
    assert _denied(narrowed, consolidate)
    narrowed = copy.deepcopy(roles["condvest-vacuum"])
    for statement in narrowed["Statement"]:
        if "Condition" in statement:
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            prefixes.remove(_lake_prefix(prefix))
    assert _denied(narrowed, vacuum)
    # and a read-only role would not do: the evaluator really tells them apart
    assert _denied(roles["condvest-status"], consolidate)
    assert _denied(roles["condvest-status"], vacuum)


@pytest.mark.parametrize("prefix", ["lake", ""], ids=["prefix", "bucket-root"])
def test_fetch_is_allowed_by_its_role(
    prefix: str, moto_endpoint: str, s3_bucket: str, recorder: RecordingS3
) -> None:
    """The documented fetch command (offline: the synthetic source) on an empty lake."""
    lake = make_s3_lake(moto_endpoint, s3_bucket, prefix)
    with recorder.recording() as requests:
        body, _ = _run(
            _stage_command("condvest-fetch"),
            lake,
            recorder.endpoint,
            CONDVEST_FETCH__SOURCE="synthetic",
            CONDVEST_FETCH__SYNTHETIC_SYMBOLS="5",
        )
    assert body["ok"] and body["rows"] > 0
    fetch = _authorisations(requests)
    assert any(r.action == "s3:PutObject" for r in fetch)
    role = policies(bucket=s3_bucket, prefix=prefix)["condvest-fetch"]
    assert not _denied(role, fetch), "\n".join(_denied(role, fetch))


def test_requests_outside_a_role_are_denied() -> None:
    roles = policies(bucket="b", prefix="lake")
    bucket, obj = "arn:aws:s3:::b", "arn:aws:s3:::b/lake/"
    date_file = obj + "bronze/raw_ohlcv/symbol=AAPL/date=2026-01-05.parquet"
    cases = {
        "condvest-fetch": [
            Request("s3:DeleteObject", date_file),  # fetch never deletes bronze
            Request("s3:PutObject", obj + "silver/interval=3d/data.parquet"),
            Request("s3:PutObject", "arn:aws:s3:::b/other/bronze/raw_ohlcv/x.parquet"),
        ],
        "condvest-consolidate": [
            Request("s3:PutObject", obj + "silver/interval=3d/data.parquet"),
            Request("s3:PutObject", "arn:aws:s3:::b/lake2/bronze/raw_ohlcv/x.parquet"),
            Request("s3:DeleteObject", obj + "processing_metadata/consolidation_manifest.parquet"),
            Request("s3:ListBucket", bucket, {"s3:prefix": "lake/silver/"}),  # not its input
            Request("s3:ListBucket", bucket, {"s3:prefix": "other/"}),
            Request("s3:ListBucket", bucket),  # no prefix at all
            Request("s3:DeleteBucket", bucket),
        ],
        "condvest-vacuum": [
            Request("s3:PutObject", date_file),  # vacuum writes no bronze
            Request("s3:DeleteObject", obj + "silver/interval=3d/year=2026/data.parquet"),
            Request("s3:DeleteObject", obj + "processing_metadata/consolidation_manifest.parquet"),
            Request("s3:ListBucket", bucket, {"s3:prefix": "lake-old/"}),
        ],
        "condvest-status": [Request("s3:PutObject", obj + "processing_metadata/runs/x.json")],
    }
    allowed = [
        f"{role}: {r}"
        for role, requests in cases.items()
        for r in requests
        if evaluate(roles[role], r) != "implicit-deny"
    ]
    assert not allowed, allowed
    # and what each role is for is allowed
    assert evaluate(roles["condvest-consolidate"], Request("s3:DeleteObject", date_file)) == "allow"
    assert evaluate(roles["condvest-fetch"], Request("s3:PutObject", date_file)) == "allow"


def test_the_evaluator() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/a/*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/a/secret?"},
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::b",
                "Condition": {"StringLike": {"s3:prefix": ["", "a/*"]}},
            },
        ],
    }
    assert evaluate(policy, Request("S3:getobject", "arn:aws:s3:::b/a/x/y")) == "allow"
    assert evaluate(policy, Request("s3:GetObject", "arn:aws:s3:::b/a/secret1")) == "deny"
    assert evaluate(policy, Request("s3:GetObject", "arn:aws:s3:::b/A/x")) == "implicit-deny"
    assert evaluate(policy, Request("s3:PutObject", "arn:aws:s3:::b/a/x")) == "implicit-deny"
    listing = "arn:aws:s3:::b"
    assert evaluate(policy, Request("s3:ListBucket", listing, {"s3:prefix": "a/"})) == "allow"
    assert evaluate(policy, Request("s3:ListBucket", listing, {"s3:prefix": ""})) == "allow"
    assert (
        evaluate(policy, Request("s3:ListBucket", listing, {"s3:prefix": "ab"})) == "implicit-deny"
    )
    assert evaluate(policy, Request("s3:ListBucket", listing)) == "implicit-deny"
    with pytest.raises(ValueError, match="NumericLessThan"):
        evaluate(
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "*",
                        "Resource": "*",
                        "Condition": {"NumericLessThan": {"k": "1"}},
                    }
                ]
            },
            Request("s3:GetObject", "arn:aws:s3:::b/x"),
        )


def test_s3_requests_map_to_their_authorisations() -> None:
    def one(method: str, target: str, body: bytes = b"", **headers: str) -> list[str]:
        return [str(r) for r in s3_authorisations(HttpRequest(method, target, headers, body))]

    assert one("GET", "/b?list-type=2&prefix=lake%2Fbronze%2F") == [
        "s3:ListBucket arn:aws:s3:::b s3:prefix='lake/bronze/'"
    ]
    assert one("GET", "/b?list-type=2&prefix=") == ["s3:ListBucket arn:aws:s3:::b s3:prefix=''"]
    assert one("HEAD", "/b/lake/symbol%3DBRK.A/x") == [
        "s3:GetObject arn:aws:s3:::b/lake/symbol=BRK.A/x"
    ]
    assert one("PUT", "/b/k") == ["s3:PutObject arn:aws:s3:::b/k"]
    assert one("DELETE", "/b/k") == ["s3:DeleteObject arn:aws:s3:::b/k"]
    delete = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a/1</Key></Object><Object><Key>a/2</Key></Object></Delete>'
    assert one("POST", "/b?delete", delete) == [
        "s3:DeleteObject arn:aws:s3:::b/a/1",
        "s3:DeleteObject arn:aws:s3:::b/a/2",
    ]
    with pytest.raises(AssertionError, match="unmapped"):
        one("PUT", "/b/k?tagging")

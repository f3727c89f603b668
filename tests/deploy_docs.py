"""docs/deploy/ as data: every ```json block with the marker comment that says what it is for,
its placeholders filled, and the consolidate jobs the pages describe (command, environment,
array size), for tests/test_deploy_docs.py and tests/test_deploy_iam.py.

A marker is the last non-blank line before the fence:

* ``<!-- botocore: SERVICE OPERATION -->``: the block is the operation's input
  (``aws … --cli-input-json``); ``… fragment`` merges it into the page's previous block of that
  operation; ``… definition``: the block is a Step Functions definition (the string
  ``definition`` of CreateStateMachine);
* ``<!-- iam: policy ROLE -->`` / ``<!-- iam: trust -->``: an IAM policy document;
* ``<!-- condvest: lambda-event -->`` / ``<!-- condvest: lambda-response -->``: the handler's
  input and output, checked by the Lambda tests."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
_FENCE = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"^<!--\s*(botocore|iam|condvest):\s*(.*?)\s*-->$")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")
VALUES = {
    "<ACCOUNT_ID>": "123456789012",
    "<REGION>": "us-east-1",
    "<VERSION>": "1.0.0",
    "<ID>": "0a1b2c3d",
}


@dataclass(frozen=True)
class Block:
    page: str
    number: int
    kind: str
    """botocore, iam or condvest; "" when the block has no marker."""
    what: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"{self.page} json block #{self.number} ({self.kind}: {' '.join(self.what)})"

    def data(self, bucket: str = "condvest-lake", prefix: str = "lake") -> Any:
        return json.loads(fill(self.text, bucket, prefix))


def fill(text: str, bucket: str = "condvest-lake", prefix: str = "lake") -> str:
    """Placeholders → values; an empty ``prefix`` is a lake at the bucket root (iam.md: drop
    ``<PREFIX>/`` everywhere). Any placeholder left over is an error."""
    if not prefix:
        text = text.replace("<PREFIX>/", "")
    text = text.replace("<BUCKET>", bucket).replace("<PREFIX>", prefix)
    for name, value in VALUES.items():
        text = text.replace(name, value)
    left = _PLACEHOLDER.findall(text)
    if left:
        raise AssertionError(f"placeholders without a value: {sorted(set(left))}")
    return text


def blocks(page: str | None = None) -> list[Block]:
    """Every ```json block of docs/deploy (or of one page), in order."""
    pages = [DEPLOY / f"{page}.md"] if page else sorted(DEPLOY.glob("*.md"))
    out = []
    for path in pages:
        text = path.read_text()
        for number, match in enumerate(_FENCE.finditer(text), start=1):
            before = [line for line in text[: match.start()].splitlines() if line.strip()]
            marker = _MARKER.match(before[-1].strip()) if before else None
            kind, what = (marker.group(1), tuple(marker.group(2).split())) if marker else ("", ())
            out.append(Block(path.stem, number, kind, what, match.group(1)))
    return out


def operation_inputs(
    bucket: str = "condvest-lake", prefix: str = "lake"
) -> list[tuple[Block, Any]]:
    """(block, input) of every botocore block; a fragment is merged into the previous whole
    block of its operation on the same page."""
    out: list[tuple[Block, Any]] = []
    last: dict[tuple[str, str, str], Any] = {}
    for block in blocks():
        if block.kind != "botocore":
            continue
        service, operation, *mode = block.what
        data = block.data(bucket, prefix)
        key = (block.page, service, operation)
        if mode == ["fragment"]:
            assert key in last, f"{block.where}: no whole {operation} block before the fragment"
            data = deep_merge(last[key], data)
        else:
            last[key] = data
        out.append((block, data))
    return out


def deep_merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = copy.deepcopy(base)
        for key, value in top.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(top)


def policies(bucket: str = "condvest-lake", prefix: str = "lake") -> dict[str, Any]:
    """iam.md's role policies by role name (trust policies under "trust")."""
    out: dict[str, Any] = {}
    for block in blocks("iam"):
        if block.kind == "iam":
            name = block.what[1] if block.what[0] == "policy" else "trust"
            out[name] = block.data(bucket, prefix)
    return out


# -- the consolidate jobs the pages describe ------------------------------------------------------
@dataclass(frozen=True)
class BatchJob:
    """One way the pages submit consolidate: the container command, its environment (the job
    definition's, then the submission's overrides) and the array size (None: a plain job)."""

    source: str
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    array_size: int | None


def _pairs(items: list[dict[str, str]] | None, name: str = "name", value: str = "value") -> list:
    return [(item[name], item[value]) for item in items or []]


def _camel(data: Any) -> Any:
    """Step Functions' Batch integration spells SubmitJob's members in PascalCase."""
    if isinstance(data, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_camel(v) for v in data]
    return data


def state_machine_tasks(definition: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(state name, integration resource, Parameters) of every Task state."""
    return [
        (name, state["Resource"], state.get("Parameters", {}))
        for name, state in definition["States"].items()
        if state["Type"] == "Task"
    ]


def consolidate_jobs() -> list[BatchJob]:
    """Every consolidate job of batch.md, step-functions.md and eventbridge.md, resolved against
    batch.md's job definition, plus batch.md's inline command overrides (as plain jobs)."""
    inputs = operation_inputs()
    definitions = {
        data["jobDefinitionName"]: data
        for block, data in inputs
        if block.what == ("batch", "RegisterJobDefinition")
    }
    definition = definitions["condvest-consolidate"]["containerProperties"]
    base_env = _pairs(definition.get("environment"))
    jobs = [
        BatchJob("batch.md job definition", tuple(definition["command"]), tuple(base_env), None)
    ]

    def submitted(source: str, submit: dict[str, Any]) -> None:
        if submit["jobDefinition"].rsplit("/", 1)[-1] != "condvest-consolidate":
            return
        overrides = submit.get("containerOverrides", {})
        command = overrides.get("command", definition["command"])
        env = base_env + _pairs(overrides.get("environment"))
        size = submit.get("arrayProperties", {}).get("size")
        jobs.append(BatchJob(source, tuple(command), tuple(env), size))

    for block, data in inputs:
        if block.what == ("batch", "SubmitJob"):
            submitted(f"{block.page}.md SubmitJob #{block.number}", data)
        elif block.what[:2] == ("stepfunctions", "CreateStateMachine"):
            for name, resource, parameters in state_machine_tasks(data):
                if resource.startswith("arn:aws:states:::batch:submitJob"):
                    submitted(f"{block.page}.md state {name}", _camel(parameters))
        elif block.what == ("events", "PutTargets"):
            for target in data["Targets"]:
                if "BatchParameters" in target:
                    submitted(
                        f"{block.page}.md target {target['Id']}", _camel(target["BatchParameters"])
                    )
    text = (DEPLOY / "batch.md").read_text()
    for inline in re.findall(r"`(\[[^`\]]*\"consolidate\"[^`]*\])`", text):
        jobs.append(
            BatchJob("batch.md inline override", tuple(json.loads(inline)), tuple(base_env), None)
        )
    return jobs

"""docs/deploy/ holds JSON meant to be pasted into the AWS CLI: every ```json block must parse,
and the pieces that refer to each other must agree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
PAGES = ("README", "eventbridge", "batch", "lambda", "iam", "step-functions", "cron")
_BLOCK = re.compile(r"^```json[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def json_blocks(page: Path) -> list[tuple[int, str]]:
    """(block number from 1, text) of every ```json fence in ``page``."""
    return [(n, m.group(1)) for n, m in enumerate(_BLOCK.finditer(page.read_text()), start=1)]


def parsed(name: str) -> list[Any]:
    return [json.loads(text) for _, text in json_blocks(DEPLOY / f"{name}.md")]


def test_every_page_exists() -> None:
    missing = [p for p in PAGES if not (DEPLOY / f"{p}.md").is_file()]
    assert not missing, f"docs/deploy is missing {missing}"


def test_every_json_block_parses() -> None:
    failures = []
    total = 0
    for page in sorted(DEPLOY.glob("*.md")):
        for number, text in json_blocks(page):
            total += 1
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                failures.append(f"{page.name} json block #{number}: {exc}")
    assert not failures, "\n".join(failures)
    assert total >= 20  # the pages really carry their JSON (a broken fence would hide blocks)


def test_fence_regex_finds_blocks() -> None:
    text = 'a\n```json\n{"a": 1}\n```\nb\n```json\n[1,\n```\n'
    page = DEPLOY.parent / "_probe.md"
    try:
        page.write_text(text)
        blocks = json_blocks(page)
    finally:
        page.unlink()
    assert [n for n, _ in blocks] == [1, 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(blocks[1][1])


def test_iam_policies_are_complete_documents() -> None:
    policies = [b for b in parsed("iam") if isinstance(b, dict) and "Statement" in b]
    assert len(policies) >= 7
    for policy in policies:
        assert policy["Version"] == "2012-10-17"
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Action"]
            assert statement.get("Resource") or statement.get("Principal")


def test_state_machine_transitions_point_at_states() -> None:
    (machine,) = [b for b in parsed("step-functions") if "States" in b]
    states = machine["States"]
    assert machine["StartAt"] in states
    targets = []
    for state in states.values():
        targets += [state[k] for k in ("Next", "Default") if k in state]
        targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
    assert targets and all(t in states for t in targets), targets
    assert any(s["Type"] == "Fail" for s in states.values())


def test_batch_job_definitions_use_the_original_resources() -> None:
    definitions = [b for b in parsed("batch") if "jobDefinitionName" in b]
    assert definitions
    for definition in definitions:
        resources = {
            r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]
        }
        assert resources == {"VCPU": "2", "MEMORY": "4096"}
        # Exit code 2 (usage/config error) must not be retried.
        rules = definition["retryStrategy"]["evaluateOnExit"]
        assert rules[0] == {"onExitCode": "2", "action": "EXIT"}


def test_lambda_doc_events_are_accepted_by_the_handler() -> None:
    from datetime import date

    from condvest.aws.events import EventError, parse_event

    events = [b for b in parsed("lambda") if isinstance(b, dict) and "FunctionName" not in b]
    events = [e for e in events if "AlarmName" not in e and "stage" not in e]
    assert len(events) >= 4
    for event in events:
        try:
            parse_event(event, env={}, today=date(2026, 11, 25))
        except EventError as exc:  # every documented event must map onto real options
            raise AssertionError(f"{event}: {exc}") from None

"""Docs that cannot drift (after sqlite-utils' tests/test_docs.py): every command and option has
help text and a mention in docs/commands/, the README's two commands exist, CI runs the README's
test command, and every setting and legacy name is documented. Generic over the typer app, so it
keeps working as commands gain options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from condvest.cli.app import app
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV, SECTIONS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# typer 0.29 vendors click, so the objects are inspected by duck typing, not isinstance.
ROOT = typer.main.get_command(app)
COMMANDS: dict[str, Any] = dict(ROOT.commands)  # type: ignore[attr-defined]


def mentions(param: Any) -> list[str]:
    """The names a page must mention for ``param``: every long option name (``--dry-run``,
    ``--no-dry-run``), or an argument's metavar."""
    if param.param_type_name == "option":
        return [name for name in (*param.opts, *param.secondary_opts) if name.startswith("--")]
    # typer's own arguments name themselves in upper case (WHAT), as the pages write them
    return [getattr(param, "human_readable_name", None) or str(param.name).upper()]


def undocumented(command: Any, page: str) -> list[str]:
    """Names of ``command``'s parameters that lack help text or a mention in ``page``."""
    missing: list[str] = []
    for param in command.params:
        if not getattr(param, "help", None):
            missing.append(f"{param.name} (no help text)")
        for name in mentions(param):
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page):
                missing.append(name)
    return missing


def test_every_command_has_help_text() -> None:
    assert ROOT.help
    for name, command in COMMANDS.items():
        assert command.help and len(command.help.split()) >= 4, f"{name} has no help text"
        assert command.get_short_help_str(), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_documented(name: str) -> None:
    page = DOCS / "commands" / f"{name}.md"
    assert page.is_file(), f"docs/commands/{name}.md is missing"
    text = page.read_text()
    assert text.startswith(f"# condvest {name}")
    assert undocumented(COMMANDS[name], text) == []


def test_global_options_are_documented() -> None:
    assert undocumented(ROOT, (DOCS / "commands" / "index.md").read_text()) == []


def test_index_links_every_command() -> None:
    index = (DOCS / "commands" / "index.md").read_text()
    for name in COMMANDS:
        assert f"`{name}`" in index and f"({name}.md)" in index, name
    pages = {p.stem for p in (DOCS / "commands").glob("*.md")} - {"index"}
    assert pages == set(COMMANDS), "a page documents a command that does not exist"


def test_the_checker_notices_a_missing_option() -> None:
    """The checks above can fail: an undocumented option and a missing help text are found."""
    probe = typer.Typer(add_completion=False)

    @probe.command()
    def cmd(
        documented: bool = typer.Option(False, "--documented", help="In the page."),
        hidden: int = typer.Option(0, "--hidden-gem", help="Not in the page."),
        bare: str = typer.Option("", "--bare"),
    ) -> None:
        """A probe."""

    command = typer.main.get_command(probe)
    page = "`--documented` and `--bare`, also --hidden-gemstone"
    assert undocumented(command, page) == ["--hidden-gem", "bare (no help text)"]


def test_readme_has_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)


def test_ci_runs_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "make test" in lines
    assert "export CONDVEST_REQUIRE_POSTGRES=1" in lines


def test_configuration_doc_names_every_section_and_legacy_name() -> None:
    text = (DOCS / "configuration.md").read_text()
    for name in (*LEGACY_ENV, *LEGACY_BUCKET_ENV):
        assert f"`{name}`" in text, f"{name} is not in docs/configuration.md"
    assert "condvest.example.toml" in text
    example = (REPO / "condvest.example.toml").read_text()
    for section in SECTIONS:
        assert f"[{section}]" in example

"""Dependencies point down (docs/design.md §13): ``condvest.core`` is pure logic and loads none of
the adapters; only ``condvest.cli`` loads typer and rich. Checked in a fresh interpreter, where
nothing else has imported them already."""

from __future__ import annotations

import json
import subprocess
import sys

# Every module of condvest.core, present and future.
IMPORT_ALL_CORE = (
    "import importlib, pkgutil, condvest.core\n"
    "for info in pkgutil.iter_modules(condvest.core.__path__, 'condvest.core.'):\n"
    "    importlib.import_module(info.name)"
)
ADAPTERS = ("typer", "rich", "click", "aiohttp", "s3fs", "fsspec", "boto3", "botocore", "psycopg")


def loaded_after(code: str) -> list[str]:
    """Top-level packages of interest in ``sys.modules`` after running ``code``."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def test_core_loads_no_adapter() -> None:
    modules = loaded_after(
        IMPORT_ALL_CORE + "\nfrom condvest.core.calendar import get_calendar\n"
        "get_calendar().latest_completed_session(__import__('datetime').datetime.now("
        "__import__('datetime').UTC))"
    )
    assert "condvest" in modules and "pyarrow" in modules  # the probe did import core
    assert [m for m in ADAPTERS if m in modules] == []


def test_core_imports_nothing_above_it() -> None:
    probe = (
        "import json, sys\n"
        f"{IMPORT_ALL_CORE}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('condvest'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    modules = set(json.loads(out.stdout))
    assert "condvest.core.layout" in modules and "condvest.core.calendar" in modules
    above = {
        m
        for m in modules
        if m not in ("condvest", "condvest.errors") and not m.startswith("condvest.core")
    }
    assert above == set(), "condvest.core imports modules above it"


def test_jobs_load_no_cli_library() -> None:
    modules = loaded_after("import condvest.jobs.base, condvest.jobs.status.job")
    assert [m for m in ("typer", "rich", "click") if m in modules] == []


def test_no_module_imports_a_private_name_of_another() -> None:
    """A leading underscore means "this module's own": another module that needs the name
    makes it public instead (issue 15)."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("condvest"):
                found += [
                    f"{path.relative_to(src)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert found == []

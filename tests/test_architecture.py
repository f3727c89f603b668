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
        if m not in ("condvest", "condvest.version", "condvest.errors")
        and not m.startswith("condvest.core")
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


def _module_imports() -> dict[str, set[str]]:
    """Module of src/ → the modules of src/ it imports, at module level or inside a function
    (a lazy import is a dependency all the same), ``if TYPE_CHECKING:`` blocks left out.
    Importing ``a.b.c`` also runs the packages ``a.b`` and ``a`` (their ``__init__`` is a module
    here), except those the importing module is itself inside: they are loaded already."""
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    files: dict[str, Path] = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def with_packages(importer: str, target: str) -> set[str]:
        out = {target}
        parts = target.split(".")
        for n in range(1, len(parts)):
            package = ".".join(parts[:n])
            if not (importer == package or importer.startswith(package + ".")):
                out.add(package)
        return out & files.keys()

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        found: set[str] = set()
        is_package = path.name == "__init__.py"
        stack: list[ast.AST] = [ast.parse(path.read_text())]
        while stack:
            node = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    stack.extend(child.orelse)
                    continue
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:  # relative: from the importing module's package
                        anchor = module.split(".")
                        anchor = anchor[: len(anchor) - child.level + (1 if is_package else 0)]
                        base = ".".join([*anchor, base] if base else anchor)
                    # ``from p import m`` of a submodule ``m`` needs ``m`` (and p's parents);
                    # a name defined in ``p`` needs ``p`` itself
                    targets = [
                        f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                        for alias in child.names
                    ]
                for target in targets:
                    while target and target not in files:  # a name inside a module
                        target = target.rpartition(".")[0]
                    if target:
                        found |= with_packages(module, target)
                stack.append(child)
        found.discard(module)
        graph[module] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import cycle through the component's first module, as a path back to it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component


def test_no_import_cycle() -> None:
    """Dependencies between the modules of src/ form no cycle, lazy imports included: a cycle
    is two modules that can only be understood (and changed) together (issue 15)."""
    graph = _module_imports()
    assert "condvest.jobs.base" in graph["condvest.lake"]  # the probe did read the imports
    cycles = [" → ".join(_a_cycle(graph, c)) for c in _cycles(graph)]
    assert cycles == [], "import cycles in src/:\n" + "\n".join(cycles)

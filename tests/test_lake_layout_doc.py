"""docs/lake-layout.md against condvest.core.layout, both ways: every path the module builds (its
builder functions and its path constants) matches a line of the page's layout block, and every
line of that block is built by the module. A new path, or one renamed, fails here until the page
says it."""

from __future__ import annotations

import inspect
import itertools
import re
from datetime import date
from pathlib import Path

import pytest

from condvest.core import layout

PAGE = Path(__file__).resolve().parents[1] / "docs" / "lake-layout.md"

# Sample values per builder parameter name (every one is tried). A builder with a parameter not
# named here fails the test: give it samples, and document the paths it builds.
SAMPLES: dict[str, tuple[object, ...]] = {
    "symbol": ("BRK.A",),
    "day": (date(2024, 3, 15),),
    "interval": (5,),
    "year": (2024,),
    "month": (3,),
    "run_id": ("20240315T220000Z-1a2b3c",),
    "name": ("daily",),
    "stage": ("fetch",),
    "started_iso": ("2024-03-15T22:00:00Z",),
    "scope": ("shard-0",),
    "kind": layout.ACTION_KINDS,
}
NOT_BUILDERS = {"validate_symbol"}
"""Public functions returning ``str`` that return no path."""
TEMP_BUILDERS = {"temp_key", "grave_key"}
"""Sibling temporary names: documented in the page's prose, checked apart below."""


def _page_templates() -> list[str]:
    """The layout block's paths (``<lake>/`` stripped), in page order."""
    block = PAGE.read_text().split("```", 2)[1]
    return [
        line.split()[0].removeprefix("<lake>/")
        for line in block.splitlines()
        if line.startswith("<lake>/")
    ]


def _pattern(template: str) -> re.Pattern[str]:
    """``a/<X>/b=<Y>.json`` → a regex in which each ``<placeholder>`` is one path segment part."""
    parts = re.split(r"<[^<>/]+>", template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + r"\Z")


def _built_paths() -> dict[str, str]:
    """Every path the module builds: name → path (a prefix ends with '/')."""
    out: dict[str, str] = {}
    for name, fn in inspect.getmembers(layout, inspect.isfunction):
        if fn.__module__ != layout.__name__ or name.startswith("_"):
            continue
        if name.startswith(("parse_", "is_")) or name in NOT_BUILDERS | TEMP_BUILDERS:
            continue
        sig = inspect.signature(fn)
        if sig.return_annotation not in ("str", str):
            continue
        missing = [p for p in sig.parameters if p not in SAMPLES]
        assert not missing, f"layout.{name}: no sample for {missing}; add one to SAMPLES"
        for values in itertools.product(*(SAMPLES[p] for p in sig.parameters)):
            out[f"{name}{values}"] = fn(*values)
    roots = (*layout.LAKE_DIRS, layout.LAKE_MARKER)
    for name, value in vars(layout).items():
        if name.isupper() and isinstance(value, str) and value.startswith(roots):
            last = value.rstrip("/").rsplit("/", 1)[-1]
            out[name] = value if value.endswith("/") or "." in last else value + "/"
    return out


def _matches(path: str, template: str) -> bool:
    if path.endswith("/"):
        return _prefix_of(path, template)
    return bool(_pattern(template).match(path))


def _prefix_of(prefix: str, template: str) -> bool:
    """Whether ``prefix`` (a directory) is where some path of ``template`` lies."""
    depth = prefix.count("/")
    head = "/".join(template.split("/")[:depth]) + "/"
    return bool(_pattern(head).match(prefix))


def test_every_path_the_layout_builds_is_on_the_page() -> None:
    templates = _page_templates()
    assert len(templates) >= 15, "the layout block of docs/lake-layout.md was not found"
    undocumented = {
        name: path
        for name, path in _built_paths().items()
        if not any(_matches(path, t) for t in templates)
    }
    assert not undocumented, (
        f"paths built by core/layout.py missing from {PAGE.name}: {undocumented}"
    )


def test_every_path_on_the_page_is_built_by_the_layout() -> None:
    files = [p for p in _built_paths().values() if not p.endswith("/")]
    unbuilt = [t for t in _page_templates() if not any(_pattern(t).match(p) for p in files)]
    assert not unbuilt, f"{PAGE.name} documents paths core/layout.py never builds: {unbuilt}"


def test_temporary_names_are_the_documented_shapes() -> None:
    text = PAGE.read_text()
    assert "`.tmp-<token>-<name>`" in text and "`.tmp-del<token>-<name>`" in text
    key = layout.data_file("AAPL")
    token = "0123456789ab"
    assert layout.temp_key(key, token) == f"bronze/raw_ohlcv/symbol=AAPL/.tmp-{token}-data.parquet"
    assert (
        layout.grave_key(key, token) == f"bronze/raw_ohlcv/symbol=AAPL/.tmp-del{token}-data.parquet"
    )
    assert layout.is_condvest_temp(layout.temp_key(key, token))
    assert layout.grave_origin(layout.grave_key(key, token)) == key


def test_the_check_catches_a_path_the_page_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a path constant the page does not know is reported."""
    monkeypatch.setattr(layout, "NEW_STATE", f"{layout.METADATA}/undocumented.json", raising=False)
    built = _built_paths()
    assert built["NEW_STATE"] == "processing_metadata/undocumented.json"
    assert not any(_matches(built["NEW_STATE"], t) for t in _page_templates())

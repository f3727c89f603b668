"""The Python API (``condvest.open_lake`` / ``Lake``): every example in docs/python-api.md runs
(so the page cannot drift), the same pipeline runs on the S3 protocol server, settings overrides
keep the CLI's precedence, and bad keywords fail naming themselves."""

from __future__ import annotations

import os
import pydoc
import re
from pathlib import Path

import pytest

import condvest
from condvest.errors import ConfigError, UsageError
from condvest.lake import DryRun, settings_overrides
from conftest import make_s3_lake

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)
STAGES = ("fetch", "consolidate", "resample", "vacuum", "status", "run", "sync_db", "init_db")


def test_every_python_example_in_the_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks run in order in one namespace, in an empty directory, offline (synthetic)."""
    assert len(BLOCKS) >= 5
    monkeypatch.chdir(tmp_path)
    saved_env = dict(os.environ)
    namespace: dict[str, object] = {"__name__": "python_api_examples"}
    try:
        for number, block in enumerate(BLOCKS, 1):
            code = compile(block, f"{PAGE.name} python block {number}", "exec")
            exec(code, namespace)  # an assert inside a block fails the test with its line
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    assert (tmp_path / "lake" / "condvest-lake.json").is_file()
    assert list((tmp_path / "lake" / "silver").glob("silver_3d/year=*/month=*/*.parquet"))


def test_the_page_shows_every_stage_and_the_api_is_documented() -> None:
    text = PAGE.read_text()
    for name in STAGES:
        assert f"lake.{name}(" in text, f"docs/python-api.md does not show lake.{name}()"
        method = getattr(condvest.Lake, name)
        assert method.__doc__ and len(method.__doc__.split()) >= 8, name
    help_text = pydoc.render_doc(condvest.open_lake)
    assert "Settings come" in help_text and "fetch__source" in help_text
    assert condvest.open_lake.__module__ == "condvest.lake" and condvest.DryRun is DryRun


def test_the_pipeline_through_the_api_on_the_s3_server(
    moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = make_s3_lake(moto_endpoint, s3_bucket)
    for name, value in s3.env().items():  # the lake and its endpoint from the environment
        monkeypatch.setenv(name, value)
    with condvest.open_lake(fetch__source="synthetic", s3__max_attempts=2) as lake:
        assert lake.uri == s3.uri
        sessions = lake.context.calendar.sessions_between
        latest = lake.context.latest_completed_session()
        fetched = lake.fetch(start=sessions(latest.replace(day=1), latest)[0])
        assert fetched.ok and fetched.sessions and fetched.rows > 0
        preview = lake.consolidate(dry_run=True)
        assert isinstance(preview, DryRun) and preview.to_dict()["symbols_planned"] == 50
        merged = lake.consolidate()
        # every landed row's date file, less those a split's restated history replaced
        assert merged.ok and merged.files_merged <= fetched.rows
        assert merged.files_merged == fetched.rows or fetched.restated
        bars = lake.resample(intervals="3,5")
        assert bars.ok and bars.to_dict()["rows_written"] > 0
        health = lake.status()
    assert health.to_dict()["lake"] == s3.uri
    assert health.latest_landed_session == fetched.sessions[-1].isoformat()
    assert health.bronze["data_files"] == 50 and health.bronze["pending_date_files"] == 0
    keys = [o.key for o in s3.storage.list_objects("silver/silver_3d/")]
    assert keys and all(k.endswith(".parquet") for k in keys)
    data_files = [o for o in s3.storage.list_objects("bronze/") if o.key.endswith("/data.parquet")]
    assert len(data_files) == 50


def test_overrides_flat_and_nested_with_the_cli_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "condvest.toml"
    config.write_text("[consolidate]\nworkers = 3\nretention_days = 45\n")
    monkeypatch.setenv("CONDVEST_CONSOLIDATE__WORKERS", "4")
    uri = str(tmp_path / "lake")
    with condvest.open_lake(uri, config=config) as lake:
        assert lake.settings.consolidate.workers == 4  # environment > file
        assert lake.settings.consolidate.retention_days == 45  # file > default
    with condvest.open_lake(uri, config=config, consolidate__workers=2) as flat:
        assert flat.settings.consolidate.workers == 2  # explicit > environment
    with condvest.open_lake(uri, config=config, consolidate={"workers": 2}) as nested:
        assert nested.settings == flat.settings
    with condvest.open_lake(uri, consolidate__workers=None) as unset:  # None: not given
        assert unset.settings.consolidate.workers == 4
    with condvest.open_lake(lake__uri=uri) as by_setting:
        assert by_setting.uri == uri


def test_bad_keywords_and_values_name_themselves(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    with pytest.raises(TypeError, match=r"'fetch__sorce'.*no key 'sorce'"):
        condvest.open_lake(uri, fetch__sorce="synthetic")
    with pytest.raises(TypeError, match=r"no section 'fetchh'"):
        condvest.open_lake(uri, fetchh={"source": "synthetic"})
    with pytest.raises(TypeError, match=r"a section takes a mapping"):
        condvest.open_lake(uri, fetch="synthetic")
    with pytest.raises(TypeError, match=r"fetch.source is given twice"):
        settings_overrides({"fetch__source": "polygon", "fetch": {"source": "synthetic"}})
    with pytest.raises(TypeError, match="given twice"):
        condvest.open_lake(uri, lake__uri=uri)
    with pytest.raises(ConfigError, match=r"consolidate\.workers"):
        condvest.open_lake(uri, consolidate__workers="many")
    with condvest.open_lake(uri, fetch__source="synthetic") as lake:
        with pytest.raises(TypeError, match="sessions"):
            lake.fetch(sessions=3)  # type: ignore[call-overload]
        with pytest.raises(UsageError, match="--mode 'most' is not one of"):
            lake.consolidate(mode="most")
        with pytest.raises(UsageError, match="--date"):
            lake.fetch(date="2025-02-30")
        with pytest.raises(UsageError, match="--max-backfill-days 0"):
            lake.fetch(max_backfill_days=0)
        with pytest.raises(UsageError, match="--symbols is empty"):
            lake.vacuum(symbols=[])
        with pytest.raises(UsageError, match="--sync-db needs PostgreSQL"):
            lake.sync_db()
    with pytest.raises(UsageError, match="is closed"):
        lake.status()


def test_each_call_is_its_own_run_and_source_is_per_call(tmp_path: Path) -> None:
    with condvest.open_lake(tmp_path / "lake") as lake:  # fetch.source stays polygon
        first = lake.fetch(source="synthetic")
        assert first.ok and first.source == "synthetic"
        assert lake.settings.fetch.source == "polygon"
        second = lake.consolidate()
        assert first.run_id != second.run_id
        runs = lake.status().runs
    assert runs["fetch"]["run_id"] == first.run_id
    assert runs["consolidate"]["run_id"] == second.run_id

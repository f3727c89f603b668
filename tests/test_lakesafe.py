"""Never leave the lake (issue 13, items 4-6), on real files: the lake marker; the deleting
commands refuse a location that is not a condvest lake and touch nothing there; vacuum deletes
only condvest's own temp names; no command follows a symlink out of the lake, and an irregular
bronze entry fails the run naming it; vacuum continues past a failed delete and counts what
really went."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest

import cli_proc
from condvest import faults
from condvest.core import layout
from condvest.errors import ConfigError
from condvest.jobs.base import run_job
from condvest.jobs.consolidate.job import ConsolidateOptions, plan_consolidate, run_consolidate
from condvest.jobs.fetch import FetchOptions, plan_fetch, run_fetch
from condvest.jobs.vacuum.job import VACUUM, VacuumOptions, plan_vacuum, run_vacuum
from conftest import Lake, at, make_local_lake
from consolidate_helpers import T0, all_rows, date_files, land

NOW = at("2024-02-05T23:00:00")
OLD = [date(2024, 1, d) for d in (2, 3, 4)]
TOKEN = "0123456789ab"  # the shape of storage.base.new_token()


# -- helpers ----------------------------------------------------------------------------------
def condvest_lake(root: Path, symbols: int = 3) -> Lake:
    """A lake as condvest makes it: a synthetic fetch of early January 2024 into ``root``."""
    lake = make_local_lake(root)
    ctx = lake.context(now=NOW, fetch={"source": "synthetic", "synthetic_symbols": symbols})
    plan = plan_fetch(ctx, FetchOptions(start=OLD[0], end=date(2024, 1, 12)))
    assert run_fetch(ctx, plan).ok
    return lake


def symbols_of(lake: Lake) -> list[str]:
    return lake.storage.list_dirs(layout.BRONZE_OHLCV + "/")


def consolidate(lake: Lake, **options: object) -> None:
    ctx = lake.context(now=NOW)
    result = run_consolidate(ctx, plan_consolidate(ctx, ConsolidateOptions(**options)))  # type: ignore[arg-type]
    assert result.ok, result.to_dict()


def tree(root: Path) -> dict[str, tuple[str, str, int]]:
    """Every entry under ``root`` (links not followed): kind, content hash or link target, and
    modification time — what "touched nothing" compares."""
    out: dict[str, tuple[str, str, int]] = {}
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                out[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif os.path.isdir(path):
                out[rel] = ("dir", "", st.st_mtime_ns)
            else:
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
                out[rel] = ("file", digest, st.st_mtime_ns)
    return out


def cli(lake_uri: str | Path, *args: str, extra: dict[str, str] | None = None) -> Ran:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDVEST_")}
    env.update(extra or {})
    return cli_proc.run(["--lake", str(lake_uri), *args], env=env)


Ran = subprocess.CompletedProcess[str]


def error_line(out: Ran) -> str:
    """stderr's one ``error: …`` line (no traceback)."""
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    return errors[0]


def make_old(path: Path) -> None:
    os.utime(path, (0, 0), follow_symlinks=False)  # past any grace period


# -- a location that is not a lake --------------------------------------------------------------
def user_home(root: Path) -> Path:
    """A home directory: user files named like temp files, and a "bronze" folder of its own."""
    root.mkdir()
    (root / "notes.tmp-1.txt").write_text("my notes")
    (root / f"x.tmp-del{TOKEN}-notes.txt").write_text("an old draft")
    (root / f".tmp-{TOKEN}-data.parquet").write_text("mine, shaped like condvest's")
    (root / ".bashrc").write_text("export PS1='$ '")
    (root / "bronze" / "raw_ohlcv" / "symbol=AAPL").mkdir(parents=True)
    (root / "bronze" / "raw_ohlcv" / "symbol=AAPL" / "date=2020-01-02.parquet").write_text("x")
    (root / "bronze" / f".tmp-del{TOKEN}-date=2020-01-03.parquet").write_text("y")
    for path in root.rglob("*"):
        make_old(path)
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["vacuum", "--retention-days", "0", "--force"],
        ["consolidate", "--retention-days", "0"],
        ["resample"],
    ],
    ids=["vacuum", "consolidate", "resample"],
)
def test_deleting_command_refuses_a_directory_that_is_not_a_lake(
    tmp_path: Path, args: list[str]
) -> None:
    """`condvest --lake ~ vacuum` deleted user files containing `.tmp-` and "restored" a
    `.tmp-del…` file: now it refuses with one line (exit 2) and nothing changes."""
    home = user_home(tmp_path / "home")
    before = tree(home)
    out = cli(home, *args)
    assert out.returncode == 2, out.stderr
    line = error_line(out)
    assert f"refusing to {args[0]} {home}" in line and "not a condvest lake" in line
    assert tree(home) == before


def test_foreign_location_written_by_fetch_stays_unmarked(tmp_path: Path) -> None:
    """fetch into a directory holding other files works, but never marks it a lake: the
    deleting commands go on refusing it."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    lake = condvest_lake(home)
    assert not lake.storage.exists(layout.LAKE_MARKER)
    with pytest.raises(ConfigError, match=r"not a condvest lake .*notes\.txt"):
        plan_vacuum(lake.context(now=NOW), VacuumOptions())


def test_marker_condvest_did_not_write_is_refused(tmp_path: Path) -> None:
    lake = condvest_lake(tmp_path / "lake")
    (tmp_path / "lake" / layout.LAKE_MARKER).write_text('{"format": "something-else"}')
    out = cli(lake.uri, "vacuum")
    assert out.returncode == 2
    assert "was not written by condvest" in error_line(out)
    assert layout.LAKE_MARKER in error_line(out)


# -- the marker ---------------------------------------------------------------------------------
def test_fresh_lake_made_by_condvest_has_a_marker(tmp_path: Path) -> None:
    lake = condvest_lake(tmp_path / "new")
    marker = lake.storage.read_json(layout.LAKE_MARKER)
    assert marker["format"] == "condvest-lake" and marker["format_version"] == 1
    assert marker["created_at"] == NOW.isoformat()
    assert marker["created_by"].startswith("condvest ")


def test_existing_lake_without_marker_gets_one_on_first_run(tmp_path: Path) -> None:
    """A lake of an older condvest (no marker) is recognised by its layout: the deleting
    commands work there, and its first successful run writes the marker."""
    lake = condvest_lake(tmp_path / "lake")
    lake.storage.delete(layout.LAKE_MARKER)
    assert run_job(lake.context(now=NOW), VACUUM, VacuumOptions(), dry_run=True).dry_run
    assert not lake.storage.exists(layout.LAKE_MARKER)  # a dry run writes nothing
    consolidate(lake)
    marker = lake.storage.read_json(layout.LAKE_MARKER)
    assert marker["format"] == "condvest-lake" and marker["created_at"] == NOW.isoformat()


def test_s3_prefix_with_other_content_is_refused(s3_lake: Lake) -> None:
    """On S3 the same check: a prefix holding objects condvest did not write is no lake."""
    land(s3_lake.storage, "AAPL", OLD[0])
    s3_lake.storage.write_bytes("reports/q1.pdf", b"%PDF")
    with pytest.raises(ConfigError, match=r"not a condvest lake .*reports/"):
        plan_vacuum(s3_lake.context(now=NOW), VacuumOptions())
    s3_lake.storage.delete("reports/q1.pdf")
    assert plan_vacuum(s3_lake.context(now=NOW), VacuumOptions()).retention_days > 0


# -- vacuum deletes only condvest's names -------------------------------------------------------
def test_vacuum_deletes_only_condvest_temp_names(lake: Lake) -> None:
    """Inside a lake, on local disk and S3: only stale temp files of condvest's exact shape go;
    user files that merely contain `.tmp-` (or `.tmp-del`) stay, and none is "restored"."""
    land(lake.storage, "AAPL", OLD[0])
    folder = layout.symbol_prefix("AAPL")
    ours = layout.temp_key(layout.data_file("AAPL"), TOKEN)
    theirs = [
        f"{folder}notes.tmp-1.txt",
        f"{folder}x.tmp-del{TOKEN}-y.parquet",
        f"{folder}.tmp-abc-date=2024-01-02.parquet",  # not condvest's token
        f"{folder}.tmp-del{TOKEN}-notes.txt",  # not a name condvest writes
    ]
    for key in [ours, *theirs]:
        lake.storage.write_bytes(key, b"bytes")
    later = lake.storage.stat(ours)
    assert later is not None
    result = run_vacuum(
        ctx := lake.context(now=later.mtime + timedelta(days=30)),
        plan_vacuum(ctx, VacuumOptions(retention_days=30)),
    )
    assert result.ok and result.temp_files_deleted == 1
    assert not lake.storage.exists(ours)
    assert all(lake.storage.read_bytes(key) == b"bytes" for key in theirs)
    assert not lake.storage.exists(f"{folder}notes.txt")  # no "grave" was restored


# -- symlinks and irregular entries -----------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["consolidate", "--retention-days", "0"],
        ["vacuum", "--retention-days", "0", "--force"],
    ],
    ids=["consolidate", "vacuum"],
)
def test_symlinked_symbol_dir_is_not_followed(tmp_path: Path, args: list[str]) -> None:
    """`--symbols X` where X's directory is a link to outside the lake: refused naming the link;
    the files outside stay as they were (so does everything in the lake)."""
    lake = condvest_lake(tmp_path / "lake")
    symbol = symbols_of(lake)[0].removeprefix("symbol=")
    consolidate(lake, skip_cleanup=True)  # old date files now superseded: deletable
    inside = tmp_path / "lake" / layout.symbol_prefix(symbol)
    outside = tmp_path / "elsewhere" / "mine"
    shutil.copytree(inside, outside)
    shutil.rmtree(inside)
    inside.symlink_to(outside, target_is_directory=True)
    before, lake_before = tree(tmp_path / "elsewhere"), tree(tmp_path / "lake")
    out = cli(lake.uri, *args, "--symbols", symbol)
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert f"{inside.as_posix().rstrip('/')} is a symbolic link" in line
    assert tree(tmp_path / "elsewhere") == before
    assert {k: v for k, v in tree(tmp_path / "lake").items() if "runs" not in k} == {
        k: v for k, v in lake_before.items() if "runs" not in k
    }
    # Without --symbols too: the run fails naming it, the symbol is never "absent".
    out = cli(lake.uri, "resample")
    assert out.returncode == 1 and "is a symbolic link" in error_line(out)
    assert tree(tmp_path / "elsewhere") == before


@pytest.mark.parametrize("kind", ["dangling-link", "directory", "link-to-outside"])
def test_irregular_data_file_fails_resample_naming_it(tmp_path: Path, kind: str) -> None:
    """A data.parquet that is a dangling link, a directory, or a link out of the lake: resample
    fails naming it (exit 1) instead of dropping the symbol's bars from silver."""
    lake = condvest_lake(tmp_path / "lake")
    consolidate(lake)
    symbol = symbols_of(lake)[0].removeprefix("symbol=")
    data = tmp_path / "lake" / layout.data_file(symbol)
    outside = tmp_path / "outside.parquet"
    shutil.move(data, outside)
    if kind == "dangling-link":
        data.symlink_to(tmp_path / "gone.parquet")
    elif kind == "directory":
        data.mkdir()
    else:
        data.symlink_to(outside)
    out = cli(lake.uri, "resample")
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    what = "is a directory, not a file" if kind == "directory" else "is a symbolic link"
    assert f"{data} {what}" in line
    assert not (tmp_path / "lake" / layout.SILVER).exists()  # nothing written without it
    assert outside.exists()


def test_unreadable_symbol_dir_fails_naming_it(tmp_path: Path) -> None:
    """A symbol directory that cannot be read fails the run naming it. As root, chmod 000
    blocks nothing, so the test fault hook stands in for it there."""
    lake = condvest_lake(tmp_path / "lake")
    symbol = symbols_of(lake)[0].removeprefix("symbol=")
    folder = tmp_path / "lake" / layout.symbol_prefix(symbol)
    extra: dict[str, str] = {}
    if os.geteuid() == 0:
        extra[faults.UNREADABLE_ENV] = f"symbol={symbol}"
    else:
        folder.chmod(0)
    try:
        out = cli(lake.uri, "resample", extra=extra)
    finally:
        folder.chmod(0o755)
    assert out.returncode == 1, out.stderr
    line = error_line(out)
    assert f"cannot list {folder.as_posix().rstrip('/')}" in line and "ermission denied" in line


# -- vacuum's accounting ------------------------------------------------------------------------
def test_vacuum_continues_past_a_failed_delete(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """One file that cannot be deleted: every other one still goes, the result and the cleanup
    manifest count only what went, the failure is named, and the run fails (exit 1)."""
    for symbol in ("A", "B", "C"):
        for day in OLD:
            land(lake.storage, symbol, day, fetched=T0)
    consolidate(lake, skip_cleanup=True)
    rows_before = all_rows(lake.storage)
    stuck = layout.date_file("B", OLD[1])
    monkeypatch.setenv(faults.FAIL_DELETE_ENV, stuck)
    ctx = lake.context(now=NOW)
    result = run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(retention_days=7)))
    assert not result.ok and result.exit_code == 1
    assert result.files_deleted == 8 and result.delete_failures == 1
    assert result.per_symbol["B"]["deleted"] == 2
    assert [f["symbol"] for f in result.failures] == ["B"]
    assert stuck in result.failures[0]["reason"]
    assert date_files(lake.storage, "A") == [] and date_files(lake.storage, "C") == []
    assert date_files(lake.storage, "B") == [OLD[1]]
    manifest = lake.storage.read_json(layout.CLEANUP_MANIFEST)
    assert manifest["total_files_deleted"] == 8
    assert manifest["last_run"]["delete_failures"] == 1
    assert stuck in manifest["last_run"]["failures"][0]["reason"]
    assert all_rows(lake.storage) == rows_before
    monkeypatch.delenv(faults.FAIL_DELETE_ENV)
    again = run_vacuum(ctx, plan_vacuum(ctx, VacuumOptions(retention_days=7)))
    assert again.ok and again.files_deleted == 1


def test_vacuum_cli_exits_1_on_a_failed_delete(tmp_path: Path) -> None:
    lake = make_local_lake(tmp_path / "lake")
    for day in OLD:
        land(lake.storage, "A", day)
    consolidate(lake, skip_cleanup=True)
    stuck = layout.date_file("A", OLD[0])
    out = cli(
        lake.uri,
        "--output",
        "json",
        "vacuum",
        "--retention-days",
        "7",
        extra={faults.FAIL_DELETE_ENV: stuck},
    )
    assert out.returncode == 1, out.stderr
    body = json.loads(out.stdout)
    assert body["files_deleted"] == 2 and body["delete_failures"] == 1
    assert stuck in body["failures"][0]["reason"]
    assert stuck in out.stderr  # said on stderr too
    assert date_files(lake.storage, "A") == [OLD[0]]

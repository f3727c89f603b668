"""Hostile input, end to end through ``python -m condvest``: symbols that try path traversal or
are huge, corrupt parquet in bronze and silver, bad configuration, dates out of range, a
``--lake`` that is a file, a read-only lake. Each gets one clear line on stderr and its exit
code, and nothing in the lake is deleted or changed (file list and bytes compared before/after).
The secret scan (API key, database password never printed) is in test_hostile_secrets.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cli_proc
from condvest.core.layout import validate_symbol
from condvest.errors import InvalidSymbolError
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV

SYMBOLS = 4
PENDING_DAY = "2026-11-23"
"""The template lake: synthetic history consolidated and resampled, plus one pending session."""


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("CONDVEST_") and k not in LEGACY_ENV
    }
    env = {k: v for k, v in env.items() if k not in LEGACY_BUCKET_ENV}
    env["CONDVEST_FETCH__SYNTHETIC_SYMBOLS"] = str(SYMBOLS)
    env.update(extra or {})
    return env


def condvest(lake: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    done = cli_proc.run(
        args, env=cli_env({"CONDVEST_LAKE__URI": str(lake), **(env or {})}), cwd=lake.parent
    )
    return Result(args, done.returncode, done.stdout, done.stderr)


class Result:
    def __init__(self, args: tuple[str, ...], code: int, stdout: str, stderr: str) -> None:
        self.args, self.code, self.stdout, self.stderr = args, code, stdout, stderr

    def error_line(self) -> str:
        """Besides JSON log lines, stderr is exactly one ``error: …`` line (no traceback)."""
        assert "Traceback" not in self.stderr, (self.args, self.stderr)
        lines = [line for line in self.stderr.splitlines() if not line.startswith('{"ts"')]
        assert len(lines) == 1, (self.args, self.stderr)
        assert lines[0].startswith("error: "), (self.args, self.stderr)
        return lines[0]

    def __repr__(self) -> str:
        return f"condvest {self.args!r} -> {self.code}\n{self.stderr[-1500:]}"


def snapshot(root: Path) -> dict[str, str]:
    """Every file of the lake → sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def data_files(snap: dict[str, str]) -> dict[str, str]:
    """The lake's data (bronze, silver, manifest, watermark, fetch log), not the run records
    and lock files that every real run writes."""
    return {k: v for k, v in snap.items() if "/runs/" not in k and "/locks/" not in k}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("hostile") / "lake"
    steps = [
        ("fetch", "--source", "synthetic", "--start", "2026-09-01", "--end", "2026-11-20"),
        ("consolidate",),
        ("resample",),
        ("fetch", "--source", "synthetic", "--date", PENDING_DAY),
    ]
    for step in steps:
        done = condvest(lake, "-q", "-o", "json", *step)
        assert done.code == 0, done
    return lake


@pytest.fixture
def lake(template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(template, copy)
    return copy


def run_all(lake: Path, calls: list[tuple[str, ...]]) -> list[Result]:
    """The calls in parallel (each is ~1 s of interpreter start-up, nothing heavy)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: condvest(lake, *args), calls))


# -- symbols ----------------------------------------------------------------------------------
HOSTILE_SYMBOLS = [
    "../x",
    "a/b",
    "..",
    ".",
    "a\\b",
    "..\\..\\etc",
    "AAPL,../../../tmp/evil",
    "x\x01y",
    "\x1b[31mRED",
    "line\nbreak",
    "A" * 10_240,
    "/etc/passwd",
    "sym bol",
    "*",
]
SYMBOL_COMMANDS = [
    ("fetch", "--source", "synthetic", "--date", "2026-11-24"),
    ("consolidate",),
    ("vacuum", "--retention-days", "0", "--force"),
    ("run", "--source", "synthetic"),
]


@pytest.mark.slow  # ~50 CLI runs
def test_hostile_symbols_rejected_before_any_write(lake: Path) -> None:
    before = snapshot(lake)
    calls = [
        (*cmd[:1], "--symbols", sym, *cmd[1:])
        for sym in HOSTILE_SYMBOLS
        for cmd in SYMBOL_COMMANDS
        if cmd[0] != "run"  # run has no --symbols: every stage runs on the whole lake
    ]
    results = run_all(lake, calls)
    for sym, res in zip([c[2] for c in calls], results, strict=True):
        line = res.error_line()
        assert res.code == 2, res
        assert (
            ("symbol" in line and "valid ticker" in line)
            or "control characters" in line
            or ("characters; at most" in line)
        ), res
        assert len(line) < 300, res  # a 10 kB symbol is shown shortened
        bad = sym.split(",")[-1]
        assert repr(bad[:40])[1:-1].rstrip("'") in line or bad[:40] in line, res
        if any(ord(ch) < 32 for ch in sym):
            assert not any(ord(ch) < 32 for ch in line), res  # escaped, no terminal injection
    assert snapshot(lake) == before
    assert not (lake.parent / "tmp").exists() and not (lake.parent / "x").exists()


def test_nul_in_a_symbol_is_rejected() -> None:
    # NUL cannot travel in argv or the environment; the one gate every path goes through
    # (layout.validate_symbol, used by parse_symbols and every path builder) rejects it
    for bad in ("a\x00b", "\x00", "../\x00"):
        with pytest.raises(InvalidSymbolError):
            validate_symbol(bad)


# -- corrupt parquet ----------------------------------------------------------------------------
def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_schema(path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3], "note": ["a", "b", "c"]}), path)


def _garbage(path: Path) -> None:
    path.write_bytes(b"PAR1" + os.urandom(300) + b"PAR1")


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": _truncated,
    "zero-bytes": _zero_bytes,
    "wrong-schema": _wrong_schema,
    "garbage": _garbage,
}


def _target(lake: Path, which: str) -> Path:
    bronze = sorted((lake / "bronze" / "raw_ohlcv").iterdir())[0]
    if which == "bronze-date-file":
        return bronze / f"date={PENDING_DAY}.parquet"
    if which == "data.parquet":
        return bronze / "data.parquet"
    return sorted((lake / "silver" / "silver_3d").rglob("*.parquet"))[-1]


# which commands read each file, and so must fail naming it (the others must not touch it)
READERS = {
    "bronze-date-file": ("consolidate", "resample"),
    "data.parquet": ("consolidate", "resample"),
    "silver-month": ("resample",),
}
CORRUPT_COMMANDS = [("consolidate",), ("resample",), ("vacuum",), ("status",)]


def _corrupt_case(lake: Path, which: str, kind: str) -> None:
    target = _target(lake, which)
    CORRUPTIONS[kind](target)
    before = data_files(snapshot(lake))
    results = run_all(lake, CORRUPT_COMMANDS)
    after = data_files(snapshot(lake))
    lost = sorted(set(before) - set(after))
    assert not lost, lost
    key = str(target.relative_to(lake))
    assert after[key] == before[key], "the corrupt file itself was changed"
    for res in results:
        assert "Traceback" not in res.stderr, res
        assert res.code in (0, 1), res
        if res.args[0] in READERS[which]:
            assert res.code == 1, res
            assert target.name in res.stderr and target.parent.name in res.stderr, res
    symbol_dir = str(target.parent.relative_to(lake))
    for name, digest in before.items():  # the damaged symbol's other files are untouched
        if name.startswith(symbol_dir + "/"):
            assert after[name] == digest, name


@pytest.mark.parametrize("which", list(READERS))
def test_zero_byte_file_fails_clearly_and_loses_nothing(lake: Path, which: str) -> None:
    _corrupt_case(lake, which, "zero-bytes")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["truncated", "wrong-schema", "garbage"])
@pytest.mark.parametrize("which", list(READERS))
def test_corrupt_file_fails_clearly_and_loses_nothing(lake: Path, which: str, kind: str) -> None:
    _corrupt_case(lake, which, kind)


# -- configuration, dates, lake location --------------------------------------------------------
BAD_CONFIGS = {
    "[lake]\nurl = 'x'\n": "url",
    "[nosuchsection]\nx = 1\n": "nosuchsection",
    "[polygon]\nrequests_per_minute = 'fast'\n": "requests_per_minute",
    "[polygon]\ntimeout_s = -1\n": "timeout_s",
    "[fetch]\nmax_backfill_days = [1, 2]\n": "max_backfill_days",
    "[consolidate\n": "toml",
    "lake = 3\n": "lake",
}


def test_bad_config_files(lake: Path, tmp_path: Path) -> None:
    before = snapshot(lake)
    calls = []
    for n, (text, _needle) in enumerate(BAD_CONFIGS.items()):
        path = tmp_path / f"bad{n}.toml"
        path.write_text(text)
        calls.append(("--config", str(path), "status"))
    for (_text, needle), res in zip(BAD_CONFIGS.items(), run_all(lake, calls), strict=True):
        line = res.error_line()
        assert res.code == 2, res
        assert needle in line.lower(), res
    wrong_env = condvest(lake, "status", env={"CONDVEST_POLYGON__TIMEOUT_S": "soon"})
    assert wrong_env.code == 2 and "timeout_s" in wrong_env.error_line(), wrong_env
    assert snapshot(lake) == before


BAD_DATES = [
    (("fetch", "--source", "synthetic", "--date", "1961-12-29"), "1962"),
    (("fetch", "--source", "synthetic", "--date", "1900-01-01"), "1962"),
    (("fetch", "--source", "synthetic", "--date", "2999-01-04"), "2999-01-04"),
    (("fetch", "--source", "synthetic", "--date", "yesterday"), "yesterday"),
    (("fetch", "--source", "synthetic", "--date", "2026-02-30"), "2026-02-30"),
    (("fetch", "--source", "synthetic", "--start", "2026-11-20", "--end", "2026-11-02"), "--end"),
    (("fetch", "--source", "synthetic", "--start", "0000-01-01"), "0000-01-01"),
    (("resample", "--since", "1900-01-01"), "1962"),
    (("resample", "--since", "not-a-date"), "not-a-date"),
]


def test_dates_out_of_range(lake: Path) -> None:
    before = snapshot(lake)
    results = run_all(lake, [args for args, _ in BAD_DATES])
    for (_args, needle), res in zip(BAD_DATES, results, strict=True):
        line = res.error_line()
        assert res.code == 2, res
        assert needle in line, res
    assert snapshot(lake) == before


def test_lake_pointing_at_a_file(tmp_path: Path) -> None:
    target = tmp_path / "not-a-lake.txt"
    target.write_bytes(b"precious")
    calls = [("status",), ("fetch", "--source", "synthetic"), ("consolidate",), ("run",)]
    fake_lake = target  # condvest(lake=...) sets CONDVEST_LAKE__URI to the file
    for res in run_all(fake_lake, calls):
        line = res.error_line()
        assert res.code in (1, 2), res
        assert str(target) in line or "not-a-lake.txt" in line, res
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-lake.txt"]


@pytest.fixture
def immutable(lake: Path) -> Iterator[Path]:
    done = subprocess.run(["chattr", "-R", "+i", str(lake)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is unavailable here ({done.stderr.decode().strip()})")
    try:
        yield lake
    finally:
        subprocess.run(["chattr", "-R", "-i", str(lake)], check=True)


@pytest.mark.slow
def test_read_only_lake(immutable: Path) -> None:
    lake = immutable
    before = snapshot(lake)
    calls = [
        ("fetch", "--source", "synthetic", "--date", "2026-11-24"),
        ("consolidate",),
        ("resample",),
        ("vacuum", "--retention-days", "0", "--force"),
        ("run", "--source", "synthetic"),
    ]
    for res in run_all(lake, calls):
        line = res.error_line()
        assert res.code == 1, res
        assert str(lake) in line or "read-only" in line.lower() or "permission" in line.lower()
    status = condvest(lake, "status")  # reading needs no write
    assert status.code in (0, 1) and "Traceback" not in status.stderr, status
    assert snapshot(lake) == before


def test_vacuum_keeps_date_files_it_cannot_check(lake: Path) -> None:
    # vacuum may delete a date file only once it has seen the row in data.parquet; with
    # data.parquet unreadable it must keep every date file of that symbol and fail
    target = _target(lake, "data.parquet")
    _zero_bytes(target)
    kept = sorted(p.name for p in target.parent.iterdir())
    res = condvest(lake, "-q", "-o", "json", "vacuum", "--force", "--retention-days", "0")
    assert res.code == 1, res
    assert target.parent.name in res.stdout + res.stderr and "data.parquet" in res.stderr, res
    assert sorted(p.name for p in target.parent.iterdir()) == kept

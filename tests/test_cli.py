"""The CLI as a user meets it: ``python -m condvest`` in a subprocess, in an empty directory, with
no CONDVEST_* variables. Help, version, exit codes, one-line errors (tracebacks only with -v),
stdout holding only the result, logs as JSON lines on stderr."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import typer

import cli_proc
from condvest import __version__
from condvest.cli.app import app
from condvest.settings import LEGACY_BUCKET_ENV, LEGACY_ENV

ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)  # type: ignore[attr-defined]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("CONDVEST_")
        and k not in LEGACY_ENV
        and k not in LEGACY_BUCKET_ENV
    }
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    env.update(extra or {})
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return cli_proc.run(args, env=cli_env(env), cwd=cwd)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    """stderr is exactly one ``error: …`` line (no traceback); returns it without the prefix."""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: "), out.stderr
    return lines[0][len("error: ") :]


# -- help and version -----------------------------------------------------------------------------
def test_commands_are_the_designed_ones() -> None:
    assert set(COMMANDS) == {
        *("fetch", "consolidate", "resample", "vacuum", "status", "run", "report", "read", "sql")
    }


def test_top_level_help(tmp_path: Path) -> None:
    out = run_cli("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: condvest [OPTIONS] COMMAND")
    for word in (*COMMANDS, "--config", "--lake", "--output", "--verbose", "--quiet", "--version"):
        assert word in out.stdout
    assert not (tmp_path / "lake").exists()


def test_no_arguments_shows_help(tmp_path: Path) -> None:
    out = run_cli(cwd=tmp_path)
    assert out.returncode in (0, 2)
    assert "Usage: condvest" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(tmp_path: Path, command: str) -> None:
    out = run_cli(command, "--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: condvest {command} [OPTIONS]")
    help_text = ROOT.commands[command].help  # type: ignore[attr-defined]
    assert help_text
    first_words = " ".join(help_text.split()[:3])
    assert first_words in " ".join(out.stdout.split())
    assert "--help" in out.stdout
    assert out.stderr == ""


def test_version(tmp_path: Path) -> None:
    out = run_cli("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout == f"condvest {__version__}\n"


# -- usage and configuration errors: exit 2, one line ------------------------------------------
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "ftp://host/lake",
            "lake URI scheme 'ftp' in 'ftp://host/lake' is not supported "
            "(use a local path, file:///path or s3://bucket/prefix)",
        ),
        ("", "lake URI is empty (pass --lake ./lake or s3://bucket/prefix)"),
        ("s3://", "lake URI 's3://' names no bucket (use s3://bucket/prefix)"),
    ],
)
def test_bad_lake_uri(tmp_path: Path, uri: str, message: str) -> None:
    out = run_cli("--lake", uri, "status", cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out) == message
    assert out.stdout == ""


def test_flag_beats_environment_beats_config_file(tmp_path: Path) -> None:
    (tmp_path / "condvest.toml").write_text(
        '[lake]\nuri = "from-file"\n[resample]\nintervals = [4]\n'
    )
    env = {"CONDVEST_LAKE__URI": str(tmp_path / "from-env")}
    out = run_cli("-q", "-o", "json", "--lake", "from-flag", "status", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["lake"] == str(tmp_path / "from-flag")
    assert set(body["silver"]) == {"4d"}  # the file still applies where nothing overrides it
    out = run_cli("-q", "-o", "json", "status", cwd=tmp_path, env=env)
    assert json.loads(out.stdout)["lake"] == str(tmp_path / "from-env")


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    for flag in ("--verbose", "-qvv"):
        out = run_cli(flag, "--lake", "ftp://host/lake", "status", cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr.startswith("Traceback (most recent call last):"), flag
        assert "ConfigError" in out.stderr
        assert out.stderr.splitlines()[-1].startswith("error: lake URI scheme 'ftp'")


def test_lake_pointing_at_a_file(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("keep me")
    out = run_cli("--lake", str(target), "status", cwd=tmp_path)
    assert out.returncode in (1, 2)
    assert one_error_line(out) == (
        f"lake {target} is a file, not a directory (point --lake at a directory)"
    )
    assert target.read_text() == "keep me"


def test_file_uri_with_a_host(tmp_path: Path) -> None:
    out = run_cli("--lake", "file://otherhost/lake", "status", cwd=tmp_path)
    assert out.returncode == 2
    assert "file:// URIs must be local" in one_error_line(out)


def test_unreachable_s3_endpoint(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "CONDVEST_S3__ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "CONDVEST_S3__MAX_ATTEMPTS": "1",
    }
    out = run_cli("--lake", "s3://bucket/lake", "status", cwd=tmp_path, env=env)
    assert out.returncode == 1
    message = one_error_line(out)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}")
    assert "s3.endpoint_url" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[consolidate]\nwrokers = 3\n", "unknown setting consolidate.wrokers in {path}"),
        ("[consolidation]\n", "unknown section [consolidation] in {path} (known sections: "),
        ("[consolidate\n", "config file {path} is not valid TOML: "),
        ('[consolidate]\nworkers = "many"\n', "consolidate.workers = 'many': "),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = run_cli("--config", "bad.toml", "status", cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out).startswith(expected.format(path="bad.toml"))
    assert out.stdout == ""


def test_config_file_from_environment(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[consolidate]\nwrokers = 3\n")
    out = run_cli("status", cwd=tmp_path, env={"CONDVEST_CONFIG": "bad.toml"})
    assert out.returncode == 2
    assert one_error_line(out) == "unknown setting consolidate.wrokers in bad.toml"


def test_bad_default_config_file(tmp_path: Path) -> None:
    (tmp_path / "condvest.toml").write_text("[lake]\nurl = 'x'\n")
    out = run_cli("status", cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out) == "unknown setting lake.url in condvest.toml"


def test_missing_config_file(tmp_path: Path) -> None:
    out = run_cli("--config", "nope.toml", "status", cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out) == "config file nope.toml does not exist (check --config)"


def test_bad_environment(tmp_path: Path) -> None:
    out = run_cli("status", cwd=tmp_path, env={"CONDVEST_CONSOLIDATE__WORKERS": "many"})
    assert out.returncode == 2
    assert one_error_line(out).endswith("(from environment variable CONDVEST_CONSOLIDATE__WORKERS)")
    out = run_cli("status", cwd=tmp_path, env={"CONDVEST_NOPE__X": "1"})
    assert out.returncode == 2
    assert one_error_line(out).startswith("unknown environment variable CONDVEST_NOPE__X")


def test_legacy_environment_is_used(tmp_path: Path) -> None:
    out = run_cli("--output", "json", "status", cwd=tmp_path, env={"RESAMPLING_INTERVALS": "4,9"})
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)["silver"]) == {"4d", "9d"}


@pytest.mark.parametrize(
    "args",
    [["status", "--bogus"], ["--output", "yaml", "status"], ["nosuchcommand"]],
)
def test_bad_flags_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "Usage: condvest" in out.stderr
    assert out.stdout == ""


def test_secrets_never_printed(tmp_path: Path) -> None:
    secret = "pk_SECRET_987654321"
    password = "pw_SECRET_123456"
    env = {
        "POLYGON_API_KEY": secret,
        "CONDVEST_POSTGRES__DSN": f"postgresql://u:{password}@127.0.0.1:1/db",
    }
    for args in (["--output", "json", "status"], ["-v", "--lake", "ftp://x", "status"]):
        out = run_cli(*args, cwd=tmp_path, env=env)
        assert secret not in out.stdout + out.stderr
        assert password not in out.stdout + out.stderr


# -- stdout holds the result, stderr the logs ----------------------------------------------------
def test_json_output_and_json_logs(tmp_path: Path) -> None:
    out = run_cli("--output", "json", "status", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1  # one JSON object, nothing else
    body = json.loads(out.stdout)
    assert body["stage"] == "status"
    assert body["lake"] == str(tmp_path / "lake")
    # stderr is a pipe, not a terminal: one JSON object per line.
    records = [json.loads(line) for line in out.stderr.splitlines()]
    assert records, "status logs a summary line"
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record)
    assert any(r["logger"] == "condvest.status" and r["level"] == "info" for r in records)


def test_text_output_goes_to_stdout_logs_to_stderr(tmp_path: Path) -> None:
    out = run_cli("status", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "latest_completed_session" in out.stdout
    assert "missing_sessions\n" in out.stdout  # section titles are never wrapped
    assert "{" not in out.stdout
    for line in out.stderr.splitlines():
        json.loads(line)
    assert not (tmp_path / "lake").exists()  # status reads only: it does not create the lake


def test_quiet_and_log_format(tmp_path: Path) -> None:
    quiet = run_cli("-q", "--output", "json", "status", cwd=tmp_path)
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    json.loads(quiet.stdout)
    text_logs = run_cli(
        "--output", "json", "status", cwd=tmp_path, env={"CONDVEST_LOG__FORMAT": "text"}
    )
    assert text_logs.returncode == 0
    assert "INFO" in text_logs.stderr
    assert not text_logs.stderr.lstrip().startswith("{")
    json.loads(text_logs.stdout)


# -- global options before or after the command (issue 14 item 1) -----------------------------
def command_args(command: str) -> list[str]:
    """A run of ``command`` that changes nothing in the lake and needs no network: status, a
    report (to a file in the working directory), a read, or a dry run."""
    reads = {
        "status": ["status"],
        "report": ["report", "--out", "report.html", "--force"],
        "read": ["read", "daily"],
        "sql": ["sql", "SELECT 1 AS one"],
    }
    return reads.get(command, [command, "--dry-run"])


def placed(where: str, options: list[str], command: str) -> list[str]:
    return (
        [*options, *command_args(command)]
        if where == "before"
        else [
            *command_args(command),
            *options,
        ]
    )


def stable(body: dict[str, object] | list[object]) -> dict[str, object] | list[object]:
    if isinstance(body, list):  # read / sql rows
        return body
    return {k: v for k, v in body.items() if k not in ("run_id", "duration_s", "generated_at")}


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS)
def test_global_options_in_either_position(tmp_path: Path, command: str, where: str) -> None:
    lake = tmp_path / "elsewhere"
    out = run_cli(*placed(where, ["--lake", str(lake), "-o", "json", "-q"], command), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # -q: nothing below a warning
    body = json.loads(out.stdout)
    reference = run_cli(
        *placed("before", ["--lake", str(lake), "-o", "json"], command), cwd=tmp_path
    )
    assert stable(body) == stable(json.loads(reference.stdout))
    # --lake reaches the command: a bad URI is refused whichever side it is on.
    out = run_cli(*placed(where, ["--lake=ftp://host/lake"], command), cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out).startswith("lake URI scheme 'ftp' in 'ftp://host/lake'")
    # --config reaches it too; -v shows the traceback.
    (tmp_path / "bad.toml").write_text("[consolidate]\nwrokers = 3\n")
    out = run_cli(*placed(where, ["--config", "bad.toml"], command), cwd=tmp_path)
    assert out.returncode == 2
    assert one_error_line(out) == "unknown setting consolidate.wrokers in bad.toml"
    out = run_cli(*placed(where, ["-v", "--config", "bad.toml"], command), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("Traceback (most recent call last):")


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_lists_the_global_options(tmp_path: Path, command: str) -> None:
    out = run_cli(command, "--help", cwd=tmp_path)
    assert out.returncode == 0
    for option in ("--config", "--lake", "-o, --output", "-v, --verbose", "-q, --quiet"):
        assert option in out.stdout, option


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-o", "text", "status", "-o", "json"], "json"),  # after the command: later wins
        (["-o", "json", "status", "-o", "text"], "text"),
        (["status", "-ojson"], "json"),
        (["status", "--output=json"], "json"),
        (["status", "-qo", "json"], "json"),
        (["status", "-o", "json", "--output", "text"], "text"),
    ],
)
def test_global_option_precedence_and_forms(tmp_path: Path, args: list[str], expected: str) -> None:
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    if expected == "json":
        json.loads(out.stdout)
    else:
        assert out.stdout.startswith("condvest status\n")


def test_later_lake_wins_and_double_dash_ends_the_options(tmp_path: Path) -> None:
    out = run_cli("--lake", "ftp://x/y", "-o", "json", "status", "--lake", "good", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["lake"] == str(tmp_path / "good")
    out = run_cli("--lake", "good", "status", "--lake", "ftp://x/y", cwd=tmp_path)
    assert out.returncode == 2
    # After "--" nothing is an option: "-o json" is an unexpected argument, not a format.
    out = run_cli("status", "--", "-o", "json", cwd=tmp_path)
    assert out.returncode == 2
    assert "unexpected extra argument" in out.stderr
    assert out.stdout == ""


# -- an unreachable configured database fails every run that writes to it (issue 14 item 5) ---
PG_PASSWORD = "pw_UNREACHABLE_31337"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unreachable_db_env() -> tuple[dict[str, str], int]:
    port = unused_port()
    dsn = f"postgresql://condvest:{PG_PASSWORD}@127.0.0.1:{port}/test"
    return {"CONDVEST_POSTGRES__DSN": dsn, "CONDVEST_POSTGRES__CONNECT_TIMEOUT_S": "2"}, port


def the_database_line(out: subprocess.CompletedProcess[str], port: int) -> str:
    """stderr names the database once, in one ``error:`` line with host and port; the password
    is nowhere."""
    assert PG_PASSWORD not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if "PostgreSQL" in line]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: cannot connect to PostgreSQL condvest@127.0.0.1:"), lines
    assert f"127.0.0.1:{port}" in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["fetch", "--source", "synthetic"],
        ["consolidate"],
        ["resample"],
        ["vacuum"],
        ["run", "--source", "synthetic"],
    ],
    ids=lambda a: a[0],
)
def test_unreachable_database_fails_the_run(tmp_path: Path, args: list[str]) -> None:
    env, port = unreachable_db_env()
    out = run_cli("-q", "-o", "json", *args, cwd=tmp_path, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    the_database_line(out, port)
    body = json.loads(out.stdout)
    assert body["ok"] is False
    assert f"127.0.0.1:{port}" in body["database_error"]


def test_a_fetch_that_lands_nothing_still_fails_on_an_unreachable_database(
    tmp_path: Path,
) -> None:
    env, port = unreachable_db_env()
    # Every session already landed (without the database): nothing to fetch, nothing to upsert.
    first = run_cli("-q", "--lake", "lake", "fetch", "--source", "synthetic", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = run_cli(
        "-q",
        "--lake",
        "lake",
        "fetch",
        "--source",
        "synthetic",
        "-o",
        "json",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 1
    body = json.loads(out.stdout)
    assert body["sessions_planned"] == 0 and body["rows"] == 0
    the_database_line(out, port)


def test_status_reports_an_unreachable_database(tmp_path: Path) -> None:
    env, port = unreachable_db_env()
    out = run_cli("-q", "-o", "json", "status", cwd=tmp_path, env=env)
    assert out.returncode == 0  # the view itself works
    assert PG_PASSWORD not in out.stdout + out.stderr
    body = json.loads(out.stdout)
    assert not body["healthy"]
    (problem,) = [p for p in body["problems"] if "PostgreSQL" in p]
    assert problem.startswith("the PostgreSQL cache cannot be read: cannot connect to PostgreSQL")
    assert f"127.0.0.1:{port}" in problem
    check = run_cli("-q", "status", "--check", cwd=tmp_path, env=env)
    assert check.returncode == 1
    assert PG_PASSWORD not in check.stdout + check.stderr

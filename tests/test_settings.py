"""Settings (docs/design.md §3): precedence, environment names, the original system's aliases, bad
input with its one-line message, secrets that never show, and the example file kept complete."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from condvest.errors import ConfigError
from condvest.settings import (
    SECTIONS,
    Settings,
    example_toml,
    load_settings,
    public_dict,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "condvest.example.toml"
UNSET = object()


def write_toml(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(**kwargs: Any) -> str:
    """The message of the ConfigError ``load_settings(**kwargs)`` raises (asserted one line)."""
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


# -- precedence ---------------------------------------------------------------------------------
def test_defaults_need_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./condvest.toml here
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.lake.uri == "./lake"
    assert settings.postgres.dsn is None
    assert settings.polygon.api_key is None
    assert settings.resample.intervals == [3, 5, 8, 13, 21, 34]
    assert settings.calendar.close_delay_minutes == 15


def test_precedence_flag_over_env_over_toml_over_default(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path,
        "[consolidate]\nworkers = 3\nretention_days = 12\n[fetch]\nhistory_years = 2\n",
    )
    env = {"CONDVEST_CONSOLIDATE__WORKERS": "5", "CONDVEST_CONSOLIDATE__RETENTION_DAYS": "20"}
    flags = {"consolidate": {"workers": 7}}
    settings = load_settings(config_path=toml, env=env, overrides=flags)
    assert settings.consolidate.workers == 7  # flag > env > toml
    assert settings.consolidate.retention_days == 20  # env > toml
    assert settings.fetch.history_years == 2  # toml > default
    assert settings.fetch.max_backfill_days == 30  # default
    without_flag = load_settings(config_path=toml, env=env)
    assert without_flag.consolidate.workers == 5
    toml_only = load_settings(config_path=toml, env={})
    assert toml_only.consolidate.workers == 3


def test_a_flag_left_unset_does_not_override(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[consolidate]\nworkers = 3\n")
    settings = load_settings(config_path=toml, env={}, overrides={"consolidate": {"workers": None}})
    assert settings.consolidate.workers == 3


def test_config_file_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path, "[fetch]\nhistory_years = 2\n", name="condvest.toml")
    other = write_toml(tmp_path, "[fetch]\nhistory_years = 3\n", name="other.toml")
    explicit = write_toml(tmp_path, "[fetch]\nhistory_years = 4\n", name="explicit.toml")
    assert load_settings(env={}).fetch.history_years == 2  # ./condvest.toml
    env = {"CONDVEST_CONFIG": str(other)}
    assert load_settings(env=env).fetch.history_years == 3  # $CONDVEST_CONFIG
    assert load_settings(config_path=explicit, env=env).fetch.history_years == 4  # --config


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDVEST_FETCH__HISTORY_YEARS", "9")
    assert load_settings().fetch.history_years == 9


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        ("CONDVEST_LAKE__URI", "s3://b/p", "lake", "uri", "s3://b/p"),
        ("CONDVEST_S3__ENDPOINT_URL", "http://127.0.0.1:9000", "s3", "endpoint_url", None),
        ("CONDVEST_POLYGON__REQUESTS_PER_MINUTE", "0", "polygon", "requests_per_minute", 0),
        ("CONDVEST_POLYGON__ADJUSTED", "false", "polygon", "adjusted", False),
        ("CONDVEST_FETCH__SOURCE", "synthetic", "fetch", "source", "synthetic"),
        ("CONDVEST_META__TYPES", "CS, ETF", "meta", "types", ["CS", "ETF"]),
        ("CONDVEST_RESAMPLE__INTERVALS", "21,5,5", "resample", "intervals", [5, 21]),
        ("CONDVEST_VACUUM__DB_RETENTION_DAYS", "", "vacuum", "db_retention_days", UNSET),
        ("CONDVEST_Lock__TTL_SECONDS", "60", "lock", "ttl_seconds", 60),
        ("condvest_lock__ttl_seconds", "61", "lock", "ttl_seconds", 61),
    ],
)
def test_condvest_environment_names(
    name: str, value: str, section: str, key: str, expected: Any
) -> None:
    settings = load_settings(env={name: value})
    got = getattr(getattr(settings, section), key)
    if expected is UNSET:
        assert got is None  # an empty variable unsets an optional setting
    else:
        assert got == (value if expected is None else expected)


# -- the original system's names ----------------------------------------------------------------
@pytest.mark.parametrize("bucket_var", ["S3_BUCKET", "S3_BUCKET_NAME", "S3_DATALAKE_BUCKET"])
def test_legacy_bucket_names(bucket_var: str) -> None:
    assert load_settings(env={bucket_var: "dl"}).lake.uri == "s3://dl"


@pytest.mark.parametrize(
    ("prefix", "uri"),
    [
        ("bronze/raw_ohlcv", "s3://dl"),  # the original's table prefix means the bucket root
        ("/bronze/raw_ohlcv/", "s3://dl"),
        ("bronze", "s3://dl"),
        ("prod/bronze/raw_ohlcv", "s3://dl/prod"),
        ("prod", "s3://dl/prod"),
        ("", "s3://dl"),
    ],
)
def test_legacy_s3_prefix(prefix: str, uri: str) -> None:
    assert load_settings(env={"S3_BUCKET": "dl", "S3_PREFIX": prefix}).lake.uri == uri


def test_s3_prefix_alone_changes_nothing() -> None:
    assert load_settings(env={"S3_PREFIX": "bronze/raw_ohlcv"}).lake.uri == "./lake"


@pytest.mark.parametrize(
    ("name", "value", "section", "key", "expected"),
    [
        ("AWS_REGION", "eu-west-1", "s3", "region", "eu-west-1"),
        ("MODE", "full", "consolidate", "mode", "full"),
        ("MAX_WORKERS", "4", "consolidate", "workers", 4),
        ("RETENTION_DAYS", "9", "consolidate", "retention_days", 9),
        ("SKIP_CLEANUP", "true", "consolidate", "skip_cleanup", True),
        ("RESAMPLING_INTERVALS", "3,5,8", "resample", "intervals", [3, 5, 8]),
        ("FORCE_FULL_RESAMPLE", "true", "resample", "force_full", True),
        ("POLYGON_API_KEY_SECRET_ARN", "arn:aws:sm:k", "polygon", "api_key_secret_arn", None),
        ("RDS_SECRET_ARN", "arn:aws:sm:db", "postgres", "secret_arn", None),
    ],
)
def test_legacy_names(name: str, value: str, section: str, key: str, expected: Any) -> None:
    settings = load_settings(env={name: value})
    got = getattr(getattr(settings, section), key)
    assert got == (value if expected is None else expected)


@pytest.mark.parametrize("name", ["POLYGON_API_KEY", "MASSIVE_API_KEY"])
def test_legacy_api_key_names(name: str) -> None:
    key = load_settings(env={name: "k-legacy-123"}).polygon.api_key
    assert key is not None and key.get_secret_value() == "k-legacy-123"


@pytest.mark.parametrize(
    ("legacy", "modern", "section", "key", "expected"),
    [
        ("S3_BUCKET", ("CONDVEST_LAKE__URI", "/data/lake"), "lake", "uri", "/data/lake"),
        ("AWS_REGION", ("CONDVEST_S3__REGION", "us-west-2"), "s3", "region", "us-west-2"),
        ("MODE", ("CONDVEST_CONSOLIDATE__MODE", "incremental"), "consolidate", "mode",
         "incremental"),
        ("MAX_WORKERS", ("CONDVEST_CONSOLIDATE__WORKERS", "2"), "consolidate", "workers", 2),
        ("RETENTION_DAYS", ("CONDVEST_CONSOLIDATE__RETENTION_DAYS", "8"), "consolidate",
         "retention_days", 8),
        ("SKIP_CLEANUP", ("CONDVEST_CONSOLIDATE__SKIP_CLEANUP", "false"), "consolidate",
         "skip_cleanup", False),
        ("RESAMPLING_INTERVALS", ("CONDVEST_RESAMPLE__INTERVALS", "13"), "resample", "intervals",
         [13]),
        ("FORCE_FULL_RESAMPLE", ("CONDVEST_RESAMPLE__FORCE_FULL", "false"), "resample",
         "force_full", False),
        ("POLYGON_API_KEY_SECRET_ARN", ("CONDVEST_POLYGON__API_KEY_SECRET_ARN", "arn:new"),
         "polygon", "api_key_secret_arn", "arn:new"),
        ("RDS_SECRET_ARN", ("CONDVEST_POSTGRES__SECRET_ARN", "arn:new"), "postgres", "secret_arn",
         "arn:new"),
    ],
)  # fmt: skip
def test_condvest_name_beats_its_alias(
    legacy: str, modern: tuple[str, str], section: str, key: str, expected: Any
) -> None:
    legacy_values = {
        "S3_BUCKET": "old-bucket",
        "AWS_REGION": "eu-west-1",
        "MODE": "full",
        "MAX_WORKERS": "9",
        "RETENTION_DAYS": "99",
        "SKIP_CLEANUP": "true",
        "RESAMPLING_INTERVALS": "3,5",
        "FORCE_FULL_RESAMPLE": "true",
        "POLYGON_API_KEY_SECRET_ARN": "arn:old",
        "RDS_SECRET_ARN": "arn:old",
    }
    env = {legacy: legacy_values[legacy], modern[0]: modern[1]}
    assert getattr(getattr(load_settings(env=env), section), key) == expected


@pytest.mark.parametrize("legacy", ["POLYGON_API_KEY", "MASSIVE_API_KEY"])
def test_condvest_api_key_beats_its_alias(legacy: str) -> None:
    env = {legacy: "old-key-123", "CONDVEST_POLYGON__API_KEY": "new-key-456"}
    key = load_settings(env=env).polygon.api_key
    assert key is not None and key.get_secret_value() == "new-key-456"


def test_legacy_env_beats_toml(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, '[consolidate]\nworkers = 3\n[lake]\nuri = "/x"\n')
    settings = load_settings(config_path=toml, env={"MAX_WORKERS": "6", "S3_BUCKET": "b"})
    assert settings.consolidate.workers == 6
    assert settings.lake.uri == "s3://b"


# -- bad input: one line naming the value and the fix -------------------------------------------
def test_unknown_toml_key(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[consolidate]\nwrokers = 3\n")
    assert (
        config_error(config_path=toml, env={}) == f"unknown setting consolidate.wrokers in {toml}"
    )


def test_unknown_toml_section(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[consolidation]\nworkers = 3\n")
    message = config_error(config_path=toml, env={})
    assert message.startswith(f"unknown section [consolidation] in {toml} (known sections: lake, ")
    assert "consolidate" in message


def test_top_level_key_is_not_a_section(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "lake = 3\n")
    assert config_error(config_path=toml, env={}) == f"lake in {toml} must be a [lake] table"


def test_bad_toml_syntax(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[consolidate\nworkers = 3\n")
    message = config_error(config_path=toml, env={})
    assert message.startswith(f"config file {toml} is not valid TOML: ")
    assert "line 1" in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = config_error(config_path=path, env={})
    assert message == f"config file {path} does not exist (check --config)"


def test_bad_toml_value(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, '[consolidate]\nworkers = "many"\n')
    message = config_error(config_path=toml, env={})
    assert message.startswith("consolidate.workers = 'many': Input should be a valid integer")
    assert message.endswith(f"(from {toml})")


def test_bad_env_value() -> None:
    message = config_error(env={"CONDVEST_CONSOLIDATE__WORKERS": "many"})
    assert message == (
        "consolidate.workers = 'many': Input should be a valid integer, unable to parse string "
        "as an integer (from environment variable CONDVEST_CONSOLIDATE__WORKERS)"
    )


def test_bad_legacy_env_value_names_the_legacy_variable() -> None:
    message = config_error(env={"MAX_WORKERS": "lots"})
    assert message.startswith("consolidate.workers = 'lots': ")
    assert message.endswith("(from environment variable MAX_WORKERS)")
    message = config_error(env={"MODE": "sometimes"})
    assert message == (
        "consolidate.mode = 'sometimes': Input should be 'incremental' or 'full' "
        "(from environment variable MODE)"
    )


def test_out_of_range_value() -> None:
    message = config_error(env={"CONDVEST_CONSOLIDATE__WORKERS": "0"})
    assert message.startswith("consolidate.workers = '0': Input should be greater than or equal")


@pytest.mark.parametrize(
    "name",
    [
        "CONDVEST_NOPE__X",
        "CONDVEST_CONSOLIDATE__WROKERS",
        "CONDVEST_LAKE",
        "CONDVEST_URI",
        "condvest_consolidate__wrokers",
    ],
)
def test_unknown_condvest_variable(name: str) -> None:
    message = config_error(env={name: "1"})
    assert message == (
        f"unknown environment variable {name} "
        "(settings are CONDVEST_<SECTION>__<KEY>, see condvest.example.toml)"
    )


def test_non_setting_condvest_variables_are_ignored() -> None:
    load_settings(env={"CONDVEST_REQUIRE_POSTGRES": "1", "CONDVEST_TEST_PG_HOST": "x"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,5", "resample.intervals = ['1', '5']: intervals must be between 2 and 1000 sessions, "
         "got [1]"),
        ("5,2000", "resample.intervals = ['5', '2000']: intervals must be between 2 and 1000 "
         "sessions, got [2000]"),
        (",", "resample.intervals = []: at least one interval is needed, e.g. 3,5,8"),
        ("3,x", "resample.intervals.1 = 'x': Input should be a valid integer, unable to parse "
         "string as an integer"),
    ],
)  # fmt: skip
def test_bad_intervals(value: str, expected: str) -> None:
    message = config_error(env={"RESAMPLING_INTERVALS": value})
    assert message == expected + " (from environment variable RESAMPLING_INTERVALS)"


def test_bad_intervals_in_toml(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, "[resample]\nintervals = [5, 1]\n")
    message = config_error(config_path=toml, env={})
    assert message == (
        f"resample.intervals = [5, 1]: intervals must be between 2 and 1000 sessions, got [1] "
        f"(from {toml})"
    )


def test_bad_flag_value() -> None:
    message = config_error(env={}, overrides={"consolidate": {"retention_days": -1}})
    assert message.startswith("consolidate.retention_days = -1: ")
    assert message.endswith("(from command line)")


# -- secrets --------------------------------------------------------------------------------------
API_KEY = "pk_live_Zx9SECRETvalue"
PASSWORD = "Hunter2-DSNPASSWORD"
DSN = f"postgresql://condvest:{PASSWORD}@db.example:5432/lake"


def test_secrets_never_in_repr_or_dumps() -> None:
    settings = load_settings(
        env={"CONDVEST_POLYGON__API_KEY": API_KEY, "CONDVEST_POSTGRES__DSN": DSN}
    )
    assert settings.polygon.api_key is not None
    assert settings.polygon.api_key.get_secret_value() == API_KEY
    assert settings.postgres.dsn is not None
    assert settings.postgres.dsn.get_secret_value() == DSN
    shown = [
        repr(settings),
        str(settings),
        repr(settings.polygon),
        str(settings.postgres),
        str(settings.model_dump(mode="json")),
        settings.model_dump_json(),
        str(public_dict(settings)),
    ]
    for text in shown:
        assert API_KEY not in text
        assert PASSWORD not in text


def test_secret_from_legacy_name_not_in_repr() -> None:
    settings = load_settings(env={"POLYGON_API_KEY": API_KEY})
    assert API_KEY not in repr(settings)
    assert API_KEY not in str(settings.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("section", "key", "bad"),
    [
        ("polygon", "api_key", 918273645),
        ("polygon", "api_key", [API_KEY]),
        ("postgres", "dsn", [DSN]),
        ("postgres", "dsn", {"url": DSN}),
    ],
)
def test_secret_not_in_validation_error(section: str, key: str, bad: Any) -> None:
    message = config_error(env={}, overrides={section: {key: bad}})
    assert message.startswith(f"{section}.{key} = ***: ")
    for secret in (API_KEY, PASSWORD, "918273645"):
        assert secret not in message


def test_secret_not_in_toml_validation_error(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path, f'[postgres]\ndsn = ["{DSN}"]\n[polygon]\napi_key = ["{API_KEY}"]\n'
    )
    message = config_error(config_path=toml, env={})
    assert "postgres.dsn = ***" in message and "polygon.api_key = ***" in message
    assert PASSWORD not in message and API_KEY not in message


def test_secret_not_in_error_about_another_setting() -> None:
    env = {"CONDVEST_POLYGON__API_KEY": API_KEY, "CONDVEST_CONSOLIDATE__WORKERS": "x"}
    assert API_KEY not in config_error(env=env)


# -- the example file -----------------------------------------------------------------------------
def test_example_file_is_current() -> None:
    """Fails when a setting was added without regenerating condvest.example.toml."""
    assert EXAMPLE.read_text() == example_toml(), (
        "condvest.example.toml is out of date: run `.venv/bin/python -m condvest.settings`"
    )


def test_example_file_lists_every_setting() -> None:
    """Parse the committed file: every section and key appears, as a value or commented out."""
    text = EXAMPLE.read_text()
    parsed = tomllib.loads(text)
    assert set(parsed) == set(SECTIONS)
    lines = text.splitlines()
    for section, model in SECTIONS.items():
        start = lines.index(f"[{section}]")
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines)
        )
        body = lines[start:end]
        for key, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if default is None:
                assert f"# {key} =" in body, f"{section}.{key} is missing from the example file"
            else:
                assert key in parsed[section], f"{section}.{key} is missing from the example file"
            assert field.description, f"{section}.{key} has no description"
            assert f"# {field.description}" in body
            assert any(f"CONDVEST_{section.upper()}__{key.upper()}" in line for line in body)
        unknown = set(parsed[section]) - set(model.model_fields)
        assert not unknown


def test_example_file_gives_the_defaults() -> None:
    assert load_settings(config_path=EXAMPLE, env={}) == Settings()


def test_example_toml_detects_a_missing_key() -> None:
    """The completeness check above can fail: dropping one key line is noticed."""
    text = example_toml().replace("workers = 10\n", "")
    parsed = tomllib.loads(text)
    assert "workers" not in parsed["consolidate"]
    assert text != EXAMPLE.read_text()

"""Configuration (docs/design.md §3).

Precedence: CLI flag > environment > TOML file > defaults. Environment names are
``CONDVEST_<SECTION>__<KEY>``; the original system's names are accepted as aliases (a
``CONDVEST_`` name wins over its alias). Secrets are ``SecretStr`` and never rendered.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from condvest.errors import ConfigError
from condvest.settings_legacy import LEGACY_BUCKET_ENV, LEGACY_ENV, legacy_bucket_uri
from condvest.settings_secrets import format_validation_error, warn_if_exposed

ENV_PREFIX = "CONDVEST_"
DEFAULT_CONFIG_FILE = "condvest.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class LakeSettings(_Section):
    uri: str = Field(
        "./lake", description="Lake root: a local path, file://… or s3://bucket/prefix"
    )


class S3Settings(_Section):
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2, tests)")
    region: str | None = Field(None, description="AWS region; unset = from the AWS environment")
    connect_timeout_s: float = Field(10.0, gt=0, description="Connect timeout per S3 request")
    read_timeout_s: float = Field(60.0, gt=0, description="Read timeout per S3 request")
    max_attempts: int = Field(5, ge=1, description="botocore retry attempts per S3 request")


class SourceKind(StrEnum):
    POLYGON = "polygon"
    SYNTHETIC = "synthetic"


class PolygonSettings(_Section):
    api_key: SecretStr | None = Field(None, description="Polygon/Massive API key (secret)")
    api_key_secret_arn: str | None = Field(
        None, description="Secrets Manager ARN holding the API key (alternative to api_key)"
    )
    secrets_endpoint_url: str | None = Field(
        None, description="Secrets Manager endpoint for api_key_secret_arn (tests, VPC endpoints)"
    )
    base_url: str = Field("https://api.polygon.io", description="REST root")
    requests_per_minute: int = Field(5, ge=0, description="Client-side pacing; 0 = unlimited")
    max_concurrency: int = Field(4, ge=1, description="Requests in flight at once")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one HTTP request")
    max_retries: int = Field(5, ge=0, description="Retries on 429/5xx/timeouts before failing")
    backoff_base_s: float = Field(1.0, ge=0, description="First retry delay; doubles each retry")
    backoff_max_s: float = Field(60.0, ge=0, description="Longest single retry delay")
    adjusted: bool = Field(
        True,
        description="Ask for split-adjusted aggregates; false keeps traded prices (a raw lake, "
        "fixed when the lake is created: docs/corporate-actions.md)",
    )
    include_otc: bool = Field(False, description="Include OTC securities in grouped daily")
    max_pages: int = Field(
        10000, ge=1, description="Most next_url pages followed for one paginated request"
    )
    max_response_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest response body accepted, measured after decompression (bytes)",
    )


class FetchSettings(_Section):
    source: SourceKind = Field(SourceKind.POLYGON, description="polygon | synthetic (offline demo)")
    max_backfill_days: int = Field(
        30, ge=1, description="Largest gap (sessions) filled without --start"
    )
    history_years: int = Field(5, ge=1, description="Years of history for --history / new symbols")
    backfill_new_symbols: bool = Field(
        False, description="Fetch history_years of history for symbols first seen in a daily fetch"
    )
    write_concurrency: int = Field(
        32, ge=1, description="Parallel file writes while landing a session"
    )
    min_session_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A session whose accepted rows fall below this fraction of the median of "
        "the last session_lookback landed sessions fails (is not recorded, is retried); a "
        "session with no accepted row always fails",
    )
    session_lookback: int = Field(
        10, ge=1, description="Landed sessions the min_session_fraction median is taken over"
    )
    unpublished_wait_s: float = Field(
        0.0,
        ge=0,
        description="Seconds a run may wait for a session the source has not published yet "
        "(an empty answer), re-asking every unpublished_retry_s, within the run's time budget",
    )
    unpublished_retry_s: float = Field(
        60.0, gt=0, description="Pause between re-asks for a not yet published session"
    )
    max_price: float = Field(
        1e7, gt=0, description="A price or vwap above this is a vendor error (row quarantined)"
    )
    max_volume: float = Field(
        1e13, gt=0, description="A volume above this is a vendor error (row quarantined)"
    )
    max_transactions: float = Field(
        1e10, gt=0, description="A transaction count above this is a vendor error (quarantined)"
    )
    synthetic_symbols: int = Field(50, ge=1, description="Universe size of the synthetic source")
    synthetic_seed: int = Field(42, description="Seed of the synthetic source")


class MetaSettings(_Section):
    refresh_days: int = Field(7, ge=0, description="Re-fetch details of symbols older than this")
    types: list[str] = Field(
        default_factory=lambda: ["CS", "ADRC", "ETF", "ETV", "PFD"],
        description="Ticker types kept in the universe (empty = all)",
    )
    exchanges: list[str] = Field(
        default_factory=list, description="Primary exchanges kept (MIC codes; empty = all)"
    )
    min_list_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A ticker list with fewer active symbols than this fraction of the previous "
        "snapshot's is refused (nothing is marked inactive)",
    )


class CalendarSettings(_Section):
    exchange: str = Field("XNYS", description="Exchange calendar (pandas-market-calendars name)")
    close_delay_minutes: int = Field(
        15, ge=0, description="Minutes after the close a session is done"
    )
    closures_file: str | None = Field(
        None, description="File of extra closed dates (YYYY-MM-DD per line) the library lacks"
    )
    cache_dir: str | None = Field(
        None,
        description="Folder caching the computed session schedule (unset: $XDG_CACHE_HOME/"
        "condvest or ~/.cache/condvest; empty string: no cache)",
    )


class ConsolidateMode(StrEnum):
    INCREMENTAL = "incremental"
    FULL = "full"


class ConsolidateSettings(_Section):
    mode: ConsolidateMode = Field(ConsolidateMode.INCREMENTAL, description="incremental | full")
    workers: int = Field(10, ge=1, description="Symbols processed in parallel")
    retention_days: int = Field(
        30, ge=0, description="Keep date= files this many days after merging"
    )
    skip_cleanup: bool = Field(False, description="Do not delete merged date= files")
    shards: int | None = Field(
        None,
        ge=1,
        description="Shard count of an AWS Batch array job (its size): each child takes shard "
        "AWS_BATCH_JOB_ARRAY_INDEX; without an array index a run is whole (unset: unsharded)",
    )


class VacuumSettings(_Section):
    min_retention_days: int = Field(7, ge=0, description="Floor for retention; lower needs --force")
    temp_grace_hours: float = Field(
        6.0, ge=0, description="Age before a crashed write's temp file goes"
    )
    db_retention_days: int | None = Field(
        None, ge=1, description="Delete PostgreSQL raw_ohlcv rows older than this (unset = keep)"
    )


class Alignment(StrEnum):
    CALENDAR = "calendar"
    ROWS = "rows"


class ResampleSettings(_Section):
    intervals: list[int] = Field(
        default_factory=lambda: [3, 5, 8, 13, 21, 34], description="Bar sizes in sessions"
    )
    alignment: Alignment = Field(Alignment.CALENDAR, description="calendar | rows")
    force_full: bool = Field(False, description="Always rebuild silver in full")
    threads: int = Field(0, ge=0, description="DuckDB threads (0 = all cores)")
    memory_limit: str = Field("3GB", description="DuckDB memory limit (spills beyond it)")
    full_read_rows: int = Field(
        6_000_000,
        ge=1,
        description="A full rebuild reads the lake in parts of about this many daily rows "
        "(whole symbols): peak memory follows the part size plus the bars kept, not the lake",
    )

    @field_validator("intervals", mode="before")
    @classmethod
    def _split_intervals(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("intervals")
    @classmethod
    def _check_intervals(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("at least one interval is needed, e.g. 3,5,8")
        bad = [n for n in value if n < 2 or n > 1000]
        if bad:
            raise ValueError(f"intervals must be between 2 and 1000 sessions, got {bad}")
        return sorted(set(value))


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class PostgresSettings(_Section):
    dsn: SecretStr | None = Field(None, description="PostgreSQL DSN (secret); unset = off")
    secret_arn: str | None = Field(
        None, description="Secrets Manager ARN with host, port, username, password, dbname"
    )
    sslmode: SslMode | None = Field(
        None, description="libpq sslmode (require for RDS); unset = libpq's default (prefer)"
    )
    connect_timeout_s: int = Field(10, ge=1, description="Connect timeout")
    schema_name: str = Field(
        "public", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="Schema holding the tables"
    )
    secrets_endpoint_url: str | None = Field(
        None, description="Secrets Manager endpoint for secret_arn (tests, LocalStack); unset = AWS"
    )
    delete_batch_rows: int = Field(
        50_000, ge=100, description="Rows per batch when retention deletes old raw_ohlcv rows"
    )


class LockSettings(_Section):
    ttl_seconds: int = Field(
        3600,
        ge=10,
        description="A stage lock older than this (not renewed) is taken over; sooner when "
        "its holder provably died on this machine",
    )


class LogSettings(_Section):
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto = rich on a TTY, JSON lines otherwise"
    )
    progress_interval_s: float = Field(
        30.0,
        gt=0,
        description="Off a terminal: one progress line per long loop every this many seconds "
        "(done/total, rate, ETA; docs/progress.md)",
    )


class MetricsSettings(_Section):
    namespace: str = Field(
        "condvest",
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9.\-_/#: ]+$",
        description="CloudWatch namespace of the EMF metrics (docs/metrics.md)",
    )
    emf: Literal["auto", "on", "off"] = Field(
        "auto",
        description="CloudWatch Embedded Metric Format lines on stderr: auto = on in Lambda or "
        "Batch (AWS_LAMBDA_FUNCTION_NAME / AWS_BATCH_JOB_ID set) or with log.format = json",
    )

    @field_validator("namespace")
    @classmethod
    def _not_aws(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("namespaces starting with AWS/ are reserved for AWS services")
        return value


class Settings(_Section):
    """All settings. Build with :func:`load_settings`."""

    lake: LakeSettings = Field(default_factory=LakeSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    polygon: PolygonSettings = Field(default_factory=PolygonSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    meta: MetaSettings = Field(default_factory=MetaSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    consolidate: ConsolidateSettings = Field(default_factory=ConsolidateSettings)
    vacuum: VacuumSettings = Field(default_factory=VacuumSettings)
    resample: ResampleSettings = Field(default_factory=ResampleSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    lock: LockSettings = Field(default_factory=LockSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)


SECTIONS: dict[str, type[_Section]] = {
    name: field.default_factory  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}


# CONDVEST_ variables that are not settings (read elsewhere).
_NON_SETTING_ENV = {"CONDVEST_CONFIG", "CONDVEST_LAMBDA_COMMAND", "CONDVEST_LAMBDA_MARGIN_S"}


def _env_layer(
    env: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """The environment's settings, and which variable each came from (for error messages)."""
    layer: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    uri = legacy_bucket_uri(env)
    if uri:
        layer.setdefault("lake", {})["uri"] = uri
        names[("lake", "uri")] = next(n for n in LEGACY_BUCKET_ENV if env.get(n))
    for name, (section, key) in LEGACY_ENV.items():
        if env.get(name, "") != "":
            layer.setdefault(section, {})[key] = env[name]
            names[(section, key)] = name
    for name, value in env.items():
        # Case-insensitive, like pydantic-settings: condvest_lake__uri must not be ignored.
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in _NON_SETTING_ENV:
            continue
        if upper.startswith("CONDVEST_TEST") or upper.startswith("CONDVEST_REQUIRE"):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, sep, key = rest.partition("__")
        if not sep or section not in SECTIONS or key not in SECTIONS[section].model_fields:
            raise ConfigError(
                f"unknown environment variable {name}",
                hint="settings are CONDVEST_<SECTION>__<KEY>, see condvest.example.toml",
            )
        layer.setdefault(section, {})[key] = value
        names[(section, key)] = name
    return layer, names


def _coerce_env_value(section: str, key: str, value: Any) -> Any:
    """Environment values are strings; lists are comma-separated."""
    if not isinstance(value, str):
        return value
    annotation = str(SECTIONS[section].model_fields[key].annotation)
    if annotation.startswith("list["):
        return [part.strip() for part in value.split(",") if part.strip()]
    if value == "" and "None" in annotation:
        return None
    return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", hint="check --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in top.items():
        if isinstance(values, Mapping) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def load_settings(
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build settings from defaults < TOML < environment < ``overrides`` (CLI flags).

    ``config_path`` None means ``$CONDVEST_CONFIG`` or ``./condvest.toml`` if it exists.
    Raises :class:`ConfigError` with one line naming the bad key and value.
    """
    env = os.environ if env is None else env
    origin: dict[tuple[str, str], str] = {}
    data: dict[str, Any] = {}
    path: Path | None = None
    if config_path is not None:
        path = Path(config_path)
    elif env.get("CONDVEST_CONFIG"):
        path = Path(env["CONDVEST_CONFIG"])
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        path = Path(DEFAULT_CONFIG_FILE)
    if path is not None:
        toml = read_toml(path)
        warn_if_exposed(path, toml)
        for section, values in toml.items():
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown section [{section}] in {path}",
                    hint=f"known sections: {', '.join(SECTIONS)}",
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{section} in {path} must be a [{section}] table")
            for key in values:
                origin[(section, key)] = str(path)
        data = _merge(data, toml)
    env_layer, env_names = _env_layer(env)
    for section, values in env_layer.items():
        for key in values:
            origin[(section, key)] = f"environment variable {env_names[(section, key)]}"
            values[key] = _coerce_env_value(section, key, values[key])
    data = _merge(data, env_layer)
    if overrides:
        clean = {
            s: {k: v for k, v in vals.items() if v is not None} for s, vals in overrides.items()
        }
        for section, values in clean.items():
            for key in values:
                origin[(section, key)] = "command line"
        data = _merge(data, clean)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None


def public_dict(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with secrets masked (for status / debugging output)."""
    return settings.model_dump(mode="json")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return f'"{value.value}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def example_toml() -> str:
    """The text of ``condvest.example.toml``: every key, its default and a one-line comment.

    Unset defaults are shown commented out. Regenerate with ``python -m condvest.settings``.
    """
    lines = [
        "# condvest configuration: every key with its default. Copy to condvest.toml and edit.",
        "# Precedence: command-line flag > environment (CONDVEST_<SECTION>__<KEY>)"
        " > this file > defaults.",
        "# Generated by `python -m condvest.settings`; a test keeps it complete.",
    ]
    for section, model in SECTIONS.items():
        lines.append("")
        lines.append(f"[{section}]")
        for key, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            lines.append(f"# {field.description}")
            env = f"CONDVEST_{section.upper()}__{key.upper()}"
            aliases = [n for n, target in LEGACY_ENV.items() if target == (section, key)]
            if section == "lake" and key == "uri":
                aliases = list(LEGACY_BUCKET_ENV)
            lines.append(f"# env: {env}" + (f" (also {', '.join(aliases)})" if aliases else ""))
            if default is None:
                lines.append(f"# {key} =")
            else:
                lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    Path("condvest.example.toml").write_text(example_toml())
    print("wrote condvest.example.toml")

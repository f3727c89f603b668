"""Issue 13 item 12: a secret put in the wrong setting is never echoed. A key-shaped value in a
non-secret setting, a value from a secret-named variable, and a key pasted into the ARN setting
each give one error line without the value; a config file holding a secret that others can read
is warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from condvest.errors import ConfigError
from condvest.settings import load_settings
from condvest.settings_secrets import looks_secret

KEY = "Zx9kq2LmN8pQr4StUv6W"


@pytest.mark.parametrize("value", [KEY, "pk-abcdef123456XYZ", "postgresql://u:pw-1234@h/db"])
def test_key_shaped_value_in_a_plain_setting_is_not_echoed(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"CONDVEST_POLYGON__MAX_RETRIES": value})
    text = str(info.value)
    assert "polygon.max_retries = ***" in text
    assert value not in text and "pw-1234" not in text


def test_plain_wrong_value_is_still_shown() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"CONDVEST_POLYGON__TIMEOUT_S": "short"})
    assert "'short'" in str(info.value)  # not key-shaped: shown, it helps the user


def test_looks_secret_keeps_ordinary_values_visible() -> None:
    assert not looks_secret("abc")
    assert not looks_secret("s3://bucket/prefix")
    assert not looks_secret("2025-01-02")
    assert looks_secret(KEY)


def test_key_in_the_arn_setting_is_not_echoed(tmp_path: Path) -> None:
    from condvest.core.calendar import TradingCalendar
    from condvest.sources import open_source

    settings = load_settings(env={"POLYGON_API_KEY_SECRET_ARN": KEY})
    with pytest.raises(ConfigError) as info:
        open_source(settings, TradingCalendar.__new__(TradingCalendar))
    assert KEY not in str(info.value) and KEY not in (info.value.hint or "")
    assert "not a Secrets Manager ARN" in str(info.value)


def test_world_readable_config_with_a_secret_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "condvest.toml"
    config.write_text(f'[polygon]\napi_key = "{KEY}"\n')
    config.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="condvest.settings"):
        load_settings(config_path=config, env={})
    assert any("readable or writable by others" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() for r in caplog.records)
    caplog.clear()
    config.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="condvest.settings"):
        load_settings(config_path=config, env={})
    assert not caplog.records

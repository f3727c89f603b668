"""POLYGON_API_KEY_SECRET_ARN: the key is read from Secrets Manager (moto on 127.0.0.1), plain or
as JSON, sent as the bearer header, and never printed; a missing secret is one clear line."""

from __future__ import annotations

import json
import uuid
from datetime import date

import botocore.session
import pytest

from condvest.core.calendar import get_calendar
from condvest.errors import ConfigError
from condvest.settings import load_settings
from condvest.sources import open_source
from polygon_server import KEY, FakePolygon, agg

DAY = date(2025, 1, 2)


def _secret(endpoint: str, value: str) -> str:
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name="us-east-1", endpoint_url=endpoint
    )
    name = f"polygon-{uuid.uuid4().hex[:8]}"
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


@pytest.mark.parametrize("stored", [KEY, json.dumps({"api_key": KEY}), json.dumps({"k": KEY})])
def test_key_from_secret_reaches_polygon(
    moto_endpoint: str, polygon: FakePolygon, stored: str
) -> None:
    arn = _secret(moto_endpoint, stored)
    polygon.grouped[DAY] = [agg("AAPL", DAY)]
    settings = load_settings(
        env={"POLYGON_API_KEY_SECRET_ARN": arn},
        overrides={
            "polygon": {
                "base_url": polygon.url,
                "secrets_endpoint_url": moto_endpoint,
                "requests_per_minute": 0,
            }
        },
    )
    source = open_source(settings, get_calendar())
    batch = source.grouped_daily(DAY)
    assert batch.rows.num_rows == 1
    assert polygon.seen[-1].authorization == f"Bearer {KEY}"


def test_missing_secret_is_one_clear_line(moto_endpoint: str) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    settings = load_settings(
        env={"POLYGON_API_KEY_SECRET_ARN": arn},
        overrides={"polygon": {"secrets_endpoint_url": moto_endpoint}},
    )
    with pytest.raises(ConfigError, match="cannot read the Polygon API key secret") as err:
        open_source(settings, get_calendar())
    assert "ResourceNotFoundException" in str(err.value)
    assert "\n" not in str(err.value)

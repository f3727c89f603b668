"""Market-data sources: Polygon over HTTP, or the offline synthetic source."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from condvest.errors import ConfigError
from condvest.settings import Settings, SourceKind

if TYPE_CHECKING:
    from condvest.core.calendar import TradingCalendar
    from condvest.sources.base import Source


def open_source(
    settings: Settings, calendar: TradingCalendar, *, symbols: Sequence[str] | None = None
) -> Source:
    """The source named by ``fetch.source``. Polygon needs ``polygon.api_key``. ``symbols``
    (``--symbols``) are the ones asked for: the synthetic source then trades them too."""
    if settings.fetch.source is SourceKind.SYNTHETIC:
        from condvest.sources.synthetic import SyntheticSource

        return SyntheticSource(
            calendar,
            symbols=settings.fetch.synthetic_symbols,
            seed=settings.fetch.synthetic_seed,
            requested=symbols,
            adjusted=settings.polygon.adjusted,
        )
    key = settings.polygon.api_key
    value = key.get_secret_value() if key is not None else ""
    if not value and settings.polygon.api_key_secret_arn:
        value = read_api_key_secret(settings)
    if not value:
        hint = "set POLYGON_API_KEY (or polygon.api_key), or use --source synthetic for a demo"
        raise ConfigError("no Polygon API key is configured", hint=hint)
    from condvest.sources.polygon import PolygonSource

    return PolygonSource(settings.polygon, value)


_KEY_FIELDS = ("api_key", "apiKey", "POLYGON_API_KEY", "MASSIVE_API_KEY", "key")


def read_api_key_secret(settings: Settings) -> str:
    """The key from ``POLYGON_API_KEY_SECRET_ARN``: a plain SecretString, or a JSON object with
    one of api_key / apiKey / POLYGON_API_KEY / MASSIVE_API_KEY / key (or a single value)."""
    from condvest.secrets import parse_json_secret, read_secret_string

    arn = settings.polygon.api_key_secret_arn or ""
    hint = "check POLYGON_API_KEY_SECRET_ARN and the secretsmanager:GetSecretValue permission"
    text = read_secret_string(
        arn,
        error=ConfigError,
        what="Polygon API key",
        hint=hint,
        endpoint_url=settings.polygon.secrets_endpoint_url,
        region=settings.s3.region,
    )
    body = parse_json_secret(text)
    if body is None:
        return text.strip()
    for name in _KEY_FIELDS:
        if isinstance(body.get(name), str) and body[name]:
            return str(body[name])
    values = [v for v in body.values() if isinstance(v, str) and v]
    if len(values) == 1:
        return values[0]
    raise ConfigError(
        f"the Polygon API key secret {arn} is a JSON object without an api_key field",
        hint='store the key as plain text or as {"api_key": "..."}',
    )

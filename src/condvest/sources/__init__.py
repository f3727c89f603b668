"""Market-data sources: Polygon over HTTP, or the offline synthetic source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from condvest.errors import ConfigError
from condvest.settings import Settings, SourceKind

if TYPE_CHECKING:
    from condvest.core.calendar import TradingCalendar
    from condvest.sources.base import Source


def open_source(settings: Settings, calendar: TradingCalendar) -> Source:
    """The source named by ``fetch.source``. Polygon needs ``polygon.api_key``."""
    if settings.fetch.source is SourceKind.SYNTHETIC:
        from condvest.sources.synthetic import SyntheticSource

        return SyntheticSource(
            calendar, symbols=settings.fetch.synthetic_symbols, seed=settings.fetch.synthetic_seed
        )
    key = settings.polygon.api_key
    if key is None or not key.get_secret_value():
        hint = "set POLYGON_API_KEY (or polygon.api_key), or use --source synthetic for a demo"
        if settings.polygon.api_key_secret_arn:
            hint = "polygon.api_key_secret_arn is not supported yet; set POLYGON_API_KEY instead"
        raise ConfigError("no Polygon API key is configured", hint=hint)
    from condvest.sources.polygon import PolygonSource

    return PolygonSource(settings.polygon, key.get_secret_value())

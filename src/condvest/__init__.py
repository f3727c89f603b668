"""condvest: keep a stock-market OHLCV data lake.

The Python API is :func:`open_lake` and :class:`Lake` (docs/python-api.md)::

    with condvest.open_lake("/tmp/lake", fetch__source="synthetic") as lake:
        lake.fetch(start="2025-01-02")
        print(lake.status().to_dict())

Importing ``condvest`` stays light: ``condvest.core`` loads this package too, so the stages are
imported on first use of ``open_lake`` / ``Lake`` / ``DryRun``, not here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from condvest.version import __version__

if TYPE_CHECKING:
    from condvest.lake import DryRun, Lake, open_lake

__all__ = ["DryRun", "Lake", "__version__", "open_lake"]


def __getattr__(name: str) -> Any:
    if name in ("DryRun", "Lake", "open_lake"):
        from condvest import lake

        return getattr(lake, name)
    raise AttributeError(f"module 'condvest' has no attribute {name!r}")

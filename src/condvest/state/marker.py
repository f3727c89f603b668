"""The lake marker (``condvest-lake.json`` at the root): what tells a condvest lake from any other
directory or prefix before a command deletes anything there.

condvest writes it when it creates a lake (the first run on an empty location), and adopts an
existing lake of an older condvest on its first successful run when the root holds only
condvest's own names (``bronze/``, ``silver/``, ``processing_metadata/``). The commands that
delete (consolidate, resample, vacuum) refuse a location that has neither a marker nor that
layout, or whose marker condvest did not write.

The marker also records the lake's ``price_scale`` (docs/corporate-actions.md#raw-lakes): what
its bronze rows hold, so fetch never lands the other scale into it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from condvest.core import layout
from condvest.core.factors import PriceScale
from condvest.errors import ConfigError, CorruptFileError, NotFoundError
from condvest.storage.base import Storage, json_bytes
from condvest.version import __version__

log = logging.getLogger("condvest.lake")

LakeKind = Literal["marked", "layout", "empty", "foreign"]


@dataclass(frozen=True)
class LakeCheck:
    """What is at the lake location: ``marked`` (a valid marker), ``layout`` (condvest's
    directories only, no marker yet), ``empty`` (nothing), ``foreign`` (anything else)."""

    kind: LakeKind
    foreign: tuple[str, ...] = ()
    """Top-level names condvest did not write (``foreign`` only)."""
    problem: str | None = None
    """Why the marker is not condvest's, when it is not."""


def marker_body(
    now: datetime, price_scale: PriceScale = PriceScale.SPLIT_ADJUSTED
) -> dict[str, Any]:
    return {
        "format": layout.LAKE_FORMAT,
        "format_version": layout.LAKE_FORMAT_VERSION,
        "created_at": now.isoformat(),
        "created_by": f"condvest {__version__}",
        "price_scale": price_scale.value,
    }


def inspect_lake(storage: Storage) -> LakeCheck:
    """Classify the location (reads the root listing and, when present, the marker)."""
    names = storage.top_level()
    if layout.LAKE_MARKER in names:
        problem = _marker_problem(storage)
        return LakeCheck("foreign" if problem else "marked", problem=problem)
    return _unmarked(names)


def _unmarked(names: list[str]) -> LakeCheck:
    foreign = tuple(n for n in names if not layout.is_lake_entry(n))
    if foreign:
        return LakeCheck("foreign", foreign=foreign)
    if any(n.endswith("/") for n in names):
        return LakeCheck("layout")
    return LakeCheck("empty")  # nothing, or only the temp file of an interrupted marker write


def _marker_problem(storage: Storage) -> str | None:
    where = storage.url(layout.LAKE_MARKER)
    try:
        body = storage.read_json(layout.LAKE_MARKER)
    except CorruptFileError:
        return f"{where} is not JSON condvest wrote"
    if not isinstance(body, dict) or body.get("format") != layout.LAKE_FORMAT:
        return f'{where} was not written by condvest (no "format": "{layout.LAKE_FORMAT}")'
    version = body.get("format_version")
    if not isinstance(version, int) or version > layout.LAKE_FORMAT_VERSION:
        return (
            f"{where} has format_version {version!r}; this condvest reads up to "
            f"{layout.LAKE_FORMAT_VERSION} (upgrade condvest)"
        )
    return None


def require_lake(storage: Storage, command: str) -> LakeCheck:
    """Refuse (ConfigError, exit 2) to run ``command``, which deletes files, anywhere but in a
    condvest lake. An empty location passes: there is nothing in it to delete."""
    check = inspect_lake(storage)
    if check.kind != "foreign":
        return check
    if check.problem:
        raise ConfigError(
            f"refusing to {command} {storage.uri}: {check.problem}",
            hint="point --lake at a condvest lake",
        )
    shown = ", ".join(check.foreign[:3]) + (" …" if len(check.foreign) > 3 else "")
    raise ConfigError(
        f"refusing to {command} {storage.uri}: not a condvest lake (no {layout.LAKE_MARKER}, "
        f"and it holds {shown}, which condvest did not write)",
        hint="point --lake at a condvest lake, or move the other files out of it",
    )


def mark_new_lake(
    storage: Storage, now: datetime, price_scale: PriceScale = PriceScale.SPLIT_ADJUSTED
) -> bool:
    """Before a run writes anything: an empty location becomes a lake, marked, with the price
    scale of the settings it was created with. True if the marker was written now."""
    names = storage.top_level()
    if layout.LAKE_MARKER in names or _unmarked(names).kind != "empty":
        return False
    return storage.create(layout.LAKE_MARKER, json_bytes(marker_body(now, price_scale)))


def adopt_lake(storage: Storage, now: datetime) -> bool:
    """After a successful run: an unmarked lake laid out as condvest lays it out gets its
    marker. A location holding anything else stays unmarked (the deleting commands keep
    refusing it). True if the marker was written now."""
    names = storage.top_level()
    if layout.LAKE_MARKER in names or _unmarked(names).kind != "layout":
        return False
    # a lake an older condvest wrote holds Polygon's split-adjusted scale
    created = storage.create(layout.LAKE_MARKER, json_bytes(marker_body(now)))
    if created:
        log.info("marked %s as a condvest lake (%s)", storage.uri, layout.LAKE_MARKER)
    return created


def lake_price_scale(storage: Storage) -> PriceScale | None:
    """The price scale the lake's bronze rows hold: the marker's ``price_scale``; a lake without
    one (an older condvest's, marked or not) is split-adjusted; None for an empty location (the
    first fetch decides)."""
    check = inspect_lake(storage)
    if check.kind == "empty":
        return None
    if check.kind != "marked":
        return PriceScale.SPLIT_ADJUSTED
    return recorded_price_scale(storage)


def recorded_price_scale(storage: Storage) -> PriceScale:
    """The marker's ``price_scale`` (one read; no marker or no field: split-adjusted)."""
    try:
        body = storage.read_json(layout.LAKE_MARKER)
    except NotFoundError:
        return PriceScale.SPLIT_ADJUSTED
    value = body.get("price_scale") if isinstance(body, dict) else None
    if value is None:
        return PriceScale.SPLIT_ADJUSTED
    try:
        return PriceScale(value)
    except ValueError:
        raise CorruptFileError(
            f"{storage.url(layout.LAKE_MARKER)} has price_scale {value!r}; this condvest knows "
            f"{', '.join(repr(s.value) for s in PriceScale)}",
        ) from None


def scale_of_settings(adjusted: bool) -> PriceScale:
    """``polygon.adjusted`` true → split-adjusted rows, false → traded (raw) prices."""
    return PriceScale.SPLIT_ADJUSTED if adjusted else PriceScale.RAW


def require_price_scale(storage: Storage, adjusted: bool) -> None:
    """Refuse (ConfigError, exit 2) to land prices of one scale into a lake of the other."""
    held = lake_price_scale(storage)
    wanted = scale_of_settings(adjusted)
    if held is None or held is wanted:
        return
    raise ConfigError(
        f"refusing to fetch into {storage.uri}: the lake stores {held.value} prices and "
        f"polygon.adjusted = {str(adjusted).lower()} would land {wanted.value} ones",
        hint=f"set polygon.adjusted = {str(held is PriceScale.SPLIT_ADJUSTED).lower()} for this "
        "lake, or fetch into a new lake (docs/corporate-actions.md#raw-lakes)",
    )

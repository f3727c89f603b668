"""What :mod:`condvest.lake` takes and gives besides the results: settings overrides given as
keyword arguments, values given as the CLI's flags take them (``"2025-01-02"``, ``"A,B"``,
``"3,5"``, ``"K/N"``) or as Python values, and :class:`DryRun`. Errors name the flag, as the CLI's
do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from condvest.core.calendar import parse_date
from condvest.core.layout import parse_symbols
from condvest.core.retention import parse_shard
from condvest.errors import UsageError
from condvest.settings import SECTIONS

P = TypeVar("P")
E = TypeVar("E", bound=StrEnum)


def settings_overrides(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"fetch__source": "synthetic", "lake": {"uri": "/tmp/l"}}`` → nested overrides.

    Flat names are ``<section>__<key>`` (as in ``CONDVEST_<SECTION>__<KEY>``); a section name
    takes a mapping of its keys. Unknown sections or keys, or a key given twice, raise
    :class:`TypeError` naming it. ``None`` values mean "not given" (as an absent CLI flag)."""
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, section: str, key: str, value: Any) -> None:
        model = SECTIONS.get(section)
        if model is None:
            raise TypeError(
                f"unknown setting {name!r}: no section {section!r} "
                f"(sections: {', '.join(SECTIONS)})"
            )
        if key not in model.model_fields:
            raise TypeError(
                f"unknown setting {name!r}: [{section}] has no key {key!r} "
                f"(keys: {', '.join(model.model_fields)})"
            )
        if key in out.get(section, {}):
            raise TypeError(f"setting {section}.{key} is given twice")
        out.setdefault(section, {})[key] = value

    for name, value in settings.items():
        section, sep, key = name.partition("__")
        if sep:
            put(name, section, key, value)
        elif section not in SECTIONS:
            put(name, section, "", value)  # raises: names the unknown section
        elif value is None:
            continue
        elif not isinstance(value, Mapping):
            raise TypeError(
                f"setting {name}={value!r}: a section takes a mapping of its keys, "
                f"e.g. {name}={{...}} or {name}__<key>=..."
            )
        else:
            for sub, item in value.items():
                put(f"{name}[{sub!r}]", section, str(sub), item)
    return out


# -- values as the CLI's flags take them -------------------------------------------------------
def as_date(value: dt.date | str | None, option: str) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str):
        return parse_date(value, option=option)
    raise UsageError(f"{option} {value!r}: expected a date or 'YYYY-MM-DD'")


def as_symbols(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None or isinstance(value, str):
        return parse_symbols(value)
    return parse_symbols(",".join(str(s) for s in value))


def as_enum(kind: type[E], value: E | str | None, option: str) -> E | None:
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(m.value) for m in kind)
        raise UsageError(f"{option} {value!r} is not one of {known}") from None


def as_positive(value: int | None, option: str) -> int | None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise UsageError(f"{option} {value!r}: expected a whole number of at least 1")
    return value


def as_shard(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    return parse_shard(value if isinstance(value, str) else f"{value[0]}/{value[1]}")


def as_intervals(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else ",".join(str(n) for n in value)
    hint = "pass e.g. --intervals 3,5,8"
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--intervals {text!r} is not a list of numbers", hint=hint) from None
    if not values or any(n < 2 or n > 1000 for n in values):
        raise UsageError(
            f"--intervals {text!r}: each interval must be between 2 and 1000 sessions", hint=hint
        )
    return values

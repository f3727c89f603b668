"""How settings keep secrets secret: which keys and environment variables hold one, what value
looks like one (never echoed in an error, whichever setting it was put in), the warning for a
config file others can read, and the one-line validation error that shows no secret."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from condvest.logging import redact

SECRET_KEYS = {"api_key", "dsn"}
_SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DSN", re.IGNORECASE)
_SECRET_PREFIX = re.compile(r"^(pk|sk|rk)[-_]", re.IGNORECASE)


def from_secret_source(source: str | None) -> bool:
    """An environment variable whose name says it holds a secret (…_API_KEY, …_PASSWORD)."""
    if not source or not source.startswith("environment variable "):
        return False
    name = source.removeprefix("environment variable ")
    return bool(_SECRET_NAME.search(name)) and not name.upper().endswith("_ARN")


def looks_secret(value: Any) -> bool:
    """A value shaped like a key or a password: a long token of letters and digits without
    spaces, a vendor key prefix (``pk-``), or a DSN carrying a password. Such values are never
    echoed in an error, whichever setting they were put in."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _SECRET_PREFIX.match(text) or redact(text) != text:
        return True
    if len(text) < 16 or any(c.isspace() for c in text) or "/" in text or ":" in text:
        return False
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def warn_if_exposed(path: Path, toml: Mapping[str, Any]) -> None:
    """A config file holding a secret must not be readable or writable by others."""
    holds = any(
        isinstance(values, Mapping) and any(values.get(k) for k in SECRET_KEYS)
        for values in toml.values()
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if holds and mode & 0o077:
        logging.getLogger("condvest.settings").warning(
            "config file %s holds a secret and is readable or writable by others (mode %o); "
            "chmod 600 it",
            path,
            mode & 0o777,
        )


def format_validation_error(exc: ValidationError, origin: Mapping[tuple[str, str], str]) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        where = ".".join(loc)
        source = origin.get((loc[0], loc[1])) if len(loc) >= 2 else None
        value = err.get("input")
        secret = len(loc) >= 2 and (loc[1] in SECRET_KEYS or from_secret_source(source))
        shown = "***" if secret or looks_secret(value) else redact(repr(value))
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {where}" + (f" in {source}" if source else ""))
        else:
            # pydantic prefixes our validators' messages with "Value error, ": noise for users.
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{where} = {shown}: {msg}" + (f" (from {source})" if source else ""))
    return "; ".join(parts)

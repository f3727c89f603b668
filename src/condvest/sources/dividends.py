"""Vendor dividend rows (Polygon ``/v3/reference/dividends``) → :data:`DIVIDEND_SCHEMA` rows and
quarantined rows with the reason (docs/corporate-actions.md).

A row is refused when it is not an object, has no valid ``ex_dividend_date``, a malformed
ticker, a ``cash_amount`` that is not a finite number above 0, a currency that is not an
ISO-4217-looking three-letter code, or another field of the wrong kind; every other row of the
answer is kept. Two things the recorded responses lack are filled in, and documented: a missing
``currency`` is ``USD`` (the endpoint covers US-listed stocks and older answers omit it), and a
missing ``id`` is derived from (ticker, ex-date, type, amount, declaration date), so the same
dividend served twice still deduplicates."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from condvest.core.layout import is_valid_symbol
from condvest.core.schema import DIVIDEND_SCHEMA
from condvest.core.validate import QUARANTINE_SCHEMA, rejected_table

DEFAULT_CURRENCY = "USD"
DERIVED_ID_PREFIX = "condvest-"
"""Ids condvest derives for rows the vendor sent without one."""
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_MAX_FREQUENCY = 366
_OPTIONAL_DATES = ("declaration_date", "record_date", "pay_date")


@dataclass(frozen=True)
class DividendBatch:
    """Dividends a source delivered: the valid rows and the rows refused (with the reason)."""

    rows: pa.Table
    """:data:`condvest.core.schema.DIVIDEND_SCHEMA` rows."""
    rejected: pa.Table
    """:data:`condvest.core.validate.QUARANTINE_SCHEMA` rows."""


def empty_dividends() -> pa.Table:
    return DIVIDEND_SCHEMA.empty_table()


class _Refused(ValueError):
    """One vendor row cannot be a dividend; the message is the quarantine reason."""


def derived_id(symbol: str, ex_date: date, kind: str, amount: float, declared: date | None) -> str:
    text = f"{symbol}|{ex_date.isoformat()}|{kind}|{amount!r}|{declared}"
    return DERIVED_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def _date(row: Mapping[str, Any], name: str) -> date | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise ValueError
        return date.fromisoformat(value[:10])
    except ValueError:
        raise _Refused(f"{name} {str(value)[:40]!r} is not a date") from None


def _amount(row: Mapping[str, Any]) -> float:
    value = row.get("cash_amount")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused("cash_amount missing or not a number")
    if not math.isfinite(value) or value <= 0:
        raise _Refused(f"cash_amount {value!r} is not a positive amount")
    return float(value)


def _currency(row: Mapping[str, Any]) -> str:
    value = row.get("currency")
    if value is None or value == "":
        return DEFAULT_CURRENCY
    if not isinstance(value, str) or not _CURRENCY_RE.match(value):
        raise _Refused(f"currency {value!r} is not an ISO 4217 code")
    return value.upper()


def _frequency(row: Mapping[str, Any]) -> int | None:
    value = row.get("frequency")
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value) or not 0 <= value <= _MAX_FREQUENCY:
        raise _Refused(f"frequency {value!r} is not a number of payments per year")
    return int(value)


def _text(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise _Refused(f"{name} {str(value)[:40]!r} is not a short string")
    return value


def _parse(row: Mapping[str, Any], source: str, fetched_at: datetime) -> dict[str, Any]:
    ex_date = _date(row, "ex_dividend_date")
    if ex_date is None:
        raise _Refused("ex_dividend_date missing")
    symbol = row.get("ticker")
    if not isinstance(symbol, str) or not is_valid_symbol(symbol):
        raise _Refused("malformed symbol")
    amount = _amount(row)
    kind = _text(row, "dividend_type")
    if kind is None:
        raise _Refused("dividend_type missing")
    out: dict[str, Any] = {
        "symbol": symbol,
        "ex_dividend_date": ex_date,
        "cash_amount": amount,
        "currency": _currency(row),
        "dividend_type": kind,
        "frequency": _frequency(row),
        **{name: _date(row, name) for name in _OPTIONAL_DATES},
        "fetched_at": fetched_at,
        "source": source,
    }
    vendor_id = _text(row, "id")
    out["id"] = vendor_id or derived_id(symbol, ex_date, kind, amount, out["declaration_date"])
    return out


def _claimed(row: Mapping[str, Any]) -> tuple[str | None, date | None]:
    """(symbol, ex-date) a refused row claims, for the quarantine columns."""
    symbol = row.get("ticker")
    try:
        day = date.fromisoformat(str(row.get("ex_dividend_date"))[:10])
    except ValueError:
        day = None
    return (symbol if isinstance(symbol, str) else None), day


def dividend_batch(
    rows: Iterable[Any], *, source: str, fetched_at: datetime | None = None
) -> DividendBatch:
    """Vendor dividend rows → :class:`DividendBatch` (a bad row is refused, the others kept)."""
    moment = fetched_at or datetime.now(UTC)
    good: list[dict[str, Any]] = []
    bad: list[tuple[str | None, Any, str, dict[str, Any]]] = []
    for row in rows:
        if not isinstance(row, Mapping):
            bad.append((None, None, "dividend: not an object", {"row": row}))
            continue
        try:
            good.append(_parse(row, source, moment))
        except _Refused as exc:
            symbol, day = _claimed(row)
            bad.append((symbol, day, f"dividend: {exc}", dict(row)))
    table = pa.Table.from_pylist(good, schema=DIVIDEND_SCHEMA) if good else empty_dividends()
    rejected = (
        rejected_table(bad, source=source, fetched_at=moment)
        if bad
        else QUARANTINE_SCHEMA.empty_table()
    )
    return DividendBatch(table, rejected)

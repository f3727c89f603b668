"""What every data source gives the fetch job (Polygon over HTTP, or the offline synthetic one),
and the conversion of Polygon-shaped aggregate rows into bronze rows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pyarrow as pa

from condvest.core.layout import is_valid_symbol
from condvest.core.schema import BRONZE_SCHEMA
from condvest.core.validate import QUARANTINE_SCHEMA, rejected_table
from condvest.errors import CondvestError
from condvest.sources.dividends import DividendBatch

NEW_YORK = ZoneInfo("America/New_York")
RAW_SCHEMA = pa.schema([f.with_nullable(True) for f in BRONZE_SCHEMA])
"""Bronze columns before validation: anything may still be null."""

_REQUIRED = ("o", "h", "l", "c", "v", "t")


@dataclass(frozen=True)
class Batch:
    """Rows delivered by a source (not yet validated) and rows it could not even parse."""

    rows: pa.Table
    """:data:`RAW_SCHEMA` columns."""
    rejected: pa.Table
    """:data:`condvest.core.validate.QUARANTINE_SCHEMA` rows (e.g. a missing required field)."""

    @property
    def empty(self) -> bool:
        return bool(self.rows.num_rows == 0 and self.rejected.num_rows == 0)


@dataclass(frozen=True)
class Split:
    symbol: str
    execution_date: date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        """New shares per old share (2.0 for a 2-for-1 split)."""
        return self.split_to / self.split_from


@dataclass(frozen=True)
class SplitBatch:
    """Splits a source delivered: the valid ones, and the rows refused (with the reason)."""

    splits: list[Split]
    rejected: pa.Table
    """:data:`condvest.core.validate.QUARANTINE_SCHEMA` rows."""


def _split_problem(row: Any) -> tuple[str | None, date | None, str | None, Split | None]:
    """(symbol, execution date, reason, split) of one vendor row; reason None when valid."""
    if not isinstance(row, Mapping):
        return None, None, "not an object", None
    symbol = row.get("ticker")
    symbol = symbol if isinstance(symbol, str) else None
    try:
        day = date.fromisoformat(str(row.get("execution_date")))
    except ValueError:
        return symbol, None, "execution_date missing or not a date", None
    if symbol is None or not is_valid_symbol(symbol):
        return symbol, day, "malformed symbol", None
    ratio: list[float] = []
    for name in ("split_from", "split_to"):
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return symbol, day, f"{name} missing or not a number", None
        if not math.isfinite(value) or value <= 0 or value > 1e9:
            return symbol, day, f"{name} {value!r} is not a positive share count", None
        ratio.append(float(value))
    return symbol, day, None, Split(symbol, day, ratio[0], ratio[1])


def split_batch(rows: Iterable[Any], *, source: str) -> SplitBatch:
    """Vendor split rows → :class:`SplitBatch` (a bad row is refused, the others kept)."""
    good: list[Split] = []
    bad: list[tuple[str | None, Any, str, dict[str, Any]]] = []
    seen: dict[tuple[str, date], Split] = {}
    for row in rows:
        symbol, day, reason, split = _split_problem(row)
        if split is not None and (first := seen.get((split.symbol, split.execution_date))):
            # Polygon has listed one split twice: it is applied once; a second listing with
            # another ratio cannot be told from the first, so it is refused, visibly.
            if first.ratio == split.ratio:
                continue
            reason = f"another split of {symbol} on {day} is listed with ratio {first.ratio:g}"
            split = None
        if split is not None:
            seen[(split.symbol, split.execution_date)] = split
            good.append(split)
        else:
            raw = dict(row) if isinstance(row, Mapping) else {"row": row}
            bad.append((symbol, day, f"split: {reason}", raw))
    rejected = rejected_table(bad, source=source, fetched_at=datetime.now(UTC))
    return SplitBatch(good, rejected)


class Source(Protocol):
    """A market-data source. Counters feed the fetch result."""

    name: str

    @property
    def requests(self) -> int:
        """HTTP requests made (attempts, including retries)."""
        ...

    @property
    def retries(self) -> int:
        """Retries after 429/5xx/timeouts/connection errors/malformed JSON."""
        ...

    def grouped_daily(self, session: date) -> Batch:
        """Every symbol's bar for one session (one request)."""
        ...

    def histories(
        self, symbols: Sequence[str], start: date, end: date
    ) -> dict[str, Batch | CondvestError]:
        """Daily bars of each symbol from ``start`` to ``end``; a failed symbol maps to its error
        (an AuthError is raised: no other symbol can succeed either)."""
        ...

    def splits(self, start: date, end: date) -> SplitBatch:
        """Splits executed from ``start`` to ``end`` (inclusive); bad rows in ``rejected``."""
        ...

    def dividends(
        self, start: date, end: date, symbols: Sequence[str] | None = None
    ) -> DividendBatch:
        """Cash dividends with an ex-date from ``start`` to ``end`` (inclusive), of ``symbols``
        (None: every ticker, one paginated request); bad rows in ``rejected``."""
        ...

    def tickers(self) -> list[dict[str, Any]]:
        """The active ticker list (Polygon ``/v3/reference/tickers`` rows)."""
        ...

    def ticker_details(self, symbols: Sequence[str]) -> dict[str, dict[str, Any] | CondvestError]:
        """Details (``/v3/reference/tickers/{T}`` results) per symbol."""
        ...

    def close(self) -> None: ...


def ny_date(ms: float) -> date:
    """A Unix millisecond timestamp → its America/New_York calendar date (never the host's)."""
    return datetime.fromtimestamp(ms / 1000.0, UTC).astimezone(NEW_YORK).date()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


_MAX_MS = 4_102_444_800_000
"""2100-01-01 in Unix ms: a larger (or negative) ``t`` is not a millisecond time."""
_MAX_COUNT = 2**53
"""The largest transaction count taken (exact as a float; far above any real session's)."""


def _is_count(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value == int(value) and 0 <= value <= _MAX_COUNT


def _parse_agg(
    raw: Mapping[str, Any], symbol: str | None, expect: date | None
) -> tuple[dict[str, Any] | None, str | None, date | None, str]:
    """One aggregate → (row, symbol, date, reason if rejected)."""
    sym = symbol if symbol is not None else raw.get("T")
    sym = sym if isinstance(sym, str) and sym else None
    missing = [k for k in _REQUIRED if _number(raw.get(k)) is None]
    if sym is None:
        missing.insert(0, "T")
    if "t" not in missing and not 0 <= float(raw["t"]) <= _MAX_MS:
        return None, sym, None, f"t {raw['t']!r} is not a Unix millisecond time (1970-2100)"
    day = ny_date(float(raw["t"])) if "t" not in missing else None
    if missing:
        return None, sym, day, "missing or non-numeric required field(s): " + ",".join(missing)
    if expect is not None and day != expect:
        return None, sym, day, f"t is on {day}, not the requested session {expect}"
    vwap = _number(raw.get("vw"))
    if raw.get("vw") is not None and vwap is None:
        return None, sym, day, f"vw {raw.get('vw')!r} is not a finite number"
    n = raw.get("n")
    if n is not None and not _is_count(n):
        return None, sym, day, f"n {n!r} is not a transaction count (a whole number >= 0)"
    row = {
        "symbol": sym,
        "date": day,
        "open": float(raw["o"]),
        "high": float(raw["h"]),
        "low": float(raw["l"]),
        "close": float(raw["c"]),
        "volume": float(raw["v"]),
        "vwap": vwap,
        "transactions": int(n) if n is not None else None,
    }
    return row, sym, day, ""


def aggregates_to_batch(
    results: Iterable[Mapping[str, Any]],
    *,
    source: str,
    fetched_at: datetime,
    symbol: str | None = None,
    expect_date: date | None = None,
) -> Batch:
    """Polygon aggregate rows (``T o h l c v vw t n``) → a :class:`Batch`.

    ``symbol`` is given for per-ticker ranges (their rows carry no ``T``); ``expect_date`` for
    grouped daily (a row stamped on another day does not belong in that session's files).
    """
    cols: dict[str, list[Any]] = {name: [] for name in RAW_SCHEMA.names}
    rejected: list[tuple[str | None, Any, str, dict[str, Any]]] = []
    for raw in results:
        if not isinstance(raw, Mapping):
            rejected.append((None, None, "result is not an object", {"value": raw}))
            continue
        row, sym, day, reason = _parse_agg(raw, symbol, expect_date)
        if row is None:
            rejected.append((sym, day, reason, dict(raw)))
            continue
        for key, value in row.items():
            cols[key].append(value)
    count = len(cols["symbol"])
    cols["fetched_at"] = [fetched_at] * count
    cols["source"] = [source] * count
    return Batch(
        pa.table(cols, schema=RAW_SCHEMA),
        rejected_table(rejected, source=source, fetched_at=fetched_at)
        if rejected
        else QUARANTINE_SCHEMA.empty_table(),
    )

"""The synthetic source (``--source synthetic``): deterministic, seeded, plausible OHLCV for
demos and CI smoke runs — no network, no key, every row labelled ``source=synthetic``.

Each symbol's bars are a random walk over the exchange calendar from a fixed origin, so a bar
depends only on (seed, symbol, date), never on the range asked for. About one symbol in eight
has a split; like Polygon's ``adjusted=true``, a session's grouped bars are on the scale of that
day, while a history is adjusted for every split up to its end date — so the restatement path
sees exactly what it would see live. With ``polygon.adjusted = false`` (``adjusted=False``) a
history is as traded too, as Polygon's ``adjusted=false`` aggregates are.

About two symbols in five pay a quarterly cash dividend (``CD``) of 0.3-1% of the close of the
session before its ex-date, on that ex-date's price scale (as paid per share that day); about a
third of those also pay one special dividend (``SC``) of 2-5%. Dividends are drawn from their own
seeded stream, so they never change the bars.

Besides its own ``fetch.synthetic_symbols`` random tickers, it serves any valid symbol asked for
(``fetch --symbols AAPL,MSFT``, ``--history``): a requested symbol joins the day's grouped bars,
seeded from its name like every other, so the default universe's bars never change."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from condvest.core.calendar import TradingCalendar
from condvest.core.layout import is_valid_symbol
from condvest.core.validate import QUARANTINE_SCHEMA
from condvest.errors import CondvestError
from condvest.sources.base import RAW_SCHEMA, Batch, Split, SplitBatch
from condvest.sources.dividends import DividendBatch, dividend_batch

SOURCE = "synthetic"
ORIGIN = date(2000, 1, 3)
"""First synthetic bar (a session); earlier dates have no bars."""
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_QUARTER = 63
"""Sessions between two quarterly ex-dates (252 a year / 4)."""


def synthetic_universe(count: int, seed: int) -> list[str]:
    """``count`` distinct, deterministic tickers (a few dotted share classes among them)."""
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < count:
        length = int(rng.integers(2, 5))
        name = "".join(_LETTERS[int(i)] for i in rng.integers(0, 26, length))
        if len(out) % 17 == 5:
            name += ".A"
        out.add(name)
    return sorted(out)


class _Series:
    """One symbol's raw (unadjusted) bars over ``sessions`` plus its splits."""

    def __init__(self, symbol: str, seed: int, sessions: Sequence[date]) -> None:
        digest = hashlib.sha256(f"{seed}:{symbol}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        n = len(sessions)
        start_price = float(rng.uniform(5, 400))
        returns = rng.normal(0.0003, 0.02, n)
        close = start_price * np.exp(np.cumsum(returns))
        open_ = close * np.exp(rng.normal(0, 0.006, n))
        spread = np.abs(rng.normal(0, 0.012, n))
        self.high = np.maximum(open_, close) * (1 + spread)
        self.low = np.minimum(open_, close) * (1 - spread * rng.uniform(0.3, 1.0, n))
        self.volume = np.round(rng.lognormal(13, 1, n))
        self.splits: list[tuple[int, float]] = []
        if rng.random() < 0.125 and n > 300:
            at = int(rng.integers(250, n))
            ratio = float(rng.choice([2.0, 3.0, 4.0]))
            self.splits.append((at, ratio))
            # From the split on, the raw price is on the new (smaller) scale.
            for arr in (open_, close, self.high, self.low):
                arr[at:] /= ratio
            self.volume[at:] *= ratio
        self.open, self.close = open_, close
        self.dividends = self._dividends(symbol, seed, n)

    def _dividends(self, symbol: str, seed: int, n: int) -> list[tuple[int, float, str]]:
        """(session index, cash per share, CD|SC): a separate stream, so the bars stay as they
        were before dividends existed."""
        digest = hashlib.sha256(f"{seed}:{symbol}:dividends".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        if rng.random() >= 0.4 or n < 2:
            return []
        quarterly = float(rng.uniform(0.003, 0.01))
        phase = int(rng.integers(1, _QUARTER + 1))
        out = [(i, quarterly, "CD") for i in range(phase, n, _QUARTER)]
        if rng.random() < 0.35:
            at = int(rng.integers(1, n))
            if all(i != at for i, _, _ in out):
                out.append((at, float(rng.uniform(0.02, 0.05)), "SC"))
        # The cash is a fraction of the previous close on the ex-date's scale (a split on the
        # ex-date itself divides it, as the exchange adjusts the reference price).
        return sorted(
            (i, round(float(self.close[i - 1]) / self.factor(i - 1, i) * share, 4), kind)
            for i, share, kind in out
        )

    def factor(self, index: int, as_of: int) -> float:
        """Divide raw prices of bar ``index`` by this to adjust for splits up to ``as_of``."""
        out = 1.0
        for at, ratio in self.splits:
            if index < at <= as_of:
                out *= ratio
        return out


class SyntheticSource:
    """Offline :class:`condvest.sources.base.Source`."""

    name = SOURCE

    def __init__(
        self,
        calendar: TradingCalendar,
        *,
        symbols: int,
        seed: int,
        requested: Sequence[str] | None = None,
        adjusted: bool = True,
    ) -> None:
        extra = {s for s in requested or () if is_valid_symbol(s)}
        self.universe = sorted(set(synthetic_universe(symbols, seed)) | extra)
        """The symbols this market trades: its own random tickers plus the requested ones."""
        self.seed = seed
        self.adjusted = adjusted
        self.sessions = calendar.sessions_between(ORIGIN, calendar.last_known_session)
        self._index = {d: i for i, d in enumerate(self.sessions)}
        self._series: dict[str, _Series] = {}
        self.requests = 0
        self.retries = 0

    def _of(self, symbol: str) -> _Series:
        if symbol not in self._series:
            self._series[symbol] = _Series(symbol, self.seed, self.sessions)
        return self._series[symbol]

    def _rows(self, pairs: list[tuple[str, int]], as_of: int) -> pa.Table:
        now = datetime.now(UTC)
        cols: dict[str, list[Any]] = {name: [] for name in RAW_SCHEMA.names}
        for symbol, i in pairs:
            s = self._of(symbol)
            f = s.factor(i, as_of)
            o, h, lo, c = (float(x[i]) / f for x in (s.open, s.high, s.low, s.close))
            v = float(s.volume[i]) * f
            cols["symbol"].append(symbol)
            cols["date"].append(self.sessions[i])
            for key, value in zip(("open", "high", "low", "close"), (o, h, lo, c), strict=True):
                cols[key].append(round(value, 4))
            cols["volume"].append(v)
            cols["vwap"].append(round((h + lo + c) / 3, 4))
            cols["transactions"].append(int(v // 100) + 1)
        count = len(cols["symbol"])
        cols["fetched_at"] = [now] * count
        cols["source"] = [SOURCE] * count
        return pa.table(cols, schema=RAW_SCHEMA)

    def grouped_daily(self, session: date) -> Batch:
        self.requests += 1
        i = self._index.get(session)
        pairs = [] if i is None else [(s, i) for s in self.universe]
        return Batch(self._rows(pairs, i or 0), QUARANTINE_SCHEMA.empty_table())

    def histories(
        self, symbols: Sequence[str], start: date, end: date
    ) -> dict[str, Batch | CondvestError]:
        out: dict[str, Batch | CondvestError] = {}
        days = [i for d, i in self._index.items() if start <= d <= end]
        # as_of -1: no split is "up to" it, so every bar stays as traded (adjusted=false)
        as_of = max(days) if days and self.adjusted else -1
        for symbol in symbols:
            self.requests += 1
            pairs = [(symbol, i) for i in days] if is_valid_symbol(symbol) else []
            out[symbol] = Batch(self._rows(pairs, as_of), QUARANTINE_SCHEMA.empty_table())
        return out

    def splits(self, start: date, end: date) -> SplitBatch:
        self.requests += 1
        out = []
        for symbol in self.universe:
            for at, ratio in self._of(symbol).splits:
                day = self.sessions[at]
                if start <= day <= end:
                    out.append(Split(symbol, day, 1.0, ratio))
        return SplitBatch(out, QUARANTINE_SCHEMA.empty_table())

    def dividends(
        self, start: date, end: date, symbols: Sequence[str] | None = None
    ) -> DividendBatch:
        self.requests += 1 if symbols is None else len(symbols)
        chosen = self.universe if symbols is None else [s for s in symbols if is_valid_symbol(s)]
        rows = []
        for symbol in chosen:
            for i, cash, kind in self._of(symbol).dividends:
                day = self.sessions[i]
                if start <= day <= end:
                    rows.append(
                        {
                            "id": f"syn-{symbol}-{day.isoformat()}-{kind}",
                            "ticker": symbol,
                            "ex_dividend_date": day.isoformat(),
                            "cash_amount": cash,
                            "currency": "USD",
                            "dividend_type": kind,
                            "frequency": 4 if kind == "CD" else 0,
                            "declaration_date": (day - timedelta(days=21)).isoformat(),
                            "record_date": day.isoformat(),
                            "pay_date": (day + timedelta(days=14)).isoformat(),
                        }
                    )
        return dividend_batch(rows, source=SOURCE)

    def tickers(self) -> list[dict[str, Any]]:
        self.requests += 1
        return [
            {
                "ticker": s,
                "name": f"Synthetic {s} Corp.",
                "market": "stocks",
                "locale": "us",
                "primary_exchange": "XNAS",
                "type": "CS",
                "active": True,
                "currency_name": "usd",
            }
            for s in self.universe
        ]

    def ticker_details(self, symbols: Sequence[str]) -> dict[str, dict[str, Any] | CondvestError]:
        self.requests += len(symbols)
        listed = {t["ticker"]: t for t in self.tickers()}
        self.requests -= 1
        return {
            s: listed.get(s, {"ticker": s, "active": False})
            | {"description": "Synthetic data for demos and tests.", "sic_description": "DEMO"}
            for s in symbols
        }

    def close(self) -> None:
        return None

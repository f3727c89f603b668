"""The read side of :class:`condvest.Lake` (docs/reading.md): the lake as Arrow tables and one
read-only SQL view over them. Results are :class:`pyarrow.Table`, so ``.to_pandas()`` and
``polars.from_arrow()`` work on them as they are."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from condvest.errors import UsageError
from condvest.jobs.base import JobContext
from condvest.lake_values import as_date, as_symbols

if TYPE_CHECKING:
    import duckdb


def _columns(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return value.split(",") if isinstance(value, str) else [str(c) for c in value]


class LakeReads:
    """Read methods mixed into :class:`condvest.Lake` (they need its ``_job``)."""

    def _job(self) -> JobContext:  # pragma: no cover - Lake's
        raise NotImplementedError

    def daily(
        self,
        symbols: str | Sequence[str] | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        columns: str | Sequence[str] | None = None,
        *,
        adjust: str = "split",
        as_of: dt.date | str | None = None,
    ) -> pa.Table:
        """Daily bars in the canonical bronze schema, one row per (symbol, date), sorted by
        (symbol, date): each ``data.parquet`` plus the landed date files not merged yet, the
        newest fetch winning — consolidate's merge, so the result equals what
        ``consolidate --mode full`` would write. ``symbols`` None means every symbol (a symbol
        the lake lacks gives no rows); ``start``/``end`` are inclusive dates; ``columns`` a
        subset of the bronze columns, in the order given.

        ``adjust`` is ``"split"`` (default: split-adjusted, as a default lake stores it),
        ``"raw"`` (as traded that day) or ``"total_return"`` (splits and dividends, backwards);
        ``as_of`` a date: the series as it could be known then — no row after it, only the
        actions with an ex-date on or before it applied (docs/corporate-actions.md)."""
        from condvest.jobs.read import read_daily_adjusted

        return read_daily_adjusted(
            self._job(),
            as_symbols(symbols),
            as_date(start, "--start"),
            as_date(end, "--end"),
            _columns(columns),
            adjust,
            as_date(as_of, "--as-of"),
        )

    def bars(
        self,
        interval: int,
        symbols: str | Sequence[str] | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        include_partial: bool = False,
        *,
        adjust: str = "split",
        as_of: dt.date | str | None = None,
    ) -> pa.Table:
        """``interval``-session bars (silver schema) whose ``start_date`` is in
        ``[start, end]``, sorted by (symbol, start_date), read from only the month files of
        those months. ``include_partial`` adds each symbol's trailing bar whose window is not
        over, computed from :meth:`daily` with resample's bar code. An interval never built is
        a :class:`~condvest.errors.UsageError` naming ``condvest resample --intervals N``.
        ``adjust`` and ``as_of`` as for :meth:`daily`: bars in another mode than the stored one
        (or as of a date) are computed from those daily rows with resample's bar code."""
        from condvest.jobs.read import read_bars_adjusted

        return read_bars_adjusted(
            self._job(),
            interval,
            as_symbols(symbols),
            as_date(start, "--start"),
            as_date(end, "--end"),
            include_partial,
            adjust,
            as_date(as_of, "--as-of"),
        )

    def symbols(self) -> list[str]:
        """Every symbol with a directory in bronze, sorted."""
        from condvest.jobs.read import read_symbols

        return read_symbols(self._job())

    def intervals(self) -> list[int]:
        """The bar intervals resample has built (each readable with :meth:`bars`)."""
        from condvest.jobs.read import built_intervals

        return built_intervals(self._job().storage)

    def metadata(self) -> pa.Table:
        """Symbol metadata: per symbol, its row in the newest ``raw_meta`` snapshot holding it
        (``condvest fetch --meta`` writes them)."""
        from condvest.jobs.read import read_metadata

        return read_metadata(self._job())

    def splits(self) -> pa.Table:
        """Every stock split the fetches have seen, sorted by (execution_date, symbol)."""
        from condvest.jobs.read import read_splits

        return read_splits(self._job())

    def dividends(
        self,
        symbols: str | Sequence[str] | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
    ) -> pa.Table:
        """Every cash dividend the fetches have landed, one row per vendor ``id`` (the newest
        fetch winning), sorted by (symbol, ex_dividend_date, id); ``symbols``, ``start`` and
        ``end`` (inclusive, on ``ex_dividend_date``) narrow it."""
        from condvest.jobs.read import filter_actions, read_dividends

        return filter_actions(
            read_dividends(self._job()),
            "ex_dividend_date",
            as_symbols(symbols),
            as_date(start, "--start"),
            as_date(end, "--end"),
        )

    def factors(self, symbols: str | Sequence[str] | None = None) -> pa.Table:
        """Per symbol and ex-date, the split ratio, the dividend factor (``1 - cash / previous
        close``) and their cumulative products, plus the factors that turn a stored price into
        each read mode (docs/corporate-actions.md; the ``factors`` SQL view)."""
        from condvest.jobs.read import read_factors

        return read_factors(self._job(), as_symbols(symbols))

    def sessions(
        self, start: dt.date | str | None = None, end: dt.date | str | None = None
    ) -> list[dt.date]:
        """The exchange's trading sessions in ``[start, end]`` (defaults: the calendar's first
        session, the latest completed one)."""
        from condvest.jobs.read import sessions_table

        return sessions_table(self._job(), as_date(start, "--start"), as_date(end, "--end"))

    def sql(self, query: str) -> duckdb.DuckDBPyRelation:
        """Run one read-only SELECT over the views ``daily`` (deduplicated as :meth:`daily`),
        ``bars_<N>d`` (one per built interval), ``metadata``, ``splits``, ``dividends`` and
        ``factors`` (:meth:`factors`); returns the DuckDB relation (``.arrow()``, ``.df()``,
        ``.fetchall()``). Writes (``COPY``, ``ATTACH``, ``INSTALL``, ``LOAD``, ``CREATE``...)
        and a SQL error raise
        :class:`~condvest.errors.UsageError`; no DuckDB extension is installed or loaded."""
        from condvest.jobs.read import built_intervals, run_sql, view_loaders

        if not isinstance(query, str):
            raise UsageError(f"the query must be a string, not {type(query).__name__}")
        job = self._job()
        return run_sql(query, view_loaders(job, built_intervals(job.storage)))

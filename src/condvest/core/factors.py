"""Corporate-action adjustment factors and the read modes (docs/corporate-actions.md): pure,
deterministic numpy over the landed splits, the landed dividends and the daily closes.

The conventions are CRSP's and zipline's:

* a split's ratio ``r`` is new shares per old share (``split_to / split_from``, 2.0 for a
  2-for-1): a price from before its ex-date divided by ``r`` is on the post-split scale, a
  volume multiplied by it;
* a dividend's factor is ``f = 1 - cash / P`` where ``P`` is the close of the previous session
  the symbol traded, expressed per share of the ex-date: the traded close divided by the ratio of
  the splits between that session and the ex-date (a dividend on a split day is paid per
  post-split share);
* an event is one (symbol, ex-date): the split applied once, the cash of every dividend of that
  day summed. Its cumulative factors are the products over the symbol's events on or after it
  (through ``as_of``); a row dated ``d`` takes those of the first event after ``d``.

The stored scale (:class:`PriceScale`) is what the lake holds: ``split_adjusted`` rows are
adjusted for every split the lake has recorded (fetch restates a symbol's history when one
lands), ``raw`` rows are as traded. Every mode goes through the traded price: ``raw = stored ×
(product of the recorded splits after the row)`` in a split-adjusted lake, ``split = raw /
(splits in (d, as_of])``, ``total_return = split × (dividend factors in (d, as_of])``."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from condvest.core.schema import BRONZE_SCHEMA


class PriceScale(StrEnum):
    """What a lake's bronze rows hold (recorded in the lake marker)."""

    SPLIT_ADJUSTED = "split_adjusted"
    RAW = "raw"


class AdjustMode(StrEnum):
    """How ``Lake.daily`` / ``Lake.bars`` return prices."""

    SPLIT = "split"
    RAW = "raw"
    TOTAL_RETURN = "total_return"


def stored_mode(scale: PriceScale) -> AdjustMode:
    """The mode a lake of ``scale`` holds as it is."""
    return AdjustMode.RAW if scale is PriceScale.RAW else AdjustMode.SPLIT


EVENT_SCHEMA = pa.schema(
    [
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("split_ratio", pa.float64(), nullable=False),
        pa.field("dividend_cash", pa.float64(), nullable=False),
    ]
)
"""One row per (symbol, ex-date): the day's split ratio (1.0: none), its dividend cash (0.0)."""

FACTORS_SCHEMA = pa.schema(
    [
        *EVENT_SCHEMA,
        pa.field("prev_date", pa.date32()),
        pa.field("prev_close", pa.float64()),
        pa.field("dividend_factor", pa.float64()),
        pa.field("cumulative_split_ratio", pa.float64(), nullable=False),
        pa.field("cumulative_dividend_factor", pa.float64(), nullable=False),
        pa.field("raw_price_factor", pa.float64(), nullable=False),
        pa.field("split_price_factor", pa.float64(), nullable=False),
        pa.field("total_return_price_factor", pa.float64(), nullable=False),
    ]
)
"""Per event: ``prev_close`` is the traded close of ``prev_date`` (null: the symbol has no row
before the ex-date), ``dividend_factor`` null when there is no dividend or it cannot apply; the
three ``*_price_factor`` columns turn a stored price dated before ``date`` (and on or after the
symbol's previous event) into that mode; a volume is divided by the same factor (the raw one
for ``raw``, the split one for ``split`` and ``total_return``)."""

_PRICES = ("open", "high", "low", "close", "vwap")
_DAY_OFFSET = 1 << 31  # date32 may be negative (before 1970): keep the key's low half positive


def events_of(splits: pa.Table, dividends: pa.Table) -> pa.Table:
    """EVENT_SCHEMA rows, sorted by (symbol, date), from ``splits`` (symbol, execution_date,
    ratio, fetched_at) and ``dividends`` (symbol, ex_dividend_date, cash_amount). A split seen
    twice for one (symbol, date) counts once (the newest fetch's ratio)."""
    seen = splits.select(["symbol", "execution_date", "ratio", "fetched_at"]).sort_by(
        [
            ("symbol", "ascending"),
            ("execution_date", "ascending"),
            ("fetched_at", "descending"),
            ("ratio", "ascending"),
        ]
    )
    sym = seen.column("symbol").to_pylist()
    day = seen.column("execution_date").to_pylist()
    first = [i == 0 or (sym[i], day[i]) != (sym[i - 1], day[i - 1]) for i in range(len(sym))]
    once = seen.filter(pa.array(first, pa.bool_()))
    split_part = pa.table(
        {
            "symbol": once.column("symbol"),
            "date": once.column("execution_date"),
            "split_ratio": once.column("ratio").cast(pa.float64()),
            "dividend_cash": pa.array(np.zeros(once.num_rows)),
        }
    )
    cash = dividends.select(["symbol", "ex_dividend_date", "cash_amount"]).sort_by(
        [("symbol", "ascending"), ("ex_dividend_date", "ascending"), ("cash_amount", "ascending")]
    )
    dividend_part = pa.table(
        {
            "symbol": cash.column("symbol"),
            "date": cash.column("ex_dividend_date"),
            "split_ratio": pa.array(np.ones(cash.num_rows)),
            "dividend_cash": cash.column("cash_amount").cast(pa.float64()),
        }
    )
    both = pa.concat_tables([split_part.cast(EVENT_SCHEMA), dividend_part.cast(EVENT_SCHEMA)])
    grouped = both.group_by(["symbol", "date"], use_threads=False).aggregate(
        [("split_ratio", "product"), ("dividend_cash", "sum")]
    )
    out = pa.table(
        {
            "symbol": grouped.column("symbol"),
            "date": grouped.column("date"),
            "split_ratio": grouped.column("split_ratio_product"),
            "dividend_cash": grouped.column("dividend_cash_sum"),
        }
    ).cast(EVENT_SCHEMA)
    return out.sort_by([("symbol", "ascending"), ("date", "ascending")])


def _codes(column: pa.ChunkedArray | pa.Array, names: pa.Array) -> np.ndarray:
    return np.asarray(pc.index_in(column, value_set=names).to_numpy(zero_copy_only=False), np.int64)


def _keys(codes: np.ndarray, days: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A sort key per row: symbol code, then day (rows sorted by symbol, date stay sorted)."""
    day = np.asarray(pc.cast(days, pa.int32()).to_numpy(zero_copy_only=False), np.int64)
    return codes * (1 << 32) + day + _DAY_OFFSET


def _backward_products(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``out[i]`` = product of ``values[j]`` for ``j >= i`` of the same code (codes sorted),
    multiplied from the symbol's latest event backwards (one fixed order: deterministic)."""
    out = np.empty_like(values)
    n = len(codes)
    if n == 0:
        return out
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    for s, e in zip(starts, np.append(starts[1:], n), strict=True):
        out[s:e] = np.multiply.accumulate(values[s:e][::-1])[::-1]
    return out


def _next_event(
    ev_keys: np.ndarray, ev_codes: np.ndarray, keys: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """Per key: the index of its symbol's first event dated after it, -1 if none."""
    if len(ev_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    i = np.searchsorted(ev_keys, keys, side="right")
    j = np.minimum(i, len(ev_keys) - 1)
    same = (i < len(ev_keys)) & (ev_codes[j] == codes)
    return np.where(same, i, -1)


def _previous_row(
    row_keys: np.ndarray, row_codes: np.ndarray, keys: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """Per key: the index of its symbol's last row dated before it, -1 if none."""
    if len(row_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    i = np.searchsorted(row_keys, keys, side="left") - 1
    j = np.maximum(i, 0)
    same = (i >= 0) & (row_codes[j] == codes)
    return np.where(same, i, -1)


def _take(values: np.ndarray, index: np.ndarray, missing: float) -> np.ndarray:
    """``values[index]``, ``missing`` where the index is -1."""
    if len(values) == 0:
        return np.full(len(index), missing)
    return np.where(index >= 0, values[np.maximum(index, 0)], missing)


def _window(events: pa.Table, scale: PriceScale, as_of: pa.Scalar | None) -> pa.Table:
    """The events that matter as of ``as_of``: those on or before it, plus (split-adjusted
    lake) the later splits, whose only use is to undo them (their dividends dropped)."""
    if as_of is None:
        return events
    later = pc.greater(events.column("date"), as_of)
    if scale is PriceScale.RAW:
        return events.filter(pc.invert(later))
    keep = pc.or_(pc.invert(later), pc.not_equal(events.column("split_ratio"), 1.0))
    kept = events.filter(keep)
    cash = pc.if_else(
        pc.greater(kept.column("date"), as_of), 0.0, kept.column("dividend_cash")
    ).cast(pa.float64())
    return kept.set_column(3, "dividend_cash", cash)


def factor_table(
    events: pa.Table, closes: pa.Table, scale: PriceScale, as_of: object = None
) -> pa.Table:
    """FACTORS_SCHEMA rows of ``events`` (EVENT_SCHEMA, sorted) as of ``as_of`` (a date, or
    None: every event). ``closes`` are stored daily rows (symbol, date, close) sorted by
    (symbol, date): the previous closes the dividend factors need. A dividend whose symbol has
    no close before its ex-date, or whose cash is not below that close, gets a null factor and
    moves no price."""
    limit = None if as_of is None else pa.scalar(as_of, pa.date32())
    ev = _window(events, scale, limit)
    names = pc.unique(pa.concat_arrays([_flat(ev.column("symbol")), _flat(closes["symbol"])]))
    names = names.take(pc.sort_indices(names))
    ev_codes = _codes(ev.column("symbol"), names)
    ev_keys = _keys(ev_codes, ev.column("date"))
    ratio = ev.column("split_ratio").to_numpy()
    cash = ev.column("dividend_cash").to_numpy()
    applied = (
        np.ones(ev.num_rows, dtype=bool)
        if limit is None
        else np.asarray(pc.less_equal(ev.column("date"), limit).to_numpy(zero_copy_only=False))
    )
    all_splits = _backward_products(ev_codes, ratio)  # every recorded split on or after
    same_next = np.append(ev_codes[1:] == ev_codes[:-1], False) if ev.num_rows else ev_codes
    after = np.where(same_next, np.append(all_splits[1:], 1.0), 1.0)  # strictly after
    row_codes = _codes(closes["symbol"], names)
    row_keys = _keys(row_codes, closes["date"])
    stored_close = np.asarray(closes["close"].to_numpy(), np.float64)
    prev = _previous_row(row_keys, row_codes, ev_keys, ev_codes)
    prev_stored = _take(stored_close, prev, np.nan)
    if scale is PriceScale.SPLIT_ADJUSTED:
        # stored = traded / (splits after the row): per ex-date share = stored × splits after it
        basis = prev_stored * after
        first_after_prev = _next_event(ev_keys, ev_codes, _take(row_keys, prev, 0), ev_codes)
        prev_raw = prev_stored * _take(all_splits, first_after_prev, 1.0)
    else:
        first_after_prev = _next_event(ev_keys, ev_codes, _take(row_keys, prev, 0), ev_codes)
        between = _take(all_splits, first_after_prev, 1.0) / after
        basis, prev_raw = prev_stored / between, prev_stored
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = 1.0 - cash / basis
    valid = applied & (cash > 0) & (prev >= 0) & (factor > 0) & (factor < 1)
    cum_split = _backward_products(ev_codes, np.where(applied, ratio, 1.0))
    cum_div = _backward_products(ev_codes, np.where(valid, factor, 1.0))
    raw_factor = all_splits if scale is PriceScale.SPLIT_ADJUSTED else np.ones(ev.num_rows)
    split_factor = raw_factor / cum_split
    prev_dates = _take(np.asarray(pc.cast(closes["date"], pa.int32()).to_numpy()), prev, 0)
    return pa.table(
        {
            **{name: ev.column(name) for name in EVENT_SCHEMA.names},
            "prev_date": pa.array(prev_dates.astype(np.int32), mask=prev < 0).cast(pa.date32()),
            "prev_close": pa.array(prev_raw, mask=prev < 0),
            "dividend_factor": pa.array(factor, mask=~valid),
            "cumulative_split_ratio": cum_split,
            "cumulative_dividend_factor": cum_div,
            "raw_price_factor": raw_factor,
            "split_price_factor": split_factor,
            "total_return_price_factor": split_factor * cum_div,
        },
        schema=FACTORS_SCHEMA,
    )


def _flat(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks else pa.array([], pa.string())
    return column


def skipped_dividends(factors: pa.Table) -> pa.Table:
    """The events whose dividend could not apply although the symbol has a close before it
    (cash not below the previous close): read logs them."""
    paid = pc.greater(factors.column("dividend_cash"), 0.0)
    priced = pc.is_valid(factors.column("prev_close"))
    keep = pc.and_(pc.and_(paid, priced), pc.is_null(factors.column("dividend_factor")))
    return factors.filter(keep)


def adjust(daily: pa.Table, factors: pa.Table, mode: AdjustMode) -> pa.Table:
    """``daily`` (bronze rows sorted by (symbol, date), on the stored scale) in ``mode``, by
    ``factors`` (a :func:`factor_table`; rows after its ``as_of`` must already be gone)."""
    if daily.num_rows == 0 or factors.num_rows == 0:
        return daily
    names = pc.unique(pa.concat_arrays([_flat(factors["symbol"]), _flat(daily["symbol"])]))
    names = names.take(pc.sort_indices(names))
    ev_codes = _codes(factors.column("symbol"), names)
    ev_keys = _keys(ev_codes, factors.column("date"))
    row_codes = _codes(daily.column("symbol"), names)
    nxt = _next_event(ev_keys, ev_codes, _keys(row_codes, daily.column("date")), row_codes)
    price_column = {
        AdjustMode.RAW: "raw_price_factor",
        AdjustMode.SPLIT: "split_price_factor",
        AdjustMode.TOTAL_RETURN: "total_return_price_factor",
    }[mode]
    price = _take(factors.column(price_column).to_numpy(), nxt, 1.0)
    volume_column = "raw_price_factor" if mode is AdjustMode.RAW else "split_price_factor"
    volume = _take(factors.column(volume_column).to_numpy(), nxt, 1.0)
    out = daily
    for name in (*_PRICES, "volume"):
        i = out.schema.get_field_index(name)
        column = out.column(name).combine_chunks()
        by = pa.array(volume if name == "volume" else price)
        scaled = pc.divide(column, by) if name == "volume" else pc.multiply(column, by)
        out = out.set_column(i, out.schema.field(i), scaled.cast(pa.float64()))
    return out.cast(BRONZE_SCHEMA) if out.schema.names == BRONZE_SCHEMA.names else out

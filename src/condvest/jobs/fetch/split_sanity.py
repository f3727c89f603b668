"""Split sanity (docs/corporate-actions.md): when a restatement re-fetches a split symbol's
history, the lake's stored pre-split closes are compared with the re-fetched ones. For a real
split of ratio r they differ by r; Polygon has served duplicated and wrong splits, so a ratio
that does not match (beyond :data:`condvest.core.actions.SPLIT_RATIO_TOLERANCE`) is recorded in
``processing_metadata/suspicious_splits.json`` and ``status`` reports it as a problem instead of
the restatement passing silently. A later restatement of the same split that matches clears it.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.actions import observed_ratio, ratio_matches
from condvest.errors import CondvestError, NotFoundError
from condvest.jobs.base import JobContext
from condvest.sources.base import Split
from condvest.storage import Storage

log = logging.getLogger("condvest.jobs.fetch")


def read_suspicious(storage: Storage) -> list[dict[str, Any]]:
    """The recorded suspicious splits, sorted by (symbol, date); [] when there are none."""
    try:
        body = storage.read_json(layout.SUSPICIOUS_SPLITS)
    except NotFoundError:
        return []
    rows = body.get("splits") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict)]


def _write(storage: Storage, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (str(r.get("symbol")), str(r.get("date"))))
    storage.write_json(layout.SUSPICIOUS_SPLITS, {"splits": rows})


def _already_applied(ctx: JobContext, split: Split) -> bool:
    """Whether the lake was restated for this very split before (its history is then on the
    new scale already, and an observed ratio of 1 is right)."""
    try:
        marker = ctx.storage.read_json(layout.restated_marker(split.symbol))
    except (NotFoundError, CondvestError):
        return False
    return isinstance(marker, dict) and marker.get("split_date") == split.execution_date.isoformat()


def stored_closes(ctx: JobContext, symbol: str, start: date, before: date) -> pa.Table:
    """(date, close) the lake holds for ``symbol`` from ``start`` to the day before ``before``:
    the scale the restatement is about to replace."""
    from condvest.jobs.read import read_daily

    return read_daily(ctx, [symbol], start, before - timedelta(days=1), ["date", "close"])


def check_split(ctx: JobContext, split: Split, old: pa.Table, new: pa.Table) -> str:
    """Compare the old scale (``old``) with the re-fetched one (``new``); record or clear the
    split in the suspicious list. Returns a message ('' when the ratio matches)."""
    observed, compared = observed_ratio(old, new, split.execution_date)
    if observed is None:
        return ""
    expected = 1.0 if _already_applied(ctx, split) else split.ratio
    key = (split.symbol, split.execution_date.isoformat())
    rows = [r for r in read_suspicious(ctx.storage) if (r.get("symbol"), r.get("date")) != key]
    if ratio_matches(expected, observed):
        if len(rows) != len(read_suspicious(ctx.storage)):
            _write(ctx.storage, rows)
        return ""
    rows.append(
        {
            "symbol": split.symbol,
            "date": split.execution_date.isoformat(),
            "expected": round(expected, 6),
            "observed": round(observed, 6),
            "listed_ratio": split.ratio,
            "dates_compared": compared,
            "run_id": ctx.run_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    _write(ctx.storage, rows)
    message = (
        f"suspicious split {split.symbol} on {split.execution_date}: the vendor lists ratio "
        f"{split.ratio:g}, but the stored and re-fetched closes differ by {observed:.4g} "
        f"(expected {expected:g}, over {compared} date(s)); see condvest status"
    )
    log.warning("%s", message)
    return message


def suspicious_problems(storage: Storage) -> tuple[list[dict[str, Any]], list[str]]:
    """(status view, problems) of the recorded suspicious splits."""
    try:
        rows = read_suspicious(storage)
    except CondvestError as exc:
        return [], [f"cannot read {layout.SUSPICIOUS_SPLITS}: {exc}"]
    view = [
        {k: r.get(k) for k in ("symbol", "date", "expected", "observed", "run_id")} for r in rows
    ]
    if not view:
        return [], []
    shown = ", ".join(
        f"{r['symbol']} {r['date']} (expected {r['expected']}, observed {r['observed']})"
        for r in view[:5]
    )
    more = f" and {len(view) - 5} more" if len(view) > 5 else ""
    return view, [
        f"{len(view)} suspicious split(s): {shown}{more}; the vendor's split ratio does not "
        "match the prices, check them (docs/corporate-actions.md#split-sanity)"
    ]

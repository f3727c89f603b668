"""``fetch --meta``: the ticker list plus details for symbols new or older than
``meta.refresh_days``, written as one snapshot parquet under ``bronze/raw_meta/``.

Each snapshot is the whole universe: rows carried over from the previous snapshot, refreshed
rows from this run, and symbols that left the active list marked ``active = false`` (delisted
symbols are not kept 'active' forever)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from condvest.core import layout
from condvest.core.schema import META_SCHEMA
from condvest.errors import AuthError, CondvestError, SourceError
from condvest.jobs.context import JobContext, today_ny
from condvest.jobs.fetch.model import (
    STAGE,
    STOP_MARGIN_S,
    FetchOptions,
    FetchResult,
    MetaPlan,
    estimate_s,
    paced_per_s,
    pacing,
)
from condvest.progress import format_s
from condvest.sinks import open_sink

if TYPE_CHECKING:
    from condvest.sources.base import Source

_LIST_PAGE = 1000
"""Tickers per page of Polygon's ticker list (its reference endpoints' maximum page size)."""

_RENAMES = {"currency_name": "currency", "sic_description": "industry", "ticker": "symbol"}


def latest_snapshot(ctx: JobContext) -> dict[str, dict[str, Any]]:
    """The newest ``raw_meta`` snapshot as symbol → row ({} when there is none)."""
    keys = [o.key for o in ctx.storage.list_objects(layout.BRONZE_META + "/")]
    keys = [k for k in keys if k.endswith(".parquet") and not layout.is_temp_key(k)]
    if not keys:
        return {}
    table = ctx.storage.read_parquet(max(keys))
    return {row["symbol"]: row for row in table.to_pylist()}


def _keep(ctx: JobContext, ticker: dict[str, Any]) -> bool:
    m = ctx.settings.meta
    if m.types and ticker.get("type") not in m.types:
        return False
    return not (m.exchanges and ticker.get("primary_exchange") not in m.exchanges)


def _parse_day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _parse_ts(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _typed(name: str, value: Any) -> Any:
    """``value`` as META_SCHEMA's type for ``name``; None when it cannot be (a vendor field of
    the wrong type loses that field, never the snapshot)."""
    kind = META_SCHEMA.field(name).type
    if value is None:
        return None
    if kind == pa.bool_():
        return value if isinstance(value, bool) else None
    if kind == pa.float64():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok and math.isfinite(value) and abs(value) < 1e18 else None
    if kind == pa.date32():
        return value if isinstance(value, date) else _parse_day(value)
    if pa.types.is_timestamp(kind):
        return _parse_ts(value)
    if name in ("cik", "sic_code") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value[:10_000] if isinstance(value, str) else None


def _row(raw: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = dict(base or {})
    for key, value in raw.items():
        name = _RENAMES.get(key, key)
        if name in META_SCHEMA.names and value is not None:
            typed = _typed(name, value)
            if typed is not None:
                out[name] = typed
    return {name: _typed(name, out.get(name)) for name in META_SCHEMA.names}


def plan_meta(ctx: JobContext, opts: FetchOptions, base: dict[str, Any]) -> MetaPlan:
    previous = latest_snapshot(ctx)
    cutoff = ctx.now() - timedelta(days=ctx.settings.meta.refresh_days)
    # What run_meta asks details for: the listed symbols (those active in the snapshot stand
    # for the list) restricted to --symbols, stale or all with --force, plus --symbols new to it.
    wanted = set(opts.symbols) if opts.symbols else None
    known = {
        s: r for s, r in previous.items() if r.get("active") and (wanted is None or s in wanted)
    }
    stale = [
        s
        for s, r in known.items()
        if opts.force or r.get("updated_at") is None or r["updated_at"] < cutoff
    ]
    new = sorted(wanted - set(previous)) if wanted else []
    pages = max(1, math.ceil(sum(1 for r in previous.values() if r.get("active")) / _LIST_PAGE))
    requests = pages + len(stale) + len(new)
    rpm = pacing(ctx, base["source"])
    notes = []
    if not previous and not wanted:
        per_1000 = format_s(estimate_s(1001, rpm))
        notes.append(
            "no previous snapshot: every symbol of the ticker list (thousands for US stocks) "
            f"costs one details request, ~{per_1000} per 1,000 symbols at the configured rate; "
            "--symbols or meta.types / meta.exchanges narrow it"
        )
    return MetaPlan(
        requests=requests,
        estimated_s=estimate_s(requests, rpm),
        force=opts.force,
        notes=[
            f"previous snapshot: {len(previous)} symbol(s), {len(stale)} due for refresh"
            + (f", {len(new)} --symbols new to it" if new else "")
            + f"; the ticker list takes ~{pages} page(s); symbols new in the ticker list "
            "cost one details request each (not counted above)",
            *notes,
        ],
        **base,
    )


def run_meta(ctx: JobContext, plan: MetaPlan, source: Source) -> FetchResult:
    previous = latest_snapshot(ctx)
    listed = {t["ticker"]: t for t in source.tickers() if isinstance(t.get("ticker"), str)}
    active = sum(1 for r in previous.values() if r.get("active"))
    floor = ctx.settings.meta.min_list_fraction * active
    if active and (not listed or len(listed) < floor):
        raise SourceError(
            f"the ticker list has {len(listed)} symbol(s) against {active} active in the "
            f"previous snapshot (below meta.min_list_fraction "
            f"{ctx.settings.meta.min_list_fraction:g}): refused, no symbol is marked inactive",
            hint="a truncated or empty answer; the next run asks again",
        )
    kept = {s: t for s, t in listed.items() if _keep(ctx, t) and layout.is_valid_symbol(s)}
    cutoff = ctx.now() - timedelta(days=ctx.settings.meta.refresh_days)
    due = [
        s
        for s in sorted(kept)
        if (plan.symbols is None or s in plan.symbols)
        and (
            plan.force
            or s not in previous
            or previous[s].get("updated_at") is None
            or previous[s]["updated_at"] < cutoff
        )
    ]
    rows: dict[str, dict[str, Any]] = {s: _row(t, previous.get(s)) for s, t in kept.items()}
    failed: dict[str, str] = {}
    messages: list[str] = []
    now = ctx.now().astimezone(UTC)
    partial = False
    rate = paced_per_s(ctx, source.name)  # one details request per symbol
    progress = ctx.progress(STAGE, len(due), "symbol details", rate_per_s=rate).start()
    for i in range(0, len(due), 20):
        if ctx.out_of_time(STOP_MARGIN_S):
            partial = True
            messages.append(f"stopped before the time limit; {len(due) - i} detail(s) left")
            break
        for symbol, got in source.ticker_details(due[i : i + 20]).items():
            progress.advance()
            if isinstance(got, AuthError):
                raise got
            if isinstance(got, CondvestError):
                failed[symbol] = str(got)
                continue
            rows[symbol] = _row(got | {"updated_at": now}, rows.get(symbol))
    progress.close()
    delisted = [s for s, r in previous.items() if s not in listed and r.get("active")]
    for symbol, old in previous.items():
        if symbol not in listed:  # delisted (or already inactive): kept, marked inactive
            rows[symbol] = _row({}, old) | {"active": False}
    table = pa.Table.from_pylist([rows[s] for s in sorted(rows)], schema=META_SCHEMA)
    size = ctx.storage.write_parquet(layout.meta_snapshot(today_ny(ctx), ctx.run_id), table)
    if delisted:
        messages.append(f"{len(delisted)} symbol(s) left the active list and are now inactive")
    for symbol, error in failed.items():
        messages.append(f"details {symbol}: {error}")
    sink = open_sink(ctx.settings)
    if sink is not None:
        try:
            sink.upsert_metadata(table)
        except CondvestError as exc:
            failed["postgres"] = str(exc)
        finally:
            sink.close()
    return FetchResult(
        stage=STAGE,
        run_id=ctx.run_id,
        dry_run=False,
        ok=not failed,
        duration_s=0.0,
        mode="meta",
        source=source.name,
        partial=partial,
        failed=failed,
        rows=table.num_rows,
        symbols=len(due) - len(failed),
        files=1,
        bytes=size,
        messages=messages,
    )

"""Every lake path is built here (docs/design.md §4). Keys are relative to the lake root and use
'/'."""

from __future__ import annotations

import re
from datetime import date

from condvest.errors import InvalidSymbolError, UsageError

BRONZE_OHLCV = "bronze/raw_ohlcv"
BRONZE_META = "bronze/raw_meta"
BRONZE_ACTIONS = "bronze/corporate_actions"
BRONZE_QUARANTINE = "bronze/quarantine"
SILVER = "silver"
METADATA = "processing_metadata"

DATA_FILE = "data.parquet"
TEMP_MARKER = ".tmp-"
"""Temporary objects of in-flight writes contain this marker (readers skip them); vacuum removes
only stale ones of condvest's exact shape (:func:`is_condvest_temp`)."""

LAKE_MARKER = "condvest-lake.json"
"""At the lake root: written when condvest creates a lake (or adopts one it recognises by its
layout), so the commands that delete never work on a directory that is not a lake."""
LAKE_FORMAT = "condvest-lake"
LAKE_FORMAT_VERSION = 1
LAKE_DIRS = (BRONZE_OHLCV.split("/", 1)[0], SILVER, METADATA)
"""The top-level directories condvest writes; nothing is ever deleted outside them."""

MAX_SYMBOL_LENGTH = 32
# Polygon tickers: upper/lower-case letters (KIMpL), digits, '.', '-', and a few class markers.
_SYMBOL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-_:^+=]*$")
_DATE_FILE_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})\.parquet$")


def validate_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is safe as a path segment and plausible as a ticker."""
    if not isinstance(symbol, str) or symbol == "":
        raise InvalidSymbolError("symbol is empty", hint="pass tickers such as AAPL,BRK.A")
    shown = symbol if len(symbol) <= 40 else symbol[:40] + "…"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in symbol):
        raise InvalidSymbolError(f"symbol {shown!r} contains control characters")
    if len(symbol) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbolError(
            f"symbol {shown!r} is {len(symbol)} characters; at most {MAX_SYMBOL_LENGTH} allowed"
        )
    if "/" in symbol or "\\" in symbol or ".." in symbol or not _SYMBOL_RE.match(symbol):
        raise InvalidSymbolError(
            f"symbol {shown!r} is not a valid ticker",
            hint="letters, digits and . - _ only, e.g. BRK.A",
        )
    return symbol


def is_valid_symbol(symbol: str) -> bool:
    try:
        validate_symbol(symbol)
    except InvalidSymbolError:
        return False
    return True


def parse_symbols(text: str | None) -> list[str] | None:
    """Parse a comma-separated ``--symbols`` value; None when not given."""
    if text is None:
        return None
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise UsageError("--symbols is empty", hint="pass e.g. --symbols AAPL,MSFT")
    for s in symbols:
        validate_symbol(s)
    return sorted(set(symbols))


def symbol_prefix(symbol: str) -> str:
    return f"{BRONZE_OHLCV}/symbol={validate_symbol(symbol)}/"


def data_file(symbol: str) -> str:
    return symbol_prefix(symbol) + DATA_FILE


def date_file(symbol: str, day: date) -> str:
    return symbol_prefix(symbol) + f"date={day.isoformat()}.parquet"


def parse_date_file(name: str) -> date | None:
    """``date=2025-01-02.parquet`` → that date; anything else → None."""
    match = _DATE_FILE_RE.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # a stray "date=2025-13-01.parquet" is not a date file, not a crash
        return None


def parse_symbol_dir(key: str) -> str | None:
    """``bronze/raw_ohlcv/symbol=X/...`` → ``X`` (None if not a valid symbol directory)."""
    if not key.startswith(BRONZE_OHLCV + "/symbol="):
        return None
    seg = key[len(BRONZE_OHLCV) + len("/symbol=") :].split("/", 1)[0]
    return seg if is_valid_symbol(seg) else None


def silver_prefix(interval: int) -> str:
    return f"{SILVER}/silver_{interval}d/"


def silver_file(interval: int, year: int, month: int) -> str:
    name = f"data_{interval}d_{year:04d}{month:02d}.parquet"
    return f"{silver_prefix(interval)}year={year:04d}/month={month:02d}/{name}"


_SILVER_RE = re.compile(r"year=(\d{4})/month=(\d{2})/data_(\d+)d_(\d{6})\.parquet$")


def parse_silver_file(key: str) -> tuple[int, int, int] | None:
    """silver key → (interval, year, month)."""
    match = _SILVER_RE.search(key)
    if not match:
        return None
    return int(match.group(3)), int(match.group(1)), int(match.group(2))


def silver_checkpoint(interval: int) -> str:
    return f"{METADATA}/silver_{interval}d_checkpoint.json"


CONSOLIDATION_MANIFEST = f"{METADATA}/consolidation_manifest.parquet"
CLEANUP_MANIFEST = f"{METADATA}/cleanup_manifest.json"
FETCH_LOG_PREFIX = f"{METADATA}/fetch_log/"
WATERMARK_PREFIX = f"{METADATA}/watermarks/"
FETCH_FAILURES = f"{METADATA}/fetch_failures.json"
"""Sessions the last fetch runs could not land, with the reason (status shows them as missing)."""
RUNS_PREFIX = f"{METADATA}/runs/"
LOCKS_PREFIX = f"{METADATA}/locks/"
RESTATED_PREFIX = f"{METADATA}/restated/"
SUSPICIOUS_SPLITS = f"{METADATA}/suspicious_splits.json"
"""Splits whose restatement showed another ratio than the vendor listed (status reports them)."""
BRONZE_TAILS = f"{METADATA}/bronze_tails.parquet"
"""Per symbol directory, the last rows of its data.parquet at one version (state.bronze_tails)."""
CLEANUP_JOURNAL_PREFIX = f"{METADATA}/consolidate_cleanup/"
"""Symbols a consolidate run still has to clean up (written before its manifest update, removed
once their cleanup is done), so a run killed in between has its cleanup finished by the next."""


def cleanup_journal(run_id: str) -> str:
    return f"{CLEANUP_JOURNAL_PREFIX}{run_id}.json"


def fetch_log_entry(day: date) -> str:
    return f"{FETCH_LOG_PREFIX}session={day.isoformat()}.json"


def parse_fetch_log_entry(key: str) -> date | None:
    name = key.rsplit("/", 1)[-1]
    if name.startswith("session=") and name.endswith(".json"):
        try:
            return date.fromisoformat(name[len("session=") : -len(".json")])
        except ValueError:
            return None
    return None


def watermark(name: str) -> str:
    return f"{WATERMARK_PREFIX}{name}.json"


def run_record(stage: str, started_iso: str, run_id: str) -> str:
    return f"{RUNS_PREFIX}{stage}/{started_iso}_{run_id}.json"


def run_latest(stage: str) -> str:
    return f"{RUNS_PREFIX}{stage}/latest.json"


def run_scopes_prefix(stage: str) -> str:
    """Where the last run of each part of a stage run in parts (consolidate shards) is kept."""
    return f"{RUNS_PREFIX}{stage}/latest/"


def run_latest_scope(stage: str, scope: str) -> str:
    return f"{run_scopes_prefix(stage)}{scope}.json"


def lock(name: str) -> str:
    return f"{LOCKS_PREFIX}{name}.json"


def quarantine_file(day: date, run_id: str) -> str:
    return f"{BRONZE_QUARANTINE}/date={day.isoformat()}/{run_id}.parquet"


def restated_marker(symbol: str) -> str:
    return f"{RESTATED_PREFIX}symbol={validate_symbol(symbol)}.json"


ACTION_KINDS = ("splits", "dividends")
"""The corporate-action tables under :data:`BRONZE_ACTIONS`."""


def corporate_actions_file(kind: str, day: date) -> str:
    if kind not in ACTION_KINDS:
        raise ValueError(f"unknown corporate-action kind {kind!r}")
    return f"{BRONZE_ACTIONS}/{kind}/date={day.isoformat()}.parquet"


def meta_snapshot(day: date, run_id: str) -> str:
    return f"{BRONZE_META}/date={day.isoformat()}/{run_id}.parquet"


def temp_key(key: str, token: str) -> str:
    """A sibling temporary name for ``key`` (visible to vacuum's crash cleanup)."""
    head, _, name = key.rpartition("/")
    return f"{head}/{TEMP_MARKER}{token}-{name}" if head else f"{TEMP_MARKER}{token}-{name}"


def is_temp_key(key: str) -> bool:
    """Any name carrying the marker: readers skip it (never data). Not a licence to delete it."""
    return TEMP_MARKER in key.rsplit("/", 1)[-1]


# ".tmp-" + a 12-hex token (storage.base.new_token; "del" + token for a grave) + "-" + the name
# of the file being written, which is always a .parquet or .json name condvest builds here.
_CONDVEST_TEMP_RE = re.compile(r"^\.tmp-(?:del)?[0-9a-f]{12}-([^/]+\.(?:parquet|json))$")


def is_condvest_temp(key: str) -> bool:
    """A temporary name condvest itself writes, in a place it writes: under one of the lake's
    directories (:data:`LAKE_DIRS`), or the marker's own at the root. vacuum deletes (and
    restores graves of) only these: a user's ``notes.tmp-1.txt`` does not match."""
    head, _, name = key.rpartition("/")
    match = _CONDVEST_TEMP_RE.match(name)
    if match is None:
        return False
    if not head:
        return match.group(1) == LAKE_MARKER
    return head.split("/", 1)[0] in LAKE_DIRS


def is_lake_entry(name: str) -> bool:
    """Whether a top-level entry (a directory name ends in '/') is one condvest writes."""
    if name.endswith("/"):
        return name[:-1] in LAKE_DIRS
    return name == LAKE_MARKER or is_condvest_temp(name)


GRAVE_TOKEN = "del"
"""Token prefix of the temporary name a local conditional delete moves a file to (a "grave")."""


def grave_key(key: str, token: str) -> str:
    """Where a local conditional delete moves ``key`` while it checks the version."""
    return temp_key(key, GRAVE_TOKEN + token)


def grave_origin(key: str) -> str | None:
    """The key a grave was moved from, or None when ``key`` is not a grave condvest made."""
    if not is_condvest_temp(key):
        return None
    head, _, name = key.rpartition("/")
    rest = name.removeprefix(TEMP_MARKER + GRAVE_TOKEN)
    if rest == name or "-" not in rest:
        return None
    original = rest.split("-", 1)[1]
    return f"{head}/{original}" if head else original

"""The bronze index and the bronze file reader (docs/design.md, "The bronze index and reader").

Every stage that looks at ``bronze/raw_ohlcv/`` lists it through :func:`list_bronze` (or groups
objects it listed itself through :func:`index`): per symbol directory its ``data.parquet``, its
``date=`` files by session, its temporary files and any other name. Paths are parsed by
:mod:`condvest.core.layout` only. A symbolic link or an irregular entry in the listed part of the
lake fails the listing naming the path (the storage's listing refuses them).

Every bronze file is read by :func:`read_file` (or :func:`decode` for bytes already read with
their version): the file in the canonical schema, legacy shapes normalised, a file that is not
parquet failing with :class:`~condvest.errors.CorruptFileError` naming it. Resample's bulk scan
(:mod:`condvest.jobs.resample.scan`) reads the canonical files of a whole lake in one DuckDB pass
and hands every other file to this reader."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from condvest.core import layout
from condvest.core.merge import canonical
from condvest.core.schema import is_canonical, normalise_bronze
from condvest.errors import CorruptFileError
from condvest.storage.base import ObjectInfo, Storage


# -- the index ----------------------------------------------------------------------------------
@dataclass
class SymbolFiles:
    """The objects under one ``symbol=<X>/`` directory."""

    directory: str
    data: ObjectInfo | None = None
    dates: dict[date, ObjectInfo] = field(default_factory=dict)
    temps: list[ObjectInfo] = field(default_factory=list)
    """Temporary objects of in-flight (or crashed) writes: never data."""
    others: list[ObjectInfo] = field(default_factory=list)
    """Any other name (not read; counted in the directory's bytes)."""

    @property
    def objects(self) -> list[ObjectInfo]:
        """Every object of the directory, by key."""
        return sorted(self.unordered(), key=lambda o: o.key)

    def unordered(self) -> list[ObjectInfo]:
        """Every object of the directory."""
        return [
            *([self.data] if self.data else []),
            *self.dates.values(),
            *self.temps,
            *self.others,
        ]

    @property
    def has_files(self) -> bool:
        """Holds anything but temporary objects."""
        return bool(self.data or self.dates or self.others)


@dataclass
class BronzeIndex:
    """``bronze/raw_ohlcv/`` by symbol directory (sorted), and what lies outside any."""

    symbols: dict[str, SymbolFiles] = field(default_factory=dict)
    stray: list[ObjectInfo] = field(default_factory=list)
    """Objects not under a valid ``symbol=<X>/`` directory."""

    def with_files(self) -> dict[str, SymbolFiles]:
        """The symbol directories holding anything but temporary objects."""
        return {name: files for name, files in self.symbols.items() if files.has_files}

    @property
    def temp_files(self) -> int:
        in_dirs = sum(len(f.temps) for f in self.symbols.values())
        return in_dirs + sum(1 for o in self.stray if layout.is_temp_key(o.key))

    @property
    def bytes(self) -> int:
        listed = (o for f in self.symbols.values() for o in f.unordered())
        return sum(o.size for o in listed) + sum(o.size for o in self.stray)


def index(objects: Iterable[ObjectInfo]) -> BronzeIndex:
    """Group listed objects (any prefix; those outside bronze/raw_ohlcv are ignored)."""
    out = BronzeIndex()
    for obj in objects:
        if not obj.key.startswith(layout.BRONZE_OHLCV + "/"):
            continue
        name = layout.parse_symbol_dir(obj.key)
        if name is None:
            out.stray.append(obj)
            continue
        files = out.symbols.get(name)
        if files is None:
            files = out.symbols[name] = SymbolFiles(name)
        leaf = obj.key.rsplit("/", 1)[-1]
        if layout.is_temp_key(obj.key):
            files.temps.append(obj)
        elif leaf == layout.DATA_FILE:
            files.data = obj
        elif (day := layout.parse_date_file(leaf)) is not None:
            files.dates[day] = obj
        else:
            files.others.append(obj)
    out.symbols = dict(sorted(out.symbols.items()))
    return out


def list_bronze(
    storage: Storage, symbols: Sequence[str] | None = None, *, workers: int = 1
) -> BronzeIndex:
    """The index of all of bronze (one listing), or of ``symbols`` only (their prefixes listed
    in parallel; a symbol without a directory is absent)."""
    if symbols is None:
        return index(storage.list_objects(layout.BRONZE_OHLCV + "/"))
    names = [layout.validate_symbol(s) for s in symbols]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        listings = list(pool.map(lambda s: storage.list_objects(layout.symbol_prefix(s)), names))
    return index(o for listing in listings for o in listing)


def symbol_dirs(storage: Storage) -> set[str]:
    """The symbols with a directory under bronze/raw_ohlcv (one delimiter listing, no files)."""
    return {
        name
        for entry in storage.list_dirs(layout.BRONZE_OHLCV + "/")
        if (name := layout.parse_symbol_dir(f"{layout.BRONZE_OHLCV}/{entry}/")) is not None
    }


# -- the reader ---------------------------------------------------------------------------------
def read_file(
    storage: Storage, key: str, start: date | None = None, end: date | None = None
) -> pa.Table:
    """One bronze file (data.parquet or date=) in the canonical schema, only its rows dated in
    ``[start, end]`` when bounded. Absent → NotFoundError; unreadable → CorruptFileError."""
    return decode(storage.read_bytes(key), where=storage.url(key), start=start, end=end)[0]


def decode(
    data: bytes, *, where: str, start: date | None = None, end: date | None = None
) -> tuple[pa.Table, bool]:
    """Parquet bytes → (canonical table, was the file already canonical); ``where`` names the
    file in errors. A canonical file is filtered while it is decoded."""
    bounds = date_filter("date", start, end)
    try:
        # ParquetFile over a BufferReader, single-threaded: ~3x faster than pq.read_table on
        # small files (callers parallelise across files instead).
        file = pq.ParquetFile(pa.BufferReader(data))
        was_canonical = is_canonical(file.schema_arrow)
        if bounds is not None and was_canonical:
            # the row groups whose statistics miss the bounds are skipped, the rest filtered in
            # memory (read_table(filters=) costs ~3x on these small files: dataset discovery)
            groups = [i for i in range(file.num_row_groups) if may_match(file, i, bounds)]
            raw = file.read_row_groups(groups, use_threads=False)
            raw = raw.filter(pq.filters_to_expression(bounds))
        else:
            raw = file.read(use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise CorruptFileError(f"{where} is not a readable parquet file: {exc}") from None
    if was_canonical:
        # Written by condvest: the schema (REQUIRED columns included) is already canonical.
        table = raw.replace_schema_metadata(None)
        return (table if bounds is None else canonical(table)), True
    table = normalise_bronze(raw, where=where)
    return between(table, "date", start, end), False


def may_match(file: pq.ParquetFile, group: int, filters: list[Any]) -> bool:
    """False only when row group ``group``'s min/max statistics rule every row out."""
    meta = file.metadata.row_group(group)
    names = file.schema_arrow.names
    for name, op, value in filters:
        if name not in names:
            continue
        stats = meta.column(names.index(name)).statistics
        if stats is None or not stats.has_min_max:
            continue
        low, high = stats.min, stats.max
        values = list(value) if op == "in" else [value]
        if not values or not isinstance(low, type(values[0])):
            continue
        if (op == ">=" and high < value) or (op == "<=" and low > value):
            return False
        if op == "in" and (high < min(values) or low > max(values)):
            return False
    return True


def date_filter(
    name: str, start: date | None, end: date | None
) -> list[tuple[str, str, Any]] | None:
    """A parquet filter keeping the rows whose ``name`` column is in ``[start, end]``."""
    out: list[tuple[str, str, Any]] = []
    if start is not None:
        out.append((name, ">=", start))
    if end is not None:
        out.append((name, "<=", end))
    return out or None


def between(table: pa.Table, name: str, start: date | None, end: date | None) -> pa.Table:
    """The rows of ``table`` whose ``name`` column is in ``[start, end]``."""
    if start is None and end is None:
        return table
    column = table.column(name)
    keep = None
    if start is not None:
        keep = pc.greater_equal(column, pa.scalar(start, pa.date32()))
    if end is not None:
        upper = pc.less_equal(column, pa.scalar(end, pa.date32()))
        keep = upper if keep is None else pc.and_(keep, upper)
    return table.filter(keep)

"""Optional sinks beside the lake. Today: the PostgreSQL serving cache (docs/design.md §9).

Nothing here imports psycopg unless PostgreSQL is enabled (``postgres.dsn`` or
``postgres.secret_arn``)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from condvest.settings import Settings
    from condvest.sinks.postgres import DbFreshness
    from condvest.state.runs import RunRecord


class Sink(Protocol):
    """What the stages call when a sink is configured. Every method raises
    :class:`condvest.errors.DatabaseError` (one clear line, no password) on failure."""

    def upsert_session(self, session: date, rows: pa.Table, *, run_id: str) -> int:
        """Upsert one session's validated rows (canonical bronze schema) and advance the
        database watermark to ``session`` (monotonic) in ONE transaction. Returns rows changed."""
        ...

    def upsert_rows(self, rows: pa.Table) -> int:
        """Upsert rows (history, restatements, sync) without touching the watermark."""
        ...

    def upsert_metadata(self, meta: pa.Table) -> int:
        """Upsert symbol metadata rows (the columns of ``bronze/raw_meta``)."""
        ...

    def upsert_dividends(self, rows: pa.Table) -> int:
        """Upsert dividends (``DIVIDEND_SCHEMA`` rows) on their vendor id; rows changed."""
        ...

    def record_run(self, record: RunRecord) -> None:
        """Insert or update one job-run row."""
        ...

    def watermark(self) -> date | None:
        """The database's current daily watermark."""
        ...

    def advance_watermark(self, day: date, *, run_id: str) -> date:
        """Move the database watermark to ``day`` if later (monotonic); returns it after."""
        ...

    def init_schema(self) -> tuple[int, int]:
        """Create or upgrade the tables; (schema version before, after)."""
        ...

    def freshness(self) -> DbFreshness:
        """Schema version, watermark, max date and row count of ``raw_ohlcv``."""
        ...

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """The latest job-run row of each stage."""
        ...

    def delete_older_than(
        self, days: int, *, dry_run: bool = False, today: date | None = None
    ) -> int:
        """Delete (or, dry, count) ``raw_ohlcv`` rows older than ``days``, in batches."""
        ...

    @property
    def where(self) -> str:
        """``user@host:port/dbname`` (never the password), for messages."""
        ...

    def close(self) -> None: ...


def postgres_enabled(settings: Settings) -> bool:
    return settings.postgres.dsn is not None or bool(settings.postgres.secret_arn)


def open_sink(settings: Settings) -> Sink | None:
    """The configured sink, or None when PostgreSQL is off (the embedded default)."""
    if not postgres_enabled(settings):
        return None
    from condvest.sinks.postgres import PostgresSink

    sink: Sink = PostgresSink.from_settings(settings)
    return sink

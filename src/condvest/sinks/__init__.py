"""Optional sinks beside the lake. Today: the PostgreSQL serving cache (DESIGN §9).

Nothing here imports psycopg unless PostgreSQL is enabled (``postgres.dsn`` or
``postgres.secret_arn``)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from condvest.settings import Settings
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

    def record_run(self, record: RunRecord) -> None:
        """Insert or update one job-run row."""
        ...

    def watermark(self) -> date | None:
        """The database's current daily watermark."""
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

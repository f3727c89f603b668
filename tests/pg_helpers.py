"""Helpers for the PostgreSQL tests: settings for a test schema, bronze tables, a wrong-password
server (the test server trusts every local connection, so a password can only be refused by a
stand-in that speaks PostgreSQL's startup protocol on loopback)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from condvest.core.schema import BRONZE_SCHEMA
from condvest.settings import Settings, load_settings


def pg_settings(dsn: str, schema: str, **postgres: Any) -> Settings:
    return load_settings(
        env={}, overrides={"postgres": {"dsn": dsn, "schema_name": schema, **postgres}}
    )


def bronze(
    symbols: Sequence[str],
    days: Sequence[date],
    *,
    close: float = 10.0,
    fetched: datetime = datetime(2026, 1, 5, 22, 0, tzinfo=UTC),
    source: str = "test",
) -> pa.Table:
    """One row per (symbol, day), valid OHLC around ``close``."""
    pairs = [(s, d) for d in days for s in symbols]
    n = len(pairs)
    return pa.table(
        {
            "symbol": [p[0] for p in pairs],
            "date": pa.array([p[1] for p in pairs], pa.date32()),
            "open": [close] * n,
            "high": [close * 1.1] * n,
            "low": [close * 0.9] * n,
            "close": [close] * n,
            "volume": [1000.0 + i for i in range(n)],
            "vwap": pa.array([close] * n, pa.float64()),
            "transactions": pa.array([7] * n, pa.int64()),
            "fetched_at": pa.array([fetched] * n, pa.timestamp("ms", tz="UTC")),
            "source": [source] * n,
        },
        schema=BRONZE_SCHEMA,
    )


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _refuse_password(conn: socket.socket) -> None:
    while True:
        length = struct.unpack("!I", _recv_exact(conn, 4))[0]
        body = _recv_exact(conn, length - 4)
        code = struct.unpack("!I", body[:4])[0]
        if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest: "not here"
            conn.sendall(b"N")
            continue
        break
    conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
    kind = _recv_exact(conn, 1)
    length = struct.unpack("!I", _recv_exact(conn, 4))[0]
    _recv_exact(conn, length - 4)
    assert kind == b"p"
    fields = b"".join(
        tag + text.encode() + b"\0"
        for tag, text in (
            (b"S", "FATAL"),
            (b"V", "FATAL"),
            (b"C", "28P01"),
            (b"M", 'password authentication failed for user "postgres"'),
        )
    )
    conn.sendall(b"E" + struct.pack("!I", len(fields) + 5) + fields + b"\0")


@contextmanager
def password_refusing_server() -> Iterator[int]:
    """A loopback server that asks for a password and refuses it (SQLSTATE 28P01). Yields its
    port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with suppress(OSError, ConnectionError, AssertionError):
                    _refuse_password(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()

"""A latency-injecting HTTP proxy for the S3 benchmarks (not a test; no dependency).

    proxy = LatencyProxy("127.0.0.1", moto_port, latency_s=0.020).start()
    ... point CONDVEST_S3__ENDPOINT_URL at proxy.url ...
    proxy.snapshot()  # {"GET": n, "PUT": n, ...} and bytes, since start

moto on loopback answers in microseconds; S3 in-region takes roughly 10-30 ms per request. The
proxy sits between the client and moto: one thread per client connection reads each HTTP/1.1
request whole (headers, then a Content-Length or chunked body), waits ``latency_s``, forwards it
on its own upstream connection, reads the response whole and sends it back. Requests on one
connection are sequential (botocore never pipelines), so concurrency is exactly the client's
number of connections, as against S3.

Each request is counted by S3 operation class — GET (GetObject), HEAD, PUT (PutObject, and
CopyObject), LIST (ListObjects/V2 on the bucket), DELETE (DeleteObject, and each DeleteObjects
POST), POST (anything else) — with the bytes sent and received, so a benchmark can print
requests per stage and the day's request cost at list prices (``cost_usd``).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

# us-east-1 S3 Standard list prices, USD per 1,000 requests (DELETE is free; a DeleteObjects
# batch is a POST and is priced as one).
PRICE_PER_1000 = {"GET": 0.0004, "HEAD": 0.0004, "PUT": 0.005, "LIST": 0.005, "POST": 0.005}
KINDS = ("GET", "HEAD", "PUT", "LIST", "DELETE", "POST")


@dataclass(frozen=True)
class Counts:
    """Requests by kind, bytes received from the server (response bodies) and sent to it."""

    requests: dict[str, int]
    bytes_in: dict[str, int]
    bytes_out: dict[str, int]

    def __sub__(self, other: Counts) -> Counts:
        def sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) - b.get(k, 0) for k in KINDS}

        return Counts(
            sub(self.requests, other.requests),
            sub(self.bytes_in, other.bytes_in),
            sub(self.bytes_out, other.bytes_out),
        )

    def cost_usd(self) -> float:
        return sum(self.requests.get(k, 0) * p / 1000 for k, p in PRICE_PER_1000.items())

    def brief(self) -> str:
        shown = " ".join(f"{k} {self.requests.get(k, 0):,}" for k in KINDS if self.requests.get(k))
        read = self.bytes_in.get("GET", 0) / 1e6
        return f"{shown or 'no requests'}; GET {read:,.1f} MB; ${self.cost_usd():.5f}"


def classify(method: str, target: str) -> str:
    """The S3 operation class of a path-style request (``/bucket`` or ``/bucket/key``)."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = len(parts.path.lstrip("/").split("/", 1)) > 1 and not parts.path.endswith("/")
    if method == "GET":
        return "GET" if has_key else "LIST"
    if method == "HEAD":
        return "HEAD"
    if method == "PUT":
        return "PUT"
    if method == "DELETE":
        return "DELETE"
    if method == "POST" and "delete" in query:
        return "DELETE"
    return "POST"


_EXPECT = re.compile(rb"\r\nexpect: *100-continue", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection: *close", re.IGNORECASE)


class _Closed(Exception):
    pass


def _read_until(sock: socket.socket, buf: bytearray, marker: bytes) -> int:
    while (at := buf.find(marker)) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed
        buf += chunk
    return at


def _read_exact(sock: socket.socket, buf: bytearray, n: int) -> None:
    while len(buf) < n:
        chunk = sock.recv(max(65536, n - len(buf)))
        if not chunk:
            raise _Closed
        buf += chunk


def _read_head(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str]]:
    """The end of the next message's head in ``buf`` (read as needed) and its headers."""
    end = _read_until(sock, buf, b"\r\n\r\n") + 4
    headers = {}
    for line in bytes(buf[:end]).decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return end, headers


def _read_body(
    sock: socket.socket, buf: bytearray, end: int, headers: dict[str, str], no_body: bool
) -> bytes:
    """The message whose head ends at ``end``, whole (what follows it stays in ``buf``)."""
    if no_body:
        size = end
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        size = end
        while True:  # chunk-size line, chunk, CRLF ... 0-size chunk, trailers, CRLF
            line_end = _read_until_from(sock, buf, b"\r\n", size)
            length = int(bytes(buf[size:line_end]).split(b";")[0], 16)
            size = line_end + 2
            if length == 0:
                size = _read_until_from(sock, buf, b"\r\n\r\n", size - 2) + 4
                break
            _read_exact(sock, buf, size + length + 2)
            size += length + 2
    else:
        size = end + int(headers.get("content-length", "0"))
        _read_exact(sock, buf, size)
    message = bytes(buf[:size])
    del buf[:size]
    return message


def _read_until_from(sock: socket.socket, buf: bytearray, marker: bytes, start: int) -> int:
    while (at := buf.find(marker, start)) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed
        buf += chunk
    return at


class LatencyProxy:
    """Forwards HTTP/1.1 to ``upstream`` after ``latency_s`` per request, counting them."""

    def __init__(self, host: str, port: int, *, latency_s: float = 0.020) -> None:
        self.upstream = (host, port)
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._bytes_in: Counter[str] = Counter()
        self._bytes_out: Counter[str] = Counter()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stopped = False

    def start(self) -> LatencyProxy:
        threading.Thread(target=self._accept, daemon=True, name="latency-proxy").start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._server.close()

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(dict(self._requests), dict(self._bytes_in), dict(self._bytes_out))

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream: socket.socket | None = None
        from_client, from_server = bytearray(), bytearray()
        try:
            while True:
                end, headers = _read_head(client, from_client)
                if headers.get("expect", "").lower() == "100-continue":
                    # answered here: the body is read whole before anything is forwarded
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                request = _read_body(client, from_client, end, headers, False)
                request = _EXPECT.sub(b"", request[:end], count=1) + request[end:]
                method, target = request.split(b" ", 2)[:2]
                kind = classify(method.decode(), target.decode("latin-1"))
                time.sleep(self.latency_s)
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.sendall(request)
                while True:  # interim 1xx answers are not the response
                    end, headers = _read_head(upstream, from_server)
                    if not from_server.startswith(b"HTTP/1.1 1"):
                        break
                    del from_server[:end]
                no_body = method == b"HEAD" or from_server[9:12] in (b"204", b"304")
                response = _read_body(upstream, from_server, end, headers, no_body)
                if headers.get("connection", "").lower() == "close":
                    # moto's server closes after each answer; the client keeps its connection
                    # to the proxy (as to S3) and the next request opens a new upstream one
                    upstream.close()
                    upstream, from_server = None, bytearray()
                    response = _CLOSE.sub(b"", response, count=1)
                client.sendall(response)
                with self._lock:
                    self._requests[kind] += 1
                    self._bytes_in[kind] += len(response)
                    self._bytes_out[kind] += len(request)
        except (_Closed, OSError):
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

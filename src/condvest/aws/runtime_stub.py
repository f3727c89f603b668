"""A small local stand-in for the AWS Lambda Runtime API, for trying the handler and the image
without AWS: the real runtime client (``awslambdaric``) polls it for events and posts results.

    python -m condvest.aws.runtime_stub --port 9001 --event '{"command": "status"}'
    AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001 python -m awslambdaric condvest.aws.lambda_handler.handler

It serves each ``--event`` once, prints one JSON line per outcome (``response`` or ``error``) and
exits. Only the endpoints a runtime client uses are implemented (next, response, error, init
error); it binds to loopback by default. Used by tests/test_lambda.py and scripts/image-proof.sh.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:condvest"


@dataclass(frozen=True)
class Outcome:
    """What the runtime posted back for one request id."""

    request_id: str
    kind: str  # "response" | "error" | "init_error"
    body: Any
    error_type: str | None = None


@dataclass
class RuntimeStub:
    host: str = "127.0.0.1"
    port: int = 0
    _events: queue.Queue[tuple[str, bytes, int]] = field(default_factory=queue.Queue)
    _outcomes: queue.Queue[Outcome] = field(default_factory=queue.Queue)
    _server: ThreadingHTTPServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def address(self) -> str:
        assert self._server is not None, "start() first"
        return f"{self.host}:{self._server.server_address[1]}"

    def start(self) -> RuntimeStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                while not stub._stopping.is_set():
                    try:
                        request_id, body, deadline_ms = stub._events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                    self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
                    self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                    self.send_header("Lambda-Runtime-Trace-Id", f"Root=1-{request_id[:8]}")
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_error(503)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                if parts == ["init", "error"]:
                    outcome = Outcome("init", "init_error", body)
                elif (
                    len(parts) == 3
                    and parts[0] == "invocation"
                    and parts[2]
                    in (
                        "response",
                        "error",
                    )
                ):
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                    outcome = Outcome(parts[1], parts[2], body, error_type)
                else:
                    self.send_error(404)
                    return
                stub._outcomes.put(outcome)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def submit(self, event: Any, *, timeout_ms: int = 60_000) -> str:
        """Queue one event with a deadline ``timeout_ms`` from now; returns its request id."""
        request_id = str(uuid.uuid4())
        deadline_ms = int(time.time() * 1000) + timeout_ms
        self._events.put((request_id, json.dumps(event).encode(), deadline_ms))
        return request_id

    def wait(self, request_id: str, *, wait_s: float = 60.0) -> Outcome:
        """The outcome for ``request_id`` (an init error counts too); TimeoutError if none."""
        end = time.monotonic() + wait_s
        while (left := end - time.monotonic()) > 0:
            try:
                outcome = self._outcomes.get(timeout=left)
            except queue.Empty:
                break
            if outcome.request_id in (request_id, "init"):
                return outcome
        raise TimeoutError(f"no outcome for request {request_id} within {wait_s:g}s")

    def invoke(self, event: Any, *, timeout_ms: int = 60_000, wait_s: float = 60.0) -> Outcome:
        return self.wait(self.submit(event, timeout_ms=timeout_ms), wait_s=wait_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--event", action="append", default=[], help="JSON event (repeatable)")
    parser.add_argument("--timeout-ms", type=int, default=60_000, help="Function timeout")
    parser.add_argument("--wait-s", type=float, default=120.0, help="Give up after this long")
    args = parser.parse_args(argv)
    stub = RuntimeStub(args.host, args.port).start()
    print(json.dumps({"listening": stub.address}), flush=True)
    failures = 0
    try:
        for text in args.event:
            event = json.loads(text)
            outcome = stub.invoke(event, timeout_ms=args.timeout_ms, wait_s=args.wait_s)
            print(json.dumps({"event": event, **outcome.__dict__}), flush=True)
            failures += outcome.kind != "response"
            if outcome.kind == "init_error":
                break
    except TimeoutError as exc:
        print(json.dumps({"timeout": str(exc)}), flush=True)
        return 3
    finally:
        stub.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

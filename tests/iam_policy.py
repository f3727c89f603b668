"""Just enough IAM to prove docs/deploy/iam.md's policies: an evaluator for identity policies
(Allow/Deny, Action and Resource wildcards, StringLike/StringEquals conditions), the S3
authorisation of a raw HTTP request (what AWS would check for it), and an S3 endpoint that
records every request on its way to the in-process moto server.

Not modelled (the docs' policies use none of it): NotAction/NotResource, policy variables,
operators other than StringLike/StringEquals, resource policies, SCPs, session policies."""

from __future__ import annotations

import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Decision = str  # "allow" | "deny" (explicit) | "implicit-deny"


@dataclass(frozen=True)
class Request:
    """One authorisation: an action on a resource with its condition keys."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f" {k}={v!r}" for k, v in self.context.items())
        return f"{self.action} {self.resource}{extra}"


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters (slashes too), ``?`` one character."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE if ignore_case else 0)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(
    condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]
) -> bool:
    for operator, tests in condition.items():
        if operator not in ("StringLike", "StringEquals"):
            raise ValueError(f"condition operator {operator} is not modelled")
        for key, wanted in tests.items():
            if key not in context:  # an absent key never matches a String* condition
                return False
            value = context[key]
            if operator == "StringEquals":
                ok = value in _listed(wanted)
            else:
                ok = any(_glob(w, False).match(value) for w in _listed(wanted))
            if not ok:
                return False
    return True


def _statement_matches(statement: Mapping[str, Any], request: Request) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal", "Principal"):
        if unsupported in statement:
            raise ValueError(f"{unsupported} is not modelled (identity policies only)")
    actions = _listed(statement["Action"])
    if not any(_glob(a, True).match(request.action) for a in actions):
        return False
    if not any(_glob(r, False).match(request.resource) for r in _listed(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), request.context)


def evaluate(policy: Mapping[str, Any], request: Request) -> Decision:
    """An explicit Deny wins over any Allow; nothing matching is an implicit deny."""
    decision = "implicit-deny"
    for statement in policy["Statement"]:
        if _statement_matches(statement, request):
            if statement["Effect"] == "Deny":
                return "deny"
            decision = "allow"
    return decision


# -- S3 requests --------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    """The request target as sent (path-style: /bucket/key?query), still percent-encoded."""
    headers: Mapping[str, str]
    body: bytes = b""


def s3_authorisations(request: HttpRequest) -> list[Request]:
    """What S3 authorises for one path-style REST request (the actions of the S3 service
    authorization reference; HeadObject is s3:GetObject, HeadBucket s3:ListBucket, each key of
    DeleteObjects s3:DeleteObject)."""
    parts = urlsplit(request.target)
    query = parse_qs(parts.query, keep_blank_values=True)
    bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    method = request.method
    if not key:
        if method == "POST" and "delete" in query:
            root = ET.fromstring(request.body)
            keys = [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]
            return [Request("s3:DeleteObject", f"{bucket_arn}/{k}") for k in keys]
        if method == "GET" and "location" in query:
            return [Request("s3:GetBucketLocation", bucket_arn)]
        if method == "GET" and set(query) <= {
            "list-type",
            "prefix",
            "delimiter",
            "continuation-token",
            "max-keys",
            "start-after",
            "encoding-type",
            "fetch-owner",
            "marker",
        }:
            context = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
            if "delimiter" in query:
                context["s3:delimiter"] = query["delimiter"][0]
            return [Request("s3:ListBucket", bucket_arn, context)]
        if method == "HEAD" and not query:
            return [Request("s3:ListBucket", bucket_arn)]
        raise AssertionError(f"unmapped bucket request {method} {request.target}")
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD") and not set(query) - {"partNumber", "versionId"}:
        return [Request("s3:GetObject", object_arn)]
    if method == "PUT" and not set(query) - {"partNumber", "uploadId"}:
        out = [Request("s3:PutObject", object_arn)]
        source = {k.lower(): v for k, v in request.headers.items()}.get("x-amz-copy-source")
        if source:
            out.append(Request("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/')}"))
        return out
    if method == "POST" and ("uploads" in query or "uploadId" in query):
        return [Request("s3:PutObject", object_arn)]
    if method == "DELETE" and "uploadId" in query:
        return [Request("s3:AbortMultipartUpload", object_arn)]
    if method == "DELETE" and not query:
        return [Request("s3:DeleteObject", object_arn)]
    raise AssertionError(f"unmapped object request {method} {request.target}")


class RecordingS3:
    """A second S3 endpoint on 127.0.0.1 in front of the same in-process moto backend, which
    records every request (method, target, headers, and the body of a DeleteObjects)."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.requests: list[HttpRequest] = []
        self._lock = threading.Lock()
        moto_app = DomainDispatcherApplication(create_backend_app)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            body = b""
            if environ["REQUEST_METHOD"] == "POST":
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
            headers = {
                k[5:].replace("_", "-").lower(): v
                for k, v in environ.items()
                if k.startswith("HTTP_")
            }
            target = environ.get("RAW_URI") or environ["PATH_INFO"]
            with self._lock:
                self.requests.append(HttpRequest(environ["REQUEST_METHOD"], target, headers, body))
            return moto_app(environ, start_response)

        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"

    @contextmanager
    def recording(self) -> Iterator[list[HttpRequest]]:
        """The requests made inside the block."""
        with self._lock:
            self.requests = []
        seen: list[HttpRequest] = []
        try:
            yield seen
        finally:
            with self._lock:
                seen.extend(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

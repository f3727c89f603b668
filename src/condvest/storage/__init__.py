"""Storage chosen by the lake URI's scheme: a path or file:// → local disk; s3:// → S3."""

from __future__ import annotations

from urllib.parse import urlparse

from condvest.errors import ConfigError
from condvest.settings import Settings
from condvest.storage.base import ObjectInfo, Storage, json_bytes, parquet_bytes
from condvest.storage.local import LocalStorage

__all__ = ["LocalStorage", "ObjectInfo", "Storage", "json_bytes", "open_storage", "parquet_bytes"]


def open_storage(uri: str, settings: Settings | None = None) -> Storage:
    """Open the lake at ``uri``."""
    if not uri or not uri.strip():
        raise ConfigError("lake URI is empty", hint="pass --lake ./lake or s3://bucket/prefix")
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":\\", ":/")):
        path = parsed.path if scheme == "file" else uri
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"lake URI {uri!r}: file:// URIs must be local (file:///path)")
        return LocalStorage(path)
    if scheme == "s3":
        from condvest.storage.s3 import S3Storage

        s3 = settings.s3 if settings is not None else None
        return S3Storage(
            uri,
            endpoint_url=s3.endpoint_url if s3 else None,
            region=s3.region if s3 else None,
            connect_timeout_s=s3.connect_timeout_s if s3 else 10.0,
            read_timeout_s=s3.read_timeout_s if s3 else 60.0,
            max_attempts=s3.max_attempts if s3 else 5,
        )
    raise ConfigError(
        f"lake URI scheme {scheme!r} in {uri!r} is not supported",
        hint="use a local path, file:///path or s3://bucket/prefix",
    )

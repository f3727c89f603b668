"""S3 storage through s3fs. A single PUT is atomic on S3, so no renames are ever used
(an S3 "move" is copy + delete and can leave both behind). Conditional writes use
``If-None-Match: *`` and ``If-Match: <etag>`` (HTTP 412 when the condition fails)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from condvest.errors import ConfigError, DeleteFailedError, NotFoundError, StorageError
from condvest.faults import count_write, delete_fault, kill_point
from condvest.storage.base import ObjectInfo, Storage

_MAX_PUT = 5 * 2**30
_DELETE_BATCH = 1000


def _client_error_code(exc: BaseException) -> str | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
        cur = cur.__cause__ or cur.__context__
    return None


class S3Storage(Storage):
    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        import s3fs

        rest = uri[len("s3://") :].strip("/")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ConfigError(f"lake URI {uri!r} names no bucket", hint="use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        client_kwargs: dict[str, Any] = {}
        if endpoint_url:
            client_kwargs["endpoint_url"] = endpoint_url
        if region:
            client_kwargs["region_name"] = region
        self.endpoint_url = endpoint_url
        # skip_instance_cache: settings differ per lake; use_listings_cache off: other writers
        # (shards, the fetch Lambda) change the bucket while we run.
        self.fs = s3fs.S3FileSystem(
            skip_instance_cache=True,
            use_listings_cache=False,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": connect_timeout_s,
                "read_timeout": read_timeout_s,
                "retries": {"max_attempts": max_attempts, "mode": "standard"},
            },
        )

    # -- helpers -----------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        if any(part in ("..", ".") for part in key.split("/")):
            raise StorageError(f"refusing key with a relative segment: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full_key: str) -> str:
        # ListObjectsV2 keys never include the bucket, so only the lake prefix is stripped
        # (a key may well start with a segment that equals the bucket's name).
        if self.prefix and full_key.startswith(self.prefix + "/"):
            return full_key[len(self.prefix) + 1 :]
        return full_key

    def _fail(self, action: str, key: str, exc: BaseException) -> StorageError:
        code = _client_error_code(exc)
        where = self.url(key)
        if code in ("NoSuchBucket",):
            return StorageError(
                f"bucket {self.bucket!r} does not exist", hint="create it or fix --lake"
            )
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageError(
                f"cannot {action} {where}: access denied", hint="check AWS credentials"
            )
        text = str(exc).split("\n", 1)[0]
        if (
            "Could not connect" in text
            or "connect" in type(exc).__name__.lower()
            or "Connect" in text
        ):
            endpoint = self.endpoint_url or "the S3 endpoint"
            return StorageError(
                f"cannot reach {endpoint} to {action} {where}",
                hint="check s3.endpoint_url and the network",
            )
        return StorageError(f"cannot {action} {where}: {text or type(exc).__name__}")

    def _call(self, action: str, key: str, method: str, **kwargs: Any) -> Any:
        try:
            return self.fs.call_s3(method, **kwargs)
        except FileNotFoundError as exc:
            # s3fs turns NoSuchBucket into FileNotFoundError too: a missing bucket is a broken
            # lake URI, never an absent object (state would silently read as empty).
            if _client_error_code(exc) == "NoSuchBucket":
                raise self._fail(action, key, exc) from None
            raise NotFoundError(f"{self.url(key)} does not exist") from None
        except (OSError, Exception) as exc:
            code = _client_error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(f"{self.url(key)} does not exist") from None
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise _Precondition() from None
            raise self._fail(action, key, exc) from None

    # -- interface ---------------------------------------------------------------------------
    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix, "list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                mtime = item["LastModified"]
                out.append(
                    ObjectInfo(
                        self._rel(item["Key"]),
                        int(item["Size"]),
                        mtime.astimezone(UTC) if isinstance(mtime, datetime) else mtime,
                        str(item.get("ETag", "")) or None,
                    )
                )
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        out.sort(key=lambda o: o.key)
        return out

    def list_dirs(self, prefix: str) -> list[str]:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        names: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full, "Delimiter": "/"}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list", prefix, "list_objects_v2", **kwargs)
            for cp in page.get("CommonPrefixes", []):
                names.append(cp["Prefix"][len(full) :].rstrip("/"))
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(names)

    def top_level(self) -> list[str]:
        # One page is enough to tell a lake from anything else (condvest writes a handful of
        # names at the root); a root of more than 1,000 names is not a lake anyway.
        full = self.prefix + "/" if self.prefix else ""
        page = self._call(
            "list", "", "list_objects_v2", Bucket=self.bucket, Prefix=full, Delimiter="/"
        )
        dirs = [cp["Prefix"][len(full) :] for cp in page.get("CommonPrefixes", [])]
        files = [item["Key"][len(full) :] for item in page.get("Contents", [])]
        return sorted(dirs + files)

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._call("stat", key, "head_object", Bucket=self.bucket, Key=self._key(key))
        except NotFoundError:
            return None
        return ObjectInfo(
            key, int(head["ContentLength"]), head["LastModified"].astimezone(UTC), head.get("ETag")
        )

    def read_versioned(self, key: str) -> tuple[bytes, str]:

        async def _get() -> tuple[bytes, str]:
            resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self._key(key))
            async with resp["Body"] as body:
                data = await body.read()
            return data, str(resp.get("ETag"))

        try:
            from fsspec.asyn import sync

            result: tuple[bytes, str] = sync(self.fs.loop, _get)
            return result
        except FileNotFoundError as exc:
            if _client_error_code(exc) == "NoSuchBucket":
                raise self._fail("read", key, exc) from None
            raise NotFoundError(f"{self.url(key)} does not exist") from None
        except (TimeoutError, OSError, Exception) as exc:
            if _client_error_code(exc) in ("NoSuchKey", "404"):
                raise NotFoundError(f"{self.url(key)} does not exist") from None
            raise self._fail("read", key, exc) from None

    def _put(self, key: str, data: bytes, **condition: str) -> tuple[bool, str | None]:
        """One PUT (the swap itself): (done, the new object's ETag as S3 answered it)."""
        if len(data) >= _MAX_PUT:
            raise StorageError(f"{self.url(key)}: object of {len(data)} bytes exceeds one PUT")
        kill_point("after-temp-write", key)  # S3 has no temp name: the PUT is the swap
        count_write()
        try:
            resp = self._call(
                "write",
                key,
                "put_object",
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                **condition,
            )
        except _Precondition:
            return False, None
        etag = resp.get("ETag") if isinstance(resp, dict) else None
        return True, str(etag) if etag else None

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(key, data)

    def create(self, key: str, data: bytes) -> bool:
        return self._put(key, data, IfNoneMatch="*")[0]

    def create_versioned(self, key: str, data: bytes) -> tuple[bool, str | None]:
        return self._put(key, data, IfNoneMatch="*")

    def replace(self, key: str, data: bytes, version: str) -> bool:
        return self.replace_versioned(key, data, version)[0]

    def replace_versioned(self, key: str, data: bytes, version: str) -> tuple[bool, str | None]:
        try:
            return self._put(key, data, IfMatch=version)
        except NotFoundError:
            return False, None

    def delete_many(self, keys: Iterable[str]) -> int:
        wanted = list(keys)
        for key in wanted:
            self._key(key)  # refuse a bad key before any batch is sent
        if wanted:
            count_write()
        failed: dict[str, str] = {}
        for start in range(0, len(wanted), _DELETE_BATCH):
            failed.update(self._delete_batch(wanted[start : start + _DELETE_BATCH]))
        if failed:
            raise DeleteFailedError(failed)
        return len(wanted)

    def _delete_batch(self, keys: list[str]) -> dict[str, str]:
        """Delete one batch; returns the keys not deleted with the reason (a failed request
        fails its whole batch; the next batch is still sent)."""
        failed: dict[str, str] = {}
        for key in keys:
            try:
                delete_fault(key)
            except PermissionError as exc:
                failed[key] = f"cannot delete {self.url(key)}: {exc.strerror}"
        send = [k for k in keys if k not in failed]
        if not send:
            return failed
        try:
            resp = self._call(
                "delete",
                send[0],
                "delete_objects",
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in send], "Quiet": True},
            )
        except StorageError as exc:
            return failed | {k: str(exc) for k in send}
        for error in resp.get("Errors") or []:
            key = self._rel(str(error.get("Key", "")))
            failed[key] = f"{error.get('Code')} {error.get('Message', '')}".strip()
        return failed

    def delete_unchanged(self, objects: Sequence[ObjectInfo]) -> list[str]:
        # DeleteObject with If-Match: the ETag is compared by S3 itself, atomically (412 when
        # the object was rewritten, 409 when a write races the delete). One request per key:
        # DeleteObjects would take per-object ETags too, but not every S3 implementation
        # honours them, and a condition silently ignored is a deleted correction.
        wanted = list(objects)
        for obj in wanted:
            self._key(obj.key)  # refuse a bad key before anything is deleted
        if wanted:
            count_write()

        failed: dict[str, str] = {}

        def one(obj: ObjectInfo) -> str | None:
            condition = {"IfMatch": obj.version} if obj.version else {}
            try:
                delete_fault(obj.key)
                self._call(
                    "delete",
                    obj.key,
                    "delete_object",
                    Bucket=self.bucket,
                    Key=self._key(obj.key),
                    **condition,
                )
            except NotFoundError:
                return None  # already gone
            except _Precondition:
                return obj.key
            except PermissionError as exc:
                failed[obj.key] = f"cannot delete {self.url(obj.key)}: {exc.strerror}"
            except StorageError as exc:  # the others still go (vacuum counts what went)
                failed[obj.key] = str(exc)
            return None

        with ThreadPoolExecutor(max_workers=16) as pool:
            kept = [key for key in pool.map(one, wanted) if key is not None]
        if failed:
            raise DeleteFailedError(failed, kept)
        return kept

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def fsspec(self) -> Any:
        return self.fs


class _Precondition(Exception):
    """Internal: a conditional PUT failed (412/409)."""

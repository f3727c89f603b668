"""Local-disk storage: temp file + rename for atomic writes, link() for create-if-absent, and a
directory flock() to make replace-if-unchanged a true compare-and-swap between processes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from condvest.core.layout import grave_key, temp_key
from condvest.errors import NotFoundError, StorageError
from condvest.faults import count_write, kill_point
from condvest.storage.base import ObjectInfo, Storage, new_token


def _version(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"


class LocalStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(
                f"lake {self.root} is a file, not a directory", hint="point --lake at a directory"
            )

    # -- helpers -----------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        key = key.lstrip("/")
        if any(part in ("..", ".") for part in key.split("/")):
            raise StorageError(f"refusing key with a relative segment: {key!r}")
        return self.root / key

    def _fail(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StorageError(
                f"cannot {action} {self._path(key)}: {reason}",
                hint="check the lake directory's permissions",
            )
        if exc.errno == errno.ENOSPC:
            return StorageError(f"cannot {action} {self._path(key)}: disk full")
        return StorageError(f"cannot {action} {self._path(key)}: {reason}")

    @contextlib.contextmanager
    def _dir_lock(self, directory: Path) -> Iterator[None]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _write_temp(self, key: str, data: bytes) -> Path:
        """``data`` under a new temporary name beside ``key``, durable (fdatasync) before the
        caller renames or links it into place."""
        path = self._path(key)
        tmp = self._path(temp_key(key, new_token()))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileNotFoundError:  # the first file of a new directory
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, flags, 0o666)
        except OSError as exc:
            raise self._fail("write", key, exc) from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                # The bytes (and the size needed to read them) are on disk before the rename
                # makes them visible: fdatasync skips only the timestamps fsync would also flush.
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # ours (O_EXCL): a partial temp file helps nobody
            raise self._fail("write", key, exc) from None
        kill_point("after-temp-write", key)
        count_write()
        return tmp

    # -- interface ---------------------------------------------------------------------------
    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        # S3 semantics: ``prefix`` is a string prefix of the key, so "a/b" also lists "a/bc/..."
        # (and "a/b/" does not). Walk from the deepest directory the prefix names, pruning
        # the top-level siblings that cannot match. scandir + one stat per file (no os.walk
        # and path re-joining): consolidate lists ~120,000 date files per run at seed scale.
        prefix = prefix.lstrip("/")
        base = self._path(prefix)
        if prefix == "" or prefix.endswith("/"):
            start, stem = base, ""
        else:
            start, stem = base.parent, base.name
        out: list[ObjectInfo] = []
        root_len = len(str(self.root)) + 1
        pending = [(str(start), stem)]
        while pending:
            directory, only = pending.pop()
            try:
                entries = os.scandir(directory)
            except OSError:  # gone, not a directory, unreadable: as os.walk, nothing listed
                continue
            with entries:
                for entry in entries:
                    try:
                        if entry.is_dir():
                            # like os.walk: a symlinked directory is not followed
                            if entry.name.startswith(only) and not entry.is_symlink():
                                pending.append((entry.path, ""))
                            continue
                        key = entry.path[root_len:].replace(os.sep, "/")
                        if not key.startswith(prefix):
                            continue
                        st = entry.stat()
                    except FileNotFoundError:  # deleted while listing
                        continue
                    mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                    out.append(ObjectInfo(key, st.st_size, mtime, _version(st)))
        out.sort(key=lambda o: o.key)
        return out

    def list_dirs(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        try:
            with os.scandir(base) as entries:
                return sorted(e.name for e in entries if e.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._fail("list", prefix, exc) from None

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            # "a/b" under a file "a" is absent, as on S3 (and as read_versioned says)
            return None
        except OSError as exc:
            raise self._fail("stat", key, exc) from None
        if not os.path.isfile(self._path(key)):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), _version(st))

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                st = os.fstat(handle.fileno())
                return handle.read(), _version(st)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{path} does not exist") from None
        except OSError as exc:
            raise self._fail("read", key, exc) from None

    def write_bytes(self, key: str, data: bytes) -> None:
        tmp = self._write_temp(key, data)
        try:
            os.replace(tmp, self._path(key))
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail("write", key, exc) from None

    def create(self, key: str, data: bytes) -> bool:
        tmp = self._write_temp(key, data)
        try:
            os.link(tmp, self._path(key))
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise self._fail("create", key, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def replace(self, key: str, data: bytes, version: str) -> bool:
        path = self._path(key)
        tmp = self._write_temp(key, data)
        try:
            with self._dir_lock(path.parent):
                try:
                    current = _version(os.stat(path))
                except FileNotFoundError:
                    return False
                if current != version:
                    return False
                os.replace(tmp, path)
                return True
        except OSError as exc:
            raise self._fail("replace", key, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def delete_many(self, keys: Iterable[str]) -> int:
        # refuse a bad key before deleting anything
        paths = [(key, self._path(key)) for key in keys]
        if paths:
            count_write()
        for key, path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._fail("delete", key, exc) from None
        return len(paths)

    def delete_unchanged(self, objects: Sequence[ObjectInfo]) -> list[str]:
        # rename() takes whatever is at the path at that instant, atomically, whoever writes
        # it (writers do not lock); only then is the version compared. A file that changed is
        # linked back (link() never clobbers: if yet another version landed meanwhile, the
        # one in hand is older than it and goes, as a plain overwrite would have dropped it).
        # A crash between the two leaves a grave; vacuum restores it if the key is still free.
        checked = [(obj, self._path(obj.key)) for obj in objects]
        if checked:
            count_write()
        kept: list[str] = []
        for obj, path in checked:
            grave = self._path(grave_key(obj.key, new_token()))
            try:
                os.rename(path, grave)
            except FileNotFoundError:
                continue  # already gone
            except OSError as exc:
                raise self._fail("delete", obj.key, exc) from None
            try:
                if obj.version is not None and _version(os.stat(grave)) != obj.version:
                    kept.append(obj.key)
                    with contextlib.suppress(FileExistsError):
                        os.link(grave, path)
                os.unlink(grave)
            except OSError as exc:
                raise self._fail("delete", obj.key, exc) from None
        return kept

    def url(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path:
        return self._path(key)

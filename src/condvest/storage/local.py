"""Local-disk storage: temp file + rename for atomic writes, link() for create-if-absent, and a
directory flock() to make replace-if-unchanged a true compare-and-swap between processes.

Nothing is followed out of the lake: a symbolic link below the lake root (a symlinked symbol
directory, a data.parquet that is a link, dangling or not), a directory where a file belongs and
any other irregular entry is an error naming it, never an absent object (its rows would
silently drop out of silver) and never a way to read or delete files elsewhere."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat as stat_mode
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from condvest.core.layout import grave_key, temp_key
from condvest.errors import DeleteFailedError, DiskFullError, NotFoundError, StorageError
from condvest.faults import count_write, delete_fault, kill_point, read_fault
from condvest.storage.base import ObjectInfo, Storage, new_token


def _version(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"


_FILE_SUFFIXES = (".parquet", ".json")
"""Every file condvest writes ends so; a directory named like that is in a file's place."""


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

    def _checked(self, key: str) -> Path:
        """The path of ``key``, refused when a directory on the way is a symbolic link."""
        path = self._path(key)
        self._no_links(key.lstrip("/").split("/")[:-1])
        return path

    def _no_links(self, parts: list[str]) -> None:
        """Refuse a symbolic link among the directories ``parts`` below the root (checked
        as far as they exist: the rest is created as real directories by a write)."""
        current = str(self.root)
        for part in parts:
            if not part:
                continue
            current = os.path.join(current, part)
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                raise self._fail("read", current[len(str(self.root)) + 1 :], exc) from None
            if stat_mode.S_ISLNK(mode):
                raise self._irregular(current, "is a symbolic link")
            if not stat_mode.S_ISDIR(mode):
                return  # a file where a directory belongs: the operation says "absent"

    def _irregular(self, path: str | Path, what: str) -> StorageError:
        return StorageError(
            f"{path} {what}: condvest reads and deletes only regular files inside the lake",
            hint="move it out of the lake, or put back the file condvest wrote there",
        )

    def _fail(self, action: str, key: str, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return StorageError(
                f"cannot {action} {self._path(key)}: {reason}",
                hint="check the lake directory's permissions",
            )
        if exc.errno == errno.ENOSPC:
            return DiskFullError(
                f"cannot {action} {self._path(key)}: disk full",
                hint="free space on the lake's disk; condvest vacuum deletes crashed temporaries "
                "first, before it needs to write anything",
            )
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
        path = self._checked(key)
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
        # A symbolic link or an irregular entry inside the listed part of the lake is an
        # error (see the module docstring), as is a directory that cannot be read.
        prefix = prefix.lstrip("/")
        base = self._path(prefix)
        if prefix == "" or prefix.endswith("/"):
            start, stem = base, ""
            self._no_links(prefix.split("/"))
        else:
            start, stem = base.parent, base.name
            self._no_links(prefix.split("/")[:-1])
        out: list[ObjectInfo] = []
        root_len = len(str(self.root)) + 1
        pending = [(str(start), stem)]
        while pending:
            directory, only = pending.pop()
            try:
                read_fault(directory)
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):  # gone, or a file: nothing here
                continue
            except OSError as exc:
                raise self._fail("list", directory[root_len:], exc) from None
            with entries:
                for entry in entries:
                    if not entry.name.startswith(only):
                        continue  # outside the prefix (only at its first level)
                    try:
                        found = self._listed(entry, root_len)
                    except FileNotFoundError:  # deleted while listing
                        continue
                    if found is None:
                        pending.append((entry.path, ""))
                    else:
                        out.append(found)
        out.sort(key=lambda o: o.key)
        return out

    def _listed(self, entry: os.DirEntry[str], root_len: int) -> ObjectInfo | None:
        """A regular file's ObjectInfo; None for a directory to descend into; an error for
        anything else (nothing is followed)."""
        if entry.is_symlink():
            raise self._irregular(entry.path, "is a symbolic link")
        if entry.is_dir(follow_symlinks=False):
            if entry.name.endswith(_FILE_SUFFIXES):
                raise self._irregular(entry.path, "is a directory, not a file")
            return None
        if not entry.is_file(follow_symlinks=False):
            raise self._irregular(entry.path, "is not a regular file")
        st = entry.stat(follow_symlinks=False)
        key = entry.path[root_len:].replace(os.sep, "/")
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), _version(st))

    def list_dirs(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        self._no_links(prefix.split("/"))
        names: list[str] = []
        try:
            read_fault(str(base))
            with os.scandir(base) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        raise self._irregular(entry.path, "is a symbolic link")
                    if entry.is_dir(follow_symlinks=False):
                        names.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise self._fail("list", prefix, exc) from None
        return sorted(names)

    def top_level(self) -> list[str]:
        names: list[str] = []
        try:
            with os.scandir(self.root) as entries:
                for entry in entries:
                    # a symlinked directory is not one of the lake's: listed as a plain name
                    is_dir = entry.is_dir(follow_symlinks=False)
                    names.append(entry.name + "/" if is_dir else entry.name)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._fail("list", "", exc) from None
        return sorted(names)

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._checked(key)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            # "a/b" under a file "a" is absent, as on S3 (and as read_versioned says)
            return None
        except OSError as exc:
            raise self._fail("stat", key, exc) from None
        if not self._check_regular(path, st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC), _version(st))

    def _check_regular(self, path: Path, mode: int) -> bool:
        """True for a regular file; False for a plain directory (not an object, as on S3);
        an error for a link, a directory named like a file, or anything else."""
        if stat_mode.S_ISREG(mode):
            return True
        if stat_mode.S_ISLNK(mode):
            raise self._irregular(path, "is a symbolic link")
        if stat_mode.S_ISDIR(mode):
            if path.name.endswith(_FILE_SUFFIXES):
                raise self._irregular(path, "is a directory, not a file")
            return False
        raise self._irregular(path, "is not a regular file")

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        path = self._checked(key)
        try:
            read_fault(str(path))
            # O_NOFOLLOW: a link (dangling or not) is refused by the kernel, never followed
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{path} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._irregular(path, "is a symbolic link") from None
            raise self._fail("read", key, exc) from None
        try:
            with open(fd, "rb", closefd=True) as handle:
                st = os.fstat(fd)
                if not self._check_regular(path, st.st_mode):
                    raise NotFoundError(f"{path} does not exist")
                return handle.read(), _version(st)
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
        return self.create_versioned(key, data)[0]

    def create_versioned(self, key: str, data: bytes) -> tuple[bool, str | None]:
        tmp = self._write_temp(key, data)
        try:
            # link() keeps the inode and its mtime: the temp file's version is the new file's
            version = _version(os.lstat(tmp))
            os.link(tmp, self._path(key))
            return True, version
        except FileExistsError:
            return False, None
        except OSError as exc:
            raise self._fail("create", key, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def replace(self, key: str, data: bytes, version: str) -> bool:
        return self.replace_versioned(key, data, version)[0]

    def replace_versioned(self, key: str, data: bytes, version: str) -> tuple[bool, str | None]:
        path = self._path(key)
        tmp = self._write_temp(key, data)
        try:
            with self._dir_lock(path.parent):
                try:
                    current = _version(os.lstat(path))
                except FileNotFoundError:
                    return False, None
                if current != version:
                    return False, None
                new = _version(os.lstat(tmp))  # rename() keeps the inode and its mtime
                os.replace(tmp, path)
                return True, new
        except OSError as exc:
            raise self._fail("replace", key, exc) from None
        finally:
            tmp.unlink(missing_ok=True)

    def delete_many(self, keys: Iterable[str]) -> int:
        # refuse a bad key before deleting anything
        paths = [(key, self._path(key)) for key in keys]
        if paths:
            count_write()
        failed: dict[str, str] = {}
        for key, path in paths:
            try:
                self._checked(key)
                delete_fault(key)
                os.unlink(path)  # never follows a link: a link found here is removed itself
            except (FileNotFoundError, NotADirectoryError):
                pass
            except StorageError as exc:
                failed[key] = str(exc)
            except OSError as exc:
                failed[key] = str(self._fail("delete", key, exc))
        if failed:
            raise DeleteFailedError(failed)
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
        failed: dict[str, str] = {}
        for obj, path in checked:
            try:
                if self._delete_one(obj, path):
                    kept.append(obj.key)
            except StorageError as exc:  # the others still go (vacuum counts what went)
                failed[obj.key] = str(exc)
        if failed:
            raise DeleteFailedError(failed, kept)
        return kept

    def _delete_one(self, obj: ObjectInfo, path: Path) -> bool:
        """delete_unchanged for one object: True when it was kept because it changed."""
        self._checked(obj.key)
        grave = self._path(grave_key(obj.key, new_token()))
        try:
            if not self._check_regular(path, os.lstat(path).st_mode):
                return False  # a plain directory: no object here
            delete_fault(obj.key)
            os.rename(path, grave)
        except (FileNotFoundError, NotADirectoryError):
            return False  # already gone
        except OSError as exc:
            raise self._fail("delete", obj.key, exc) from None
        try:
            changed = obj.version is not None and _version(os.lstat(grave)) != obj.version
            if changed:
                with contextlib.suppress(FileExistsError):
                    os.link(grave, path, follow_symlinks=False)
            os.unlink(grave)
        except OSError as exc:
            raise self._fail("delete", obj.key, exc) from None
        return changed

    def url(self, key: str) -> str:
        return str(self._path(key))

    def local_path(self, key: str) -> Path:
        return self._path(key)

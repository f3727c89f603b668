"""One error hierarchy. Every error carries the exit code the CLI uses and a message that names
the values involved and the fix. Messages must never contain secrets."""

from __future__ import annotations


class CondvestError(Exception):
    """Base class. ``exit_code`` 1 = a run failed, 2 = usage or configuration error."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(CondvestError):
    """A bad flag, date, symbol or option value given by the user."""

    exit_code = 2


class ConfigError(UsageError):
    """A bad configuration file, environment variable or setting."""


class InvalidSymbolError(UsageError):
    """A symbol that cannot be a path segment or a ticker."""


class StorageError(CondvestError):
    """The lake could not be read or written (permissions, network, corrupt object)."""


class DiskFullError(StorageError):
    """The lake's disk has no space left (local storage)."""


class NotFoundError(StorageError):
    """The object does not exist."""


class PreconditionFailed(StorageError):
    """A conditional write lost the race: the object exists, or changed since it was read."""


class CorruptFileError(StorageError):
    """A lake file exists but cannot be read as what it should be (never treated as absent)."""


class LockHeldError(CondvestError):
    """Another run holds the stage lock."""


class SourceError(CondvestError):
    """The upstream data source failed after its retry budget, or answered nonsense."""


class AuthError(SourceError):
    """The data source refused the credentials (no retry makes sense)."""

    exit_code = 2


class VerificationError(CondvestError):
    """A write was not swapped in because its verification failed (nothing was lost)."""


class DatabaseError(CondvestError):
    """PostgreSQL could not be reached or refused a write."""


class DeleteFailedError(StorageError):
    """Some keys of a batch delete could not be deleted; every other key was still tried.

    ``failed`` maps each key not deleted to the reason; ``kept`` lists the keys a conditional
    delete kept because they changed (as :meth:`Storage.delete_unchanged` returns them)."""

    def __init__(self, failed: dict[str, str], kept: list[str] | None = None) -> None:
        first, reason = next(iter(failed.items()))
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        super().__init__(f"could not delete {first}: {reason}{more}")
        self.failed = failed
        self.kept = kept or []

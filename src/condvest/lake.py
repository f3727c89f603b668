"""The front door: :func:`open_lake` and :class:`Lake` run every stage from Python.

The CLI (``condvest.cli``) and the Lambda handler (``condvest.aws``) are thin layers over this
module: each command parses its flags, calls one :class:`Lake` method and renders the result.
See docs/python-api.md for examples and docs/design.md for what the stages guarantee. The stage
methods come from :class:`condvest.lake_stages.LakeStages`, the read methods from
:class:`condvest.lake_read.LakeReads`."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any

from condvest.errors import UsageError
from condvest.jobs.base import DryRun
from condvest.jobs.context import DEADLINE, JobContext, new_run_id
from condvest.jobs.status import check_failed
from condvest.lake_read import LakeReads
from condvest.lake_stages import LakeStages
from condvest.lake_values import settings_overrides
from condvest.logging import register_secret
from condvest.settings import Settings, load_settings


def open_lake(
    uri: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    **settings: Any,
) -> Lake:
    """Open the lake at ``uri`` (a local path, ``file:///path`` or ``s3://bucket/prefix``).

    Settings come, highest first, from the keyword arguments, the environment
    (``CONDVEST_<SECTION>__<KEY>``), the TOML file ``config`` (default ``$CONDVEST_CONFIG`` or
    ``./condvest.toml``) and the defaults: the CLI's precedence, with keyword arguments in the
    place of flags. ``uri`` None means ``lake.uri`` from those settings.

    Overrides are flat, ``fetch__source="synthetic"``, or one mapping per section,
    ``fetch={"source": "synthetic"}``; an unknown name raises :class:`TypeError` and a bad
    value :class:`condvest.errors.ConfigError`.

    Use it as a context manager (``with open_lake(...) as lake:``), or call
    :meth:`Lake.close`: the lake owns its storage and database connection."""
    overrides = settings_overrides(settings)
    if uri is not None:
        if "uri" in overrides.get("lake", {}):
            raise TypeError("the lake URI is given twice: as uri and as lake__uri / lake=")
        overrides.setdefault("lake", {})["uri"] = os.fspath(uri)
    loaded = load_settings(
        config_path=Path(config) if config is not None else None, overrides=overrides
    )
    for secret in (loaded.polygon.api_key, loaded.postgres.dsn):
        if secret is not None:
            register_secret(secret.get_secret_value())  # never printed or logged in clear
    return Lake(JobContext.from_settings(loaded))


class Lake(LakeStages, LakeReads):
    """An open lake: one method per stage, returning the result the CLI renders.

    Each stage method takes keyword arguments named as the CLI's flags (``--max-backfill-days``
    is ``max_backfill_days``); dates may be :class:`datetime.date` or ``"YYYY-MM-DD"``, lists a
    sequence or ``"A,B"``. A failed stage returns a result with ``ok`` False (``exit_code``
    1), as the CLI exits 1; a refused call (bad value, lock held, clock behind) raises a
    :class:`condvest.errors.CondvestError` subclass whose ``exit_code`` the CLI would exit
    with. The read methods (``daily``, ``bars``, ``sql``, ...) come from
    :class:`condvest.lake_read.LakeReads` (docs/reading.md)."""

    def __init__(self, context: JobContext) -> None:
        """Wrap a job context (tests swap its ``clock``); :func:`open_lake` builds one."""
        self._ctx = context
        self._calls = 0
        self._closed = False

    # -- lifetime ----------------------------------------------------------------------------
    def __enter__(self) -> Lake:
        """``with open_lake(...) as lake:`` — the lake is closed when the block ends."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the lake, whether the block ended normally or raised (the error propagates)."""
        self.close()

    def close(self) -> None:
        """Release the database connection (if one was opened); safe to call twice."""
        self._ctx.close()
        self._closed = True

    def __repr__(self) -> str:
        state = " (closed)" if self._closed else ""
        return f"<condvest.Lake {self.uri}{state}>"

    @property
    def uri(self) -> str:
        """The lake's URI, as configured."""
        return self._ctx.settings.lake.uri

    @property
    def settings(self) -> Settings:
        """The settings in effect (defaults < config file < environment < overrides)."""
        return self._ctx.settings

    @property
    def context(self) -> JobContext:
        """The job context the stages run in (storage, calendar, clock, sinks)."""
        return self._ctx

    def _job(self) -> JobContext:
        """The context for the next call: each call after the first is a run of its own."""
        if self._closed:
            raise UsageError(f"the lake {self.uri} is closed", hint="open it again")
        self._calls += 1
        if self._calls > 1:
            self._ctx.run_id = new_run_id()
        deadline = DEADLINE.get()
        if deadline is not None:  # set by the Lambda handler around the call
            self._ctx.deadline = deadline
        return self._ctx


__all__ = ["DryRun", "Lake", "check_failed", "open_lake", "settings_overrides"]

"""The plumbing under :class:`agent_sessions.admin.SessionDatabase`: lifecycle and calls.

Every public method runs through :meth:`DatabaseView._run`, which refuses calls after
``aclose()``, connects and checks (or creates) the tables once, and translates driver errors.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .._lifecycle import AsyncClosing
from ..errors import SessionClosedError, SessionNotFoundError
from ..schema import DEFAULT_MESSAGES_TABLE, DEFAULT_SESSIONS_TABLE, TableNames
from .catalogue import Filters, SessionInfo, listing, to_info
from .db import Database

__all__ = ["DatabaseView"]

T = TypeVar("T")


class DatabaseView(AsyncClosing):
    """One database, opened for administration; see ``SessionDatabase`` for the arguments."""

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        sessions_table: str = DEFAULT_SESSIONS_TABLE,
        messages_table: str = DEFAULT_MESSAGES_TABLE,
        create: bool = False,
    ) -> None:
        self._db = Database(target, TableNames(sessions_table, messages_table), create=create)
        self._closed = False
        name = type(self).__name__
        self._finalizer = weakref.finalize(self, _warn_unclosed, name, self._db.label)
        self._finalizer.atexit = False

    @property
    def location(self) -> str:
        """The file path or URL (password hidden), for messages."""
        return self._db.label

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        return self._db.dialect

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for a server database."""
        return self._db.path

    @property
    def tables(self) -> TableNames:
        """The table names in use."""
        return self._db.names

    async def _run(self, method: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run a method's work: refuse after close, prepare the tables, translate errors."""
        if self._closed:
            raise SessionClosedError(f"{type(self).__name__}.{method}() was called after aclose()")
        await self._db.call(method, self._db.ensure_ready)
        return await self._db.call(method, work)

    async def _in_id_order(
        self, session_ids: Sequence[str] | None, method: str
    ) -> list[SessionInfo]:
        """The named sessions (all if None) in code point order, the same on every database.

        Raises:
            SessionNotFoundError: a named session does not exist.
        """

        async def work() -> list[SessionInfo]:
            async with self._db.engine.connect() as conn:
                rows = await conn.execute(listing(self._db, Filters(session_ids=session_ids)))
                return [to_info(row) for row in rows]

        infos = await self._run(method, work)
        if session_ids is not None:
            missing = sorted(set(session_ids) - {info.session_id for info in infos})
            if missing:
                raise SessionNotFoundError(missing, self.location)
        return sorted(infos, key=lambda info: info.session_id)

    async def aclose(self) -> None:
        """Release the database's connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        await self._db.aclose()


def _warn_unclosed(name: str, label: str) -> None:
    warnings.warn(
        f"{name}({label!r}) was never closed; use 'async with' or await aclose()",
        ResourceWarning,
        stacklevel=1,
    )

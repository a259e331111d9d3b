"""``AdvancedSQLiteSession``: the SDK's advanced session on a SQLite file (see the package)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agents.memory.session_settings import SessionSettings

from ...core import check_session_id
from ...schema import TableNames
from .._sqlite_connection import MEMORY
from ..sqlite import SQLiteFileSession, file_store
from .session import AdvancedSession
from .store import AdvancedSQLiteStore

__all__ = ["AdvancedSQLiteSession"]


class AdvancedSQLiteSession(AdvancedSession, SQLiteFileSession):
    """A drop-in for ``agents.extensions.memory.AdvancedSQLiteSession``: branches, turns, usage.

    Args:
        session_id: The conversation this object reads and writes.
        db_path: A file path, or ``":memory:"`` (the default) for a private in-memory database.
        create_tables: Accepted for compatibility; it changes nothing. The branch tables are
            named after ``messages_table`` and created on first use when missing (``CREATE
            TABLE IF NOT EXISTS``; a file that has them is not written to for this). The SDK's
            class with ``create_tables=False`` instead refuses (``ValueError``) a database
            whose tables a ``create_tables=True`` session has not created yet, even the
            default ``":memory:"``, because its tables are shared by every pair of tables in
            the file and must record which pair owns them. Ours belong to one pair by name, so
            there is nothing to claim, and code written for either setting works unchanged.
        logger: Receives this session's own records: warnings about user messages the turn
            queries cannot decode, and debug records of branch changes. The module's logger
            by default. Undecodable rows met by ``get_items`` and ``pop_item`` are reported on
            the ``agent_sessions`` logger, as for every session class.
        session_settings: Defaults for reads, such as ``SessionSettings(limit=50)``.
        **kwargs: ``sessions_table``, ``messages_table``, ``durable`` and ``strict``, as for
            :class:`~agent_sessions.SQLiteSession`.

    Raises:
        TypeError: an unknown keyword argument was given.

    Example:
        >>> from agents import Agent, Runner
        >>> async def chat() -> None:
        ...     async with AdvancedSQLiteSession(session_id="u1", db_path="chats.db") as session:
        ...         result = await Runner.run(Agent(name="a"), "Hi", session=session)
        ...         await session.store_run_usage(result)
        ...         await session.create_branch_from_turn(1, "retry")
    """

    def __init__(
        self,
        *,
        session_id: str,
        db_path: str | Path = MEMORY,
        create_tables: bool = False,
        logger: logging.Logger | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        check_session_id(session_id)
        sessions_table = kwargs.pop("sessions_table", "agent_sessions")
        messages_table = kwargs.pop("messages_table", "agent_messages")
        durable = bool(kwargs.pop("durable", True))
        strict = bool(kwargs.pop("strict", False))
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        store, lease = file_store(
            AdvancedSQLiteStore, db_path, TableNames(sessions_table, messages_table), durable
        )
        self.create_tables = create_tables
        self._logger = logger or logging.getLogger(__name__)
        self._advanced = store
        super().__init__(
            session_id,
            store,
            owns_store=lease is None,
            session_settings=session_settings,
            strict=strict,
            lease=lease,
        )

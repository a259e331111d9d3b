"""A drop-in for the SDK's ``AdvancedSQLiteSession``, with branches that copy nothing.

Items stay in the SDK's ``agent_messages`` rows (same codec, same row format). A branch is one
row saying which branch it forks from and below which item id it inherits that branch's
history, so creating a branch costs the same on a ten-item and a ten-thousand-item history, and
reads walk the chain of branches with bounded index range queries. The current branch is kept in
the database per session, so every session object on the file sees switches and new branches.
Turn queries count in SQL over the recorded item types; turn ``n`` is the ``n``-th user message
of the branch's visible history, the same number ``create_branch_from_turn`` takes.

Every item also has the SDK's ``message_structure`` row on the branch it was added to, and usage
lives in the SDK's ``turn_usage`` table, so the SDK's class reads a file of ours and ours reads
the SDK's (see ``docs/schema.md`` for what the SDK's class cannot see of a branch made here).

Because forks share their parent's rows, a pop, ``pop_turn``, branch clear or branch deletion
that would change what a fork inherits first gives the fork its own records of the rows it sees
from there on (a copy of the part between the change and the fork point), so every fork keeps
its history. ``clear_session()`` on ``main`` deletes the whole session, every branch included,
as the SDK does; branch ids are never reused in a session, as in the SDK.
"""

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
from .types import (
    BranchInfo,
    ConversationTurn,
    HistoryEntry,
    ItemKind,
    NoTurnUsage,
    SessionUsage,
    ToolUsage,
    TurnUsage,
)

__all__ = [
    "AdvancedSQLiteSession",
    "AdvancedSQLiteStore",
    "BranchInfo",
    "ConversationTurn",
    "HistoryEntry",
    "ItemKind",
    "NoTurnUsage",
    "SessionUsage",
    "ToolUsage",
    "TurnUsage",
]


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

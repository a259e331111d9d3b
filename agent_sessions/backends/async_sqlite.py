"""AsyncSQLiteSession: a drop-in for ``agents.extensions.memory.AsyncSQLiteSession``.

The SDK's class runs aiosqlite over the same two tables as its ``SQLiteSession``. Ours is our
:class:`~agent_sessions.backends.sqlite.SQLiteSession` under the SDK's name: the same constructor
and tables, the same shared store per file (one worker thread, group commits), so a file written
by either class is read by the other.
"""

from __future__ import annotations

from .sqlite import SQLiteSession

__all__ = ["AsyncSQLiteSession"]


class AsyncSQLiteSession(SQLiteSession):
    """A drop-in for ``agents.extensions.memory.AsyncSQLiteSession``: same arguments and tables.

    Every method is a coroutine, as on the SDK's class; ``close()`` may be awaited. See
    :class:`~agent_sessions.backends.sqlite.SQLiteSession` for the arguments, of which the SDK's
    are the first five (``session_id``, ``db_path``, ``sessions_table``, ``messages_table``,
    ``session_settings``).

    Example:
        >>> from agent_sessions import AsyncSQLiteSession
        >>> session = AsyncSQLiteSession("user-42", "chats.db")
    """

"""The SQL of a SQLite store's side tables: per-session state (and the archive, schema v3).

Each function runs on the store's worker connection; the writes open their own transaction
(``BEGIN IMMEDIATE``: the file's write lock), so a read-modify-write is never interleaved with
another writer's, in this process or another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..schema import TableNames
from ._sqlite_connection import transaction

__all__ = ["StateStatements", "clear_side_tables", "update_state", "write_state"]


class StateStatements:
    """The statements of the state and archive tables, formatted once from validated names."""

    def __init__(self, t: TableNames) -> None:
        state, archive = t.state, t.archive
        self.read = f"SELECT value FROM {state} WHERE session_id = ? AND name = ?"
        self.upsert = (
            f"INSERT INTO {state} (session_id, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (session_id, name) DO UPDATE SET value = excluded.value, "
            "updated_at = CURRENT_TIMESTAMP"
        )
        self.delete = f"DELETE FROM {state} WHERE session_id = ? AND name = ?"
        self.delete_session_state = f"DELETE FROM {state} WHERE session_id = ?"
        self.delete_session_archive = f"DELETE FROM {archive} WHERE session_id = ?"


def _put(
    conn: sqlite3.Connection, sql: StateStatements, sid: str, name: str, text: str | None
) -> None:
    if text is None:
        conn.execute(sql.delete, (sid, name))
    else:
        conn.execute(sql.upsert, (sid, name, text))


def write_state(
    sql: StateStatements, sid: str, name: str, text: str | None, conn: sqlite3.Connection
) -> None:
    """Store (or, for None, delete) one value in one transaction."""
    with transaction(conn):
        _put(conn, sql, sid, name, text)


def update_state(
    sql: StateStatements,
    sid: str,
    name: str,
    change: Callable[[str | None], str | None],
    conn: sqlite3.Connection,
) -> str | None:
    """Read, change and write one value in one write transaction; return the new text."""
    with transaction(conn):
        row = conn.execute(sql.read, (sid, name)).fetchone()
        new = change(None if row is None else row[0])
        _put(conn, sql, sid, name, new)
        return new


def clear_side_tables(conn: sqlite3.Connection, sql: StateStatements, sid: str) -> None:
    """Delete a session's state and archive, inside the caller's transaction."""
    conn.execute(sql.delete_session_state, (sid,))
    conn.execute(sql.delete_session_archive, (sid,))

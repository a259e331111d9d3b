"""The SQL of a SQLite store's side tables: per-session state (and the archive, schema v3).

Each function runs on the store's worker connection; the writes open their own transaction
(``BEGIN IMMEDIATE``: the file's write lock), so a read-modify-write is never interleaved with
another writer's, in this process or another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..schema import TableNames
from ..store import ArchiveBatch, ArchivedRow
from ._sqlite_connection import transaction

__all__ = [
    "StateStatements",
    "add_batch",
    "archived_rows",
    "clear_side_tables",
    "drop_batch",
    "update_state",
    "write_state",
]


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
        self.next_batch = f"SELECT COALESCE(MAX(batch), 0) + 1 FROM {archive} WHERE session_id = ?"
        self.archive = (
            f"INSERT INTO {archive} (session_id, batch, kind, role, message_data) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        self.archived = (
            f"SELECT batch, kind, role, message_data, archived_at FROM {archive} "
            "WHERE session_id = ? ORDER BY batch, id"
        )
        self.delete_batch = f"DELETE FROM {archive} WHERE session_id = ? AND batch = ?"


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


def add_batch(
    conn: sqlite3.Connection, sql: StateStatements, sid: str, batch: ArchiveBatch
) -> None:
    """Archive a batch under the session's next batch number, inside the caller's transaction."""
    number = int(conn.execute(sql.next_batch, (sid,)).fetchone()[0])
    rows = [(sid, number, batch.kind, "item", text) for text in batch.items]
    rows += [(sid, number, batch.kind, "summary", text) for text in batch.summary]
    conn.executemany(sql.archive, rows)


def archived_rows(rows: list[tuple[object, ...]]) -> list[ArchivedRow]:
    """The archive's fetched rows as typed rows."""
    return [ArchivedRow(int(str(b)), str(k), str(r), str(t), str(at)) for b, k, r, t, at in rows]


def drop_batch(sql: StateStatements, sid: str, batch: int, conn: sqlite3.Connection) -> None:
    """Delete one archive batch of a session, inside the caller's transaction."""
    conn.execute(sql.delete_batch, (sid, batch))

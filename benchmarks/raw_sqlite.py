"""The floor: the same SQL as a session layer, run directly on one ``sqlite3`` connection.

``RawSession`` has the four async methods of a session but does its work synchronously on the
event loop's thread (no worker thread, no validation, no locks). WAL mode with
``synchronous=FULL`` gives it the same durability as both session classes, so whatever a session
layer costs on top of SQLite is the distance to this floor.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["SCHEMA", "RawSession"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agent_sessions (
        session_id TEXT PRIMARY KEY,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS agent_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        message_data TEXT NOT NULL,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY (session_id) REFERENCES agent_sessions (session_id) ON DELETE CASCADE
    )""",
    "CREATE INDEX IF NOT EXISTS idx_agent_messages_session_id ON agent_messages (session_id, id)",
)
"""The SDK's table layout (shared by our ``SQLiteSession``)."""

_TOUCH = (
    "INSERT INTO agent_sessions (session_id) VALUES (?) "
    "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
)
_INSERT = "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)"
_READ_ALL = "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id"
_READ_LATEST = (
    "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id DESC LIMIT ?"
)
_POP = (
    "DELETE FROM agent_messages WHERE id = (SELECT id FROM agent_messages "
    "WHERE session_id = ? ORDER BY id DESC LIMIT 1) RETURNING message_data"
)


class RawSession:
    """A session-shaped wrapper over one ``sqlite3`` connection; synchronous inside."""

    def __init__(self, session_id: str, db_path: str) -> None:
        self.session_id = session_id
        self._conn: sqlite3.Connection | None = sqlite3.connect(db_path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            self._conn.execute(statement)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("RawSession is closed")
        return self._conn

    async def get_items(self, limit: int | None = None) -> list[Any]:
        if limit is None:
            rows = self.conn.execute(_READ_ALL, (self.session_id,)).fetchall()
        else:
            rows = self.conn.execute(_READ_LATEST, (self.session_id, limit)).fetchall()
            rows.reverse()
        return [json.loads(text) for (text,) in rows]

    async def add_items(self, items: list[Any]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_TOUCH, (self.session_id,))
        conn.executemany(_INSERT, [(self.session_id, json.dumps(item)) for item in items])
        conn.execute("COMMIT")

    async def pop_item(self) -> Any:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(_POP, (self.session_id,)).fetchone()
        conn.execute("COMMIT")
        return None if row is None else json.loads(row[0])

    async def clear_session(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM agent_messages WHERE session_id = ?", (self.session_id,))
        conn.execute("DELETE FROM agent_sessions WHERE session_id = ?", (self.session_id,))
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

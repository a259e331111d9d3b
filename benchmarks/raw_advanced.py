"""The floor of the advanced suite: our branch-aware SQL on one ``sqlite3`` connection, inline.

``RawAdvancedSession`` runs exactly the statements ``AdvancedSQLiteSession`` runs (it calls the
same private ``Chain`` and ``Writer`` objects, which only issue SQL) synchronously on the event
loop's thread: no worker thread, no validation, no session layer, ``json`` for the items. WAL
mode and ``synchronous=FULL`` give it the same durability, so the distance from ``ours`` to this
floor is what the session layer costs, and the distance from the SDK to it is the best any
session layer could do with this schema at this durability.
"""

from __future__ import annotations

import json
from typing import Any

from raw_sqlite import RawSession

from agent_sessions.backends._sqlite_connection import migrate
from agent_sessions.backends.advanced.chain import Chain
from agent_sessions.backends.advanced.sql import AdvancedStatements
from agent_sessions.backends.advanced.write import BaseStatements, Schema, Writer
from agent_sessions.schema import TableNames
from agent_sessions.serialization import JsonCodec
from agent_sessions.store import always

__all__ = ["RawAdvancedSession"]

_M, _S = "agent_messages", "agent_sessions"
_BASE = BaseStatements(
    touch_session=(
        f"INSERT INTO {_S} (session_id) VALUES (?) "
        "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
    ),
    insert=f"INSERT INTO {_M} (session_id, message_data) VALUES (?, ?)",
    insert_at=f"INSERT INTO {_M} (id, session_id, message_data) VALUES (?, ?, ?)",
    delete_row=f"DELETE FROM {_M} WHERE id = ?",
    delete_messages=f"DELETE FROM {_M} WHERE session_id = ?",
    delete_session=f"DELETE FROM {_S} WHERE session_id = ?",
)


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class RawAdvancedSession(RawSession):
    """A session-shaped wrapper over one connection and the advanced store's SQL; synchronous."""

    def __init__(self, session_id: str, db_path: str) -> None:
        super().__init__(session_id, db_path)
        migrate(self.conn, TableNames(_S, _M))  # the columns our stores add (provenance: v4)
        sql = AdvancedStatements(TableNames(_S, _M))
        self._chain = Chain(sql, JsonCodec())
        schema = Schema(sql, self._chain.classify_text)
        schema.ensure(self.conn)
        self._writer = Writer(sql, _BASE, self._chain, schema)

    async def get_items(self, limit: int | None = None) -> list[Any]:
        texts = self._chain.read_texts(self.conn, self.session_id, None, limit)
        texts.reverse()
        return [json.loads(text) for text in texts]

    async def add_items(self, items: list[Any]) -> None:
        texts = [json.dumps(item) for item in items]
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        self._writer.append(conn, self.session_id, texts)
        conn.execute("COMMIT")

    async def pop_item(self) -> Any:
        taken = self._writer.pop_through(self.conn, self.session_id, _decode, always)
        return taken[0].item if taken else None

    async def clear_session(self) -> None:
        self._writer.clear(self.conn, self.session_id)

    async def create_branch_from_turn(self, turn: int, branch_name: str | None = None) -> str:
        return self._writer.create_branch(self.conn, self.session_id, turn, branch_name)

    async def switch_to_branch(self, branch_id: str) -> None:
        self._writer.switch(self.conn, self.session_id, branch_id)

"""The archive of an advanced session: compaction and pruning of the current branch, kept.

The archive table is the plain stores' (``<messages>_archive``, see ``docs/schema.md``), one
per session whatever the branch; these statements run inside the branch swap's transaction, on
a sqlite3 connection or a SQLAlchemy bridge alike (``?`` parameters).
"""

from __future__ import annotations

from ...schema import TableNames
from ...store import ArchiveBatch, ArchivedRow
from .db import Connection

__all__ = ["add_batch", "archived_rows", "drop_batch"]


def add_batch(conn: Connection, tables: TableNames, session_id: str, batch: ArchiveBatch) -> None:
    """Archive ``batch`` under the session's next batch number (inside a transaction)."""
    table = tables.archive
    row = conn.execute(
        f"SELECT COALESCE(MAX(batch), 0) + 1 FROM {table} WHERE session_id = ?", (session_id,)
    ).fetchone()
    number = int(row[0])
    rows = [(session_id, number, batch.kind, "item", text) for text in batch.items]
    rows += [(session_id, number, batch.kind, "summary", text) for text in batch.summary]
    if rows:
        conn.executemany(
            f"INSERT INTO {table} (session_id, batch, kind, role, message_data) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def drop_batch(conn: Connection, tables: TableNames, session_id: str, batch: int) -> None:
    """Delete one archive batch of the session (inside a transaction)."""
    conn.execute(
        f"DELETE FROM {tables.archive} WHERE session_id = ? AND batch = ?", (session_id, batch)
    )


def archived_rows(conn: Connection, tables: TableNames, session_id: str) -> list[ArchivedRow]:
    """The session's archived rows, oldest batch first."""
    rows = conn.execute(
        f"SELECT batch, kind, role, message_data, archived_at FROM {tables.archive} "
        "WHERE session_id = ? ORDER BY batch, id",
        (session_id,),
    ).fetchall()
    return [ArchivedRow(int(b), str(k), str(r), str(t), str(at)[:19]) for b, k, r, t, at in rows]

"""The side tables of a pair: per-session state and the archive, where the database has them.

Sessions of ours keep them beside the history (schema v3, see ``docs/schema.md``); a database
only the SDK's classes wrote has neither, so every admin command looks before it touches them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import text

from ..errors import StorageError
from .db import Database, canonical_time
from .engine import Connection

__all__ = [
    "SIDE_KINDS",
    "ArchiveSize",
    "archive_size",
    "delete_side",
    "has_side_rows",
    "present_side_tables",
    "side_records",
    "write_side",
]


class ArchiveSize(NamedTuple):
    """How much of a session's history its archive holds (summaries not counted).

    Attributes:
        items: Archived items.
        batches: Compactions and archiving prunes they came from.
    """

    items: int
    batches: int


async def present_side_tables(db: Database) -> list[str]:
    """The state and archive tables of this pair the database has (state first)."""
    present = await db.table_names()
    return [name for name in (db.names.state, db.names.archive) if name in present]


async def archive_size(db: Database, session_id: str) -> ArchiveSize:
    """Count a session's archived items and batches (zero where there is no archive table)."""
    if db.names.archive not in await present_side_tables(db):
        return ArchiveSize(0, 0)
    query = text(
        f"SELECT COUNT(*), COUNT(DISTINCT batch) FROM {db.names.archive} "
        "WHERE session_id = :sid AND role = 'item'"
    )
    async with db.engine.connect() as conn:
        row = (await conn.execute(query, {"sid": session_id})).one()
    return ArchiveSize(int(row[0]), int(row[1]))


SIDE_KINDS = ("kv", "archived")
"""The export records of a session's side tables (format version 3), in the order listed."""


async def has_side_rows(db: Database, conn: Connection, present: list[str]) -> bool:
    """Whether any session of the pair has state or archived rows."""
    for table in present:
        found = await conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1"))
        if found.first() is not None:
            return True
    return False


async def side_records(
    db: Database, conn: Connection, session_id: str, present: list[str]
) -> list[dict[str, Any]]:
    """A session's state values and archived rows as export records (stored text unchanged)."""
    names, sid = db.names, {"sid": session_id}
    records: list[dict[str, Any]] = []
    if names.state in present:
        rows = await conn.execute(
            text(
                f"SELECT name, value, updated_at FROM {names.state} "
                "WHERE session_id = :sid AND value IS NOT NULL ORDER BY name"
            ),
            sid,
        )
        records += [
            {"type": "kv", "name": n, "value": v, "updated_at": canonical_time(at)}
            for n, v, at in rows
        ]
    if names.archive in present:
        rows = await conn.execute(
            text(
                f"SELECT batch, kind, role, message_data, archived_at FROM {names.archive} "
                "WHERE session_id = :sid ORDER BY batch, id"
            ),
            sid,
        )
        records += [
            {
                "type": "archived",
                "batch": int(b),
                "kind": k,
                "role": r,
                "data": d,
                "archived_at": canonical_time(at),
            }
            for b, k, r, d, at in rows
        ]
    records.sort(key=lambda record: SIDE_KINDS.index(record["type"]))  # kv first, stable
    return records


async def delete_side(db: Database, conn: Connection, session_id: str, present: list[str]) -> None:
    """Delete a session's state and archive (inside the caller's transaction)."""
    for table in present:
        await conn.execute(
            text(f"DELETE FROM {table} WHERE session_id = :sid"), {"sid": session_id}
        )


async def write_side(
    db: Database,
    conn: Connection,
    session_id: str,
    records: list[dict[str, Any]],
    *,
    present: list[str],
    now: datetime,
) -> None:
    """Write a session's side records (inside the caller's transaction).

    Raises:
        StorageError: the records need a table the database lacks (open it once with a
            session of this package, or import with ``create``); nothing is written.
    """
    names = db.names
    kv = [r for r in records if r["type"] == "kv"]
    archived = [r for r in records if r["type"] == "archived"]
    for needed, table in ((kv, names.state), (archived, names.archive)):
        if needed and table not in present:
            raise StorageError(
                f"{db.label} has no table {table} for the session's "
                f"{'state' if table == names.state else 'archive'}: open it once with a session "
                "of agent_sessions (schema version 3) first"
            )
    if kv:
        await conn.execute(
            text(
                f"INSERT INTO {names.state} (session_id, name, value, updated_at) "
                "VALUES (:sid, :name, :value, :at)"
            ),
            [
                {
                    "sid": session_id,
                    "name": r["name"],
                    "value": r["value"],
                    "at": db.stamp_value(r.get("updated_at"), now),
                }
                for r in kv
            ],
        )
    if archived:
        await conn.execute(
            text(
                f"INSERT INTO {names.archive} (session_id, batch, kind, role, message_data, "
                "archived_at) VALUES (:sid, :batch, :kind, :role, :data, :at)"
            ),
            [
                {
                    "sid": session_id,
                    "batch": r["batch"],
                    "kind": r["kind"],
                    "role": r["role"],
                    "data": r["data"],
                    "at": db.stamp_value(r.get("archived_at"), now),
                }
                for r in archived
            ],
        )

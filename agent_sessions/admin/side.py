"""The side tables of a pair: per-session state and the archive, where the database has them.

Sessions of ours keep them beside the history (schema v3, see ``docs/schema.md``); a database
only the SDK's classes wrote has neither, so every admin command looks before it touches them.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from .db import Database

__all__ = ["ArchiveSize", "archive_size", "present_side_tables"]


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

"""What the admin API knows of ``AdvancedSQLiteSession`` files: branch and usage tables.

The branch tables are named after the messages table (see ``backends/_advanced_sql.py``).
``show`` reads branches and token usage through the public session API; purges delete a
session's rows from these tables too, so no branch or usage row outlives its session.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ._admin_db import Database
from .schema import TableNames, validate_identifier

__all__ = [
    "AdvancedView",
    "branch_tables",
    "present_branch_tables",
    "read_advanced",
    "row_branches",
]

AdvancedView = dict[str, Any]
"""``branches`` (as ``list_branches`` returns them) and ``usage`` (``get_session_usage``)."""


def branch_tables(names: TableNames) -> list[str]:
    """The advanced session's own tables for a pair of table names, each keyed by session."""
    m = names.messages
    return [
        validate_identifier(f"{m}_{suffix}", "branch table name")
        for suffix in ("branch_of", "branches", "current", "usage")
    ]


async def present_branch_tables(db: Database) -> list[str]:
    """The advanced tables this database has (none unless an advanced session wrote to it)."""
    wanted = branch_tables(db.names)
    return [name for name in wanted if await db.has_tables(name)]


async def row_branches(db: Database, conn: AsyncConnection, session_id: str) -> dict[int, str]:
    """Which branch wrote each of a session's rows (rows the SDK wrote have none)."""
    branch_of = branch_tables(db.names)[0]
    query = text(f"SELECT message_id, branch_id FROM {branch_of} WHERE session_id = :sid")
    return {
        int(row_id): str(branch)
        for row_id, branch in await conn.execute(query, {"sid": session_id})
    }


async def read_advanced(db: Database, session_id: str) -> AdvancedView | None:
    """Branches and token usage of a session in an advanced SQLite file; None otherwise."""
    if not db.is_sqlite or db.path is None:
        return None
    if len(await present_branch_tables(db)) < len(branch_tables(db.names)):
        return None
    # Imported here: the advanced session pulls in the SDK, which only ``show`` needs.
    from .backends.advanced import AdvancedSQLiteSession  # noqa: PLC0415

    async with AdvancedSQLiteSession(
        session_id=session_id,
        db_path=db.path,
        sessions_table=db.names.sessions,
        messages_table=db.names.messages,
    ) as session:
        return {
            "branches": await session.list_branches(),
            "usage": await session.get_session_usage(),
        }

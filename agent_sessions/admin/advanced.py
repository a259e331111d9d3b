"""What the admin API knows of advanced sessions' databases: branch and usage tables.

The branch records are in the SDK's structure tables on a SQLite file, beside two of ours named
after the messages table, and all six are named after the messages table on a server (see
``backends/advanced/sql.py`` and ``docs/schema.md``). ``show`` reads branches and token usage
with the advanced sessions' own queries and never writes (:mod:`.branches`); export, import and
migrate move the rows (:mod:`.tree`). Purges delete a session's rows from these tables too, so
no branch or usage row outlives its session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from ..schema import TableNames, validate_identifier
from .branches import read_branch_tree
from .db import Database

if TYPE_CHECKING:
    from .engine import Connection

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
    """The advanced session's own tables for a pair of table names, each keyed by session.

    Its branch records and usage are in the SDK's structure tables (``message_structure``,
    ``turn_usage``, ...), or in copies named after the messages table when the SDK's belong to
    another pair of tables; :func:`present_branch_tables` finds which.
    """
    m = names.messages
    return [
        validate_identifier(f"{m}_{suffix}", "branch table name")
        for suffix in (
            "branches",
            "current",
            "structure",
            "turn_usage",
            "reservations",
            "generations",
        )
    ]


_SDK_TABLES = (
    "message_structure",
    "turn_usage",
    "branch_reservations",
    "session_clear_generations",
)


async def present_branch_tables(db: Database) -> list[str]:
    """The advanced tables of this pair the database has, structure table first when present.

    The SDK's shared tables count only on SQLite, and only if their foreign key names this
    pair's messages table (another pair's rows are never touched).
    """
    present = await db.table_names()
    found = [name for name in branch_tables(db.names) if name in present]
    if db.is_sqlite and _SDK_TABLES[0] in present:
        async with db.engine.connect() as conn:
            keys = await conn.execute(text(f"PRAGMA foreign_key_list({_SDK_TABLES[0]})"))
            owners = {str(row[2]).lower() for row in keys if str(row[3]).lower() == "message_id"}
        if owners == {db.names.messages.lower()}:
            found += [name for name in _SDK_TABLES if name in present]
    return sorted(found, key=lambda name: not name.endswith("structure"))


async def row_branches(db: Database, conn: Connection, session_id: str) -> dict[int, str]:
    """Which branch wrote each of a session's rows (rows a plain session wrote have none)."""
    structure = next((t for t in await present_branch_tables(db) if t.endswith("structure")), None)
    if structure is None:
        return {}
    # A row a fork holds a copy of has a record on each branch: the earliest wrote it.
    query = text(
        f"SELECT message_id, branch_id FROM {structure} WHERE session_id = :sid ORDER BY id DESC"
    )
    return {
        int(row_id): str(branch)
        for row_id, branch in await conn.execute(query, {"sid": session_id})
    }


async def read_advanced(db: Database, session_id: str) -> AdvancedView | None:
    """Branches and token usage of an advanced session, as its own calls return them.

    ``{"branches": list_branches(), "usage": get_session_usage()}``; None if the database has
    no branch tables. Nothing is written (see :mod:`.branches`).
    """
    tree = await read_branch_tree(db, session_id)
    return None if tree is None else tree.legacy_view()

"""What the admin API knows of ``AdvancedSQLiteSession`` files: branch and usage tables.

The branch records are in the SDK's structure tables, beside two of ours named after the
messages table (see ``backends/advanced/sql.py`` and ``docs/schema.md``).
``show`` reads branches and token usage over a read-only connection, with the advanced
session's own queries, and never writes: a file the SDK's class wrote lacks our two tables, which
then count as empty (no branches made by reference, no current branch recorded: ``main``).
Purges delete a session's rows from these tables too, so no branch or usage row outlives its
session.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from ..schema import TableNames, validate_identifier
from .db import Database

if TYPE_CHECKING:
    from ..backends.advanced.sql import AdvancedStatements
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
    """Branches and token usage of a session in an advanced SQLite file; None otherwise.

    Nothing is written: the file is opened read-only, and no table or index is created.
    """
    if not db.is_sqlite or db.path is None:
        return None
    if not any(t.endswith("structure") for t in await present_branch_tables(db)):
        return None
    return await asyncio.to_thread(_read_view, db.path, db.names, session_id)


def _read_view(path: Path, names: TableNames, session_id: str) -> AdvancedView:
    # The advanced backend's package imports the SDK: only `show` of an advanced file pays it.
    from ..backends.advanced.chain import Chain  # noqa: PLC0415
    from ..backends.advanced.sql import MAIN, AdvancedStatements, bind_existing  # noqa: PLC0415
    from ..backends.advanced.usage import session_totals  # noqa: PLC0415
    from ..serialization import JsonCodec  # noqa: PLC0415

    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30
    )
    try:
        sql = AdvancedStatements(names)
        bind_existing(conn, sql)
        _stand_in_for_missing(conn, sql)
        chain = Chain(sql, JsonCodec())
        conn.execute("BEGIN")  # one snapshot for every query below
        current = chain.head(conn, session_id).branch
        found = list(conn.execute(sql.branches, {"session": session_id}))
        if all(row[0] != MAIN for row in found):
            found.insert(0, (MAIN, None, 0))
        branches = []
        for branch, created_at, _order in found:
            messages, users = chain.size(conn, session_id, chain.resolve(conn, session_id, branch))
            branches.append(
                {
                    "branch_id": branch,
                    "message_count": messages,
                    "user_turns": users,
                    "created_at": created_at,
                    "is_current": branch == current,
                }
            )
        usage = session_totals(tuple(conn.execute(sql.session_usage, (session_id,)).fetchone()))
        return {"branches": branches, "usage": usage}
    finally:
        conn.close()


def _stand_in_for_missing(conn: sqlite3.Connection, sql: AdvancedStatements) -> None:
    """Give this connection empty TEMP copies of the pair's tables the file lacks.

    A file the SDK's class wrote has no table of ours; the queries read such a table as empty.
    TEMP tables live with the connection, never in the file.
    """
    present = {str(row[0]).lower() for row in conn.execute("SELECT name FROM sqlite_master")}
    for statement in sql.ddl(sql.n):
        head = statement.split("(", 1)[0].split()
        if head[:2] == ["CREATE", "TABLE"] and head[-1].lower() not in present:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))

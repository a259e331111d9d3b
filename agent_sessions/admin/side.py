"""The side tables of a pair: per-session state and the archive, where the database has them.

Sessions of ours keep them beside the history (schema v3, see ``docs/schema.md``); a database
only the SDK's classes wrote has neither, so every admin command looks before it touches them.
"""

from __future__ import annotations

from .db import Database

__all__ = ["present_side_tables"]


async def present_side_tables(db: Database) -> list[str]:
    """The state and archive tables of this pair the database has (state first)."""
    present = await db.table_names()
    return [name for name in (db.names.state, db.names.archive) if name in present]

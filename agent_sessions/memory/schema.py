"""The memories table: its layout and SQLite migrations (SQLAlchemy's is in ``table``).

Columns: ``id`` (row id), ``namespace`` (the stored form from ``keys``), ``key``,
``value`` (compact JSON text from ``serialization``), ``created_at`` / ``updated_at`` /
``expires_at`` (seconds since the epoch, UTC), ``ttl`` (seconds, or NULL), ``embedding``
(packed float32 unit vectors, or NULL). ``(namespace, key)`` is unique, and its index also
serves namespace-prefix ranges. The version of each memories table is kept in the package's
schema-version table under the table's name. This module imports no database driver.
"""

from __future__ import annotations

import zlib

__all__ = ["DEFAULT_MEMORY_TABLE", "index_name", "sqlite_statements"]

DEFAULT_MEMORY_TABLE = "agent_memories"
_LONGEST_NAME = 63


def sqlite_statements(table: str) -> list[list[str]]:
    """The SQLite migrations of a memories table: step ``i`` upgrades version ``i`` to ``i + 1``.

    ``table`` must already be a validated identifier.
    """
    return [
        [
            f"""CREATE TABLE IF NOT EXISTS {table} (
                id INTEGER PRIMARY KEY,
                namespace TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                expires_at REAL,
                ttl REAL,
                embedding BLOB,
                UNIQUE (namespace, key)
            )""",
            f"CREATE INDEX IF NOT EXISTS {index_name('idx_expires', table)} ON {table} "
            "(expires_at) WHERE expires_at IS NOT NULL",
            # Walks one namespace newest first, so a page of it reads only that page's rows.
            f"CREATE INDEX IF NOT EXISTS {index_name('idx_recent', table)} ON {table} "
            "(namespace, updated_at, id)",
        ]
    ]


def index_name(kind: str, table: str) -> str:
    """An index name within the 63-character limit of PostgreSQL and MariaDB."""
    name = f"{kind}_{table}"
    return (
        name
        if len(name) <= _LONGEST_NAME
        else f"{kind}_{table[:40]}_{zlib.crc32(table.encode()):08x}"
    )

"""The memories table: its layout and SQLite migrations (SQLAlchemy's is in ``table``).

Columns: ``id`` (row id), ``namespace`` (the stored form from ``keys``), ``key``,
``value`` (compact JSON text from ``serialization``), ``created_at`` / ``updated_at`` /
``expires_at`` (seconds since the epoch, UTC), ``ttl`` (seconds, or NULL), ``embedding``
(packed float32 unit vectors, or NULL), ``search_text`` (the words keyword search finds the
memory by, or NULL; version 2). ``(namespace, key)`` is unique, and its index also serves
namespace-prefix ranges. On SQLite, ``<table>_fts`` is an FTS5 index of ``search_text``
(porter stemmer), kept in step with the table by three triggers. The version of each memories
table is kept in the package's schema-version table under the table's name. This module
imports no database driver.
"""

from __future__ import annotations

import zlib

__all__ = [
    "DEFAULT_MEMORY_TABLE",
    "FULLTEXT_VERSION",
    "fts_table",
    "index_name",
    "sqlite_fulltext_statements",
    "sqlite_statements",
]

DEFAULT_MEMORY_TABLE = "agent_memories"
FULLTEXT_VERSION = 2
"""The schema version that added ``search_text`` and its full-text index."""
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
        ],
        # Then the caller fills search_text and runs sqlite_fulltext_statements (in that order:
        # the triggers must never see a row the index has not seen).
        [f"ALTER TABLE {table} ADD COLUMN search_text TEXT"],
    ]


def fts_table(table: str) -> str:
    """The name of a memories table's SQLite FTS5 index."""
    return f"{table}_fts"


def sqlite_fulltext_statements(table: str) -> list[str]:
    """The FTS5 index of ``search_text`` and the triggers that keep it in step (SQLite).

    An external-content index: it stores only the index, and reads the words from the table.
    The last statement indexes the rows already there. ``table`` must already be a validated
    identifier with a ``search_text`` column.
    """
    fts = fts_table(table)
    remove = (
        f"INSERT INTO {fts} ({fts}, rowid, search_text) VALUES ('delete', old.id, old.search_text);"
    )
    add = f"INSERT INTO {fts} (rowid, search_text) VALUES (new.id, new.search_text);"
    trigger = f"CREATE TRIGGER IF NOT EXISTS {{}} AFTER {{}} ON {table} BEGIN {{}} END"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(search_text, content='{table}', "
        "content_rowid='id', tokenize='porter unicode61')",
        trigger.format(index_name("ai", fts), "INSERT", add),
        trigger.format(index_name("ad", fts), "DELETE", remove),
        trigger.format(index_name("au", fts), "UPDATE OF search_text", f"{remove} {add}"),
        f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')",
    ]


def index_name(kind: str, table: str) -> str:
    """An index name within the 63-character limit of PostgreSQL and MariaDB."""
    name = f"{kind}_{table}"
    return (
        name
        if len(name) <= _LONGEST_NAME
        else f"{kind}_{table[:40]}_{zlib.crc32(table.encode()):08x}"
    )

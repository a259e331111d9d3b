"""The SQLAlchemy tables (the SDK's layout) and their migration, safe under many processes.

The tables have the SDK's names and columns, so ``agents.extensions.memory.SQLAlchemySession``
and ours read each other's rows. The differences, all compatible: an index on ``(session_id, id)``
(we order by id, never by clock), and on MySQL/MariaDB a bounded ``VARCHAR`` key (they refuse an
unbounded one) compared byte for byte (a binary, NO PAD collation: ``Ada``, ``ada`` and
``"ada "`` are three sessions), ``LONGTEXT`` rows (``TEXT`` stops at 64 KB) and ``DATETIME(6)``
times (``TIMESTAMP`` keeps whole seconds and ends in 2038).

Creating the schema takes a database-wide lock first (an advisory lock on PostgreSQL, a named
lock on MySQL/MariaDB, the write lock on SQLite), so many processes may run it at once. On SQLite
a creator that finds the file busy (another creator's transaction, or the switch to WAL on a new
file, which SQLite refuses at once instead of waiting) tries again until the busy timeout ends.
"""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from collections.abc import Callable

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..schema import VERSION_TABLE, TableNames, derived_name

__all__ = ["SessionTables", "begin_sqlite", "create_schema"]

_KEY = String().with_variant(String(255), "mysql", "mariadb")
_ROW = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class SessionTables:
    """The sessions, messages and schema-version tables for one pair of names."""

    def __init__(self, names: TableNames) -> None:
        self.names = names
        self.metadata = MetaData()
        now = text("CURRENT_TIMESTAMP")
        self.sessions = Table(
            names.sessions,
            self.metadata,
            Column("session_id", _KEY, primary_key=True),
            Column("created_at", TIMESTAMP(timezone=False), server_default=now, nullable=False),
            Column("updated_at", TIMESTAMP(timezone=False), server_default=now, nullable=False),
        )
        self.messages = Table(
            names.messages,
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column(
                "session_id",
                _KEY,
                ForeignKey(f"{names.sessions}.session_id", ondelete="CASCADE"),
                nullable=False,
            ),
            Column("message_data", _ROW, nullable=False),
            Column("created_at", TIMESTAMP(timezone=False), server_default=now, nullable=False),
            Index(f"idx_{names.messages}_session_time", "session_id", "created_at"),
            Index(f"idx_{names.messages}_session_seq", "session_id", "id"),
            sqlite_autoincrement=True,
        )
        # Our own tables beside the SDK's (schema v3): per-session state values, and the items
        # compaction and pruning took out of the history. No foreign key: state may exist
        # before a session's first item; clear and purge delete them with the session.
        self.extra = MetaData()
        self.state = Table(
            names.state,
            self.extra,
            Column("session_id", _KEY, primary_key=True),
            Column("name", _KEY, primary_key=True),
            Column("value", _ROW, nullable=True),
            Column("updated_at", TIMESTAMP(timezone=False), server_default=now, nullable=False),
        )
        self.archive = Table(
            names.archive,
            self.extra,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("session_id", _KEY, nullable=False),
            Column("batch", BigInteger, nullable=False),
            Column("kind", String(16), nullable=False),
            Column("role", String(16), nullable=False),
            Column("message_data", _ROW, nullable=False),
            Column("archived_at", TIMESTAMP(timezone=False), server_default=now, nullable=False),
            Index(derived_name(names.archive, "session"), "session_id", "batch", "id"),
            sqlite_autoincrement=True,
        )
        self.versions = Table(
            VERSION_TABLE,
            MetaData(),
            Column("name", String(255), primary_key=True),
            Column("version", Integer, nullable=False),
        )


def _v1_tables(conn: Connection, tables: SessionTables) -> None:
    # checkfirst: a database the SDK created already has the tables; only our index is added.
    tables.metadata.create_all(conn, checkfirst=True)


_BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")
"""Byte-for-byte collations, best first: MariaDB's and MySQL 8's ignore no trailing spaces."""


def binary_collation(conn: Connection) -> str:
    """The best byte-for-byte utf8mb4 collation this MySQL/MariaDB server has."""
    found = {
        str(row[0])
        for row in conn.execute(
            text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS "
                "WHERE COLLATION_NAME IN :names"
            ).bindparams(bindparam("names", expanding=True)),
            {"names": list(_BINARY_COLLATIONS)},
        )
    }
    return next(name for name in _BINARY_COLLATIONS if name in found)


def _v2_exact_keys_and_times(conn: Connection, tables: SessionTables) -> None:
    # MySQL/MariaDB only: the v1 key compared case- and trailing-space-insensitively, so "Ada"
    # and "ada" shared one history, and TIMESTAMP kept whole seconds until 2038. Each message
    # row kept the id its writer used, so after the change every history is its own again; a
    # session that had no record of its own (it shared one) gets one.
    if not _is_mysql(conn):
        return
    key = f"VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {binary_collation(conn)} NOT NULL"
    stamp = "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    s, m = tables.names.sessions, tables.names.messages
    # A key column cannot change while a foreign key uses it: drop the key, change both ends,
    # give every history its record, then restore the key. Each step is safe to redo.
    for (name,) in conn.execute(
        text(
            "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :m "
            "AND REFERENCED_TABLE_NAME = :s"
        ),
        {"m": m, "s": s},
    ).all():
        conn.execute(text(f"ALTER TABLE {m} DROP FOREIGN KEY `{name}`"))
    conn.execute(
        text(
            f"ALTER TABLE {s} MODIFY session_id {key}, MODIFY created_at {stamp}, "
            f"MODIFY updated_at {stamp}"
        )
    )
    conn.execute(text(f"ALTER TABLE {m} MODIFY session_id {key}, MODIFY created_at {stamp}"))
    conn.execute(
        text(
            f"INSERT IGNORE INTO {s} (session_id, created_at, updated_at) "
            f"SELECT session_id, MIN(created_at), MAX(created_at) FROM {m} GROUP BY session_id"
        )
    )
    conn.execute(
        text(
            f"ALTER TABLE {m} ADD FOREIGN KEY (session_id) REFERENCES {s} (session_id) "
            "ON DELETE CASCADE"
        )
    )


def _v3_state_and_archive(conn: Connection, tables: SessionTables) -> None:
    # The same tables SQLite's step 3 makes (schema.py), so either store opens the other's file.
    tables.extra.create_all(conn, checkfirst=True)
    if not _is_mysql(conn):
        return
    # Exact keys (binary collation) and microsecond times, as step 2 gave the SDK's tables.
    key = f"VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {binary_collation(conn)} NOT NULL"
    stamp = "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    names = tables.names
    conn.execute(
        text(
            f"ALTER TABLE {names.state} MODIFY session_id {key}, MODIFY name {key}, "
            f"MODIFY updated_at {stamp}"
        )
    )
    conn.execute(
        text(f"ALTER TABLE {names.archive} MODIFY session_id {key}, MODIFY archived_at {stamp}")
    )


def _v4_provenance(conn: Connection, tables: SessionTables) -> None:
    # Who wrote each row (issue 19), as SQLite's step 4 (schema.py) adds them: four nullable
    # columns the SDK's class neither names nor minds, and a unique key on a run's positions.
    names = tables.names
    m = names.messages
    have = {str(column["name"]) for column in inspect(conn).get_columns(m)}
    on_mysql = _is_mysql(conn)
    exact = ""
    if on_mysql:
        exact = f"VARCHAR(255) CHARACTER SET utf8mb4 COLLATE {binary_collation(conn)}"
    kinds = {
        "agent_name": exact or "TEXT",
        "run_id": exact or "TEXT",
        "run_position": "INTEGER",
        "item_digest": "VARCHAR(64)" if on_mysql else "TEXT",
    }
    for column, kind in kinds.items():
        if column not in have:
            conn.execute(text(f"ALTER TABLE {m} ADD COLUMN {column} {kind}"))
    if not on_mysql:
        conn.execute(
            text(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {names.run_index} "
                f"ON {m} (session_id, run_id, run_position) WHERE run_id IS NOT NULL"
            )
        )
        return
    indexes = {str(index["name"]) for index in inspect(conn).get_indexes(m)}
    if names.run_index not in indexes:  # MariaDB/MySQL: many NULLs allowed, no partial index
        conn.execute(
            text(f"CREATE UNIQUE INDEX {names.run_index} ON {m} (session_id, run_id, run_position)")
        )


MIGRATIONS: list[Callable[[Connection, SessionTables], None]] = [
    _v1_tables,
    _v2_exact_keys_and_times,
    _v3_state_and_archive,
    _v4_provenance,
]
"""Schema steps; the position of a step is the version it upgrades from."""


def _is_mysql(conn: Connection | AsyncConnection) -> bool:
    return conn.dialect.name in ("mysql", "mariadb")


def _lock_mysql(conn: Connection) -> None:
    conn.execute(text("SELECT GET_LOCK(:name, 60)"), {"name": VERSION_TABLE})


def _unlock_mysql(conn: Connection) -> None:
    conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": VERSION_TABLE})


def _migrate(conn: Connection, tables: SessionTables) -> None:
    if conn.dialect.name == "postgresql":
        key = zlib.crc32(VERSION_TABLE.encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    tables.versions.create(conn, checkfirst=True)
    versions = tables.versions
    name = tables.names.messages
    row = conn.execute(select(versions.c.version).where(versions.c.name == name)).first()
    version = 0 if row is None else int(row[0])
    for step in MIGRATIONS[version:]:
        step(conn, tables)
    if version >= len(MIGRATIONS):
        return
    if row is None:
        conn.execute(versions.insert().values(name=name, version=len(MIGRATIONS)))
    else:
        conn.execute(
            versions.update().where(versions.c.name == name).values(version=len(MIGRATIONS))
        )


async def begin_sqlite(conn: AsyncConnection) -> None:
    """Take SQLite's write lock up front so two creators queue instead of racing.

    With SQLAlchemy's documented SQLite recipe (an event listener that emits ``BEGIN`` on
    ``"begin"``) the transaction is already open, deferred: it is kept, and the first write
    takes the lock.
    """
    if not conn.in_transaction():
        await conn.begin()
    raw = await conn.get_raw_connection()
    if not getattr(raw.driver_connection, "in_transaction", False):
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


SQLITE_BUSY_WAIT = 30.0
"""Seconds a SQLite creator keeps trying on a busy file: the connections' busy timeout."""


def _sqlite_busy(exc: BaseException) -> bool:
    """Whether SQLite refused because another connection holds the file (worth waiting for)."""
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if not isinstance(original, sqlite3.OperationalError):
        return False
    message = str(original).lower()
    return "database is locked" in message or "database is busy" in message


async def create_schema(
    engine: AsyncEngine, tables: SessionTables, also: Callable[[Connection], None] | None = None
) -> None:
    """Create or upgrade the tables in one transaction, under a database-wide lock.

    PostgreSQL's advisory lock ends with the transaction. MySQL's named lock belongs to the
    connection, so it is taken before the transaction and released only after the commit: a
    second creator must not read the version table before the first one's row is visible.
    On SQLite, a busy file is waited for (up to :data:`SQLITE_BUSY_WAIT`), never an error: the
    whole creation is retried, each try being one transaction that either commits or rolls
    back. ``also`` creates more tables (an advanced session's) in the same transaction and lock.
    """
    if engine.dialect.name != "sqlite":
        await _create_schema_once(engine, tables, also)
        return
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + SQLITE_BUSY_WAIT, 0.005
    while True:
        try:
            await _create_schema_once(engine, tables, also)
        except (DBAPIError, sqlite3.OperationalError) as exc:
            if not _sqlite_busy(exc) or loop.time() + delay > deadline:
                raise
        else:
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def _create_schema_once(
    engine: AsyncEngine, tables: SessionTables, also: Callable[[Connection], None] | None
) -> None:
    async with engine.connect() as conn:
        if _is_mysql(conn):
            await conn.run_sync(_lock_mysql)
            await conn.commit()
        try:
            if conn.dialect.name == "sqlite":
                await begin_sqlite(conn)
            await conn.run_sync(_migrate, tables)
            if also is not None:
                await conn.run_sync(also)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        finally:
            if _is_mysql(conn):
                await conn.run_sync(_unlock_mysql)
                await conn.commit()

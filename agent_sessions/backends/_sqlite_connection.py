"""Opening, configuring and locking a stdlib ``sqlite3`` connection for a worker thread.

Waiting for a lock is done here rather than by SQLite's busy handler: SQLite sleeps 1, 2, 5 ...
up to 100 ms between attempts, so a writer keeps sleeping long after the lock came free and
twenty writers on one file see stalls of a second. Our connections use a busy timeout of zero and
retry a refused lock after a short randomized pause (0.1 ms, doubling to 2 ms), until the
store's ``busy_timeout`` runs out. Only work that has not changed anything yet is retried: a
transaction is refused at ``BEGIN IMMEDIATE``, before its first write.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import StorageUnavailableError
from ..schema import SQLITE_MIGRATIONS, VERSION_TABLE, TableNames

__all__ = ["MEMORY", "ReaderSlot", "open_connection", "retry_busy", "transaction"]

T = TypeVar("T")
MEMORY = ":memory:"
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0001, 0.002


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def retry_busy(
    call: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection, timeout: float
) -> T:
    """Run ``call(conn)``, running it again while the database is busy, for up to ``timeout`` s.

    ``call`` must leave nothing changed when it fails busy (true of a read, and of a write
    transaction, which is refused at its first statement).
    """
    deadline = time.monotonic() + timeout
    pause = _FIRST_PAUSE
    while True:
        try:
            return call(conn)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause * (0.5 + random.random()))  # noqa: S311 - jitter, not cryptography
        pause = min(pause * 2, _LONGEST_PAUSE)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Take the write lock at the first statement; commit on success, roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _schema_version(conn: sqlite3.Connection, tables: TableNames) -> int:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute(
        f"SELECT version FROM {VERSION_TABLE} WHERE name = ?", (tables.messages,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _migrate(conn: sqlite3.Connection, tables: TableNames) -> None:
    if _schema_version(conn, tables) >= len(SQLITE_MIGRATIONS):
        return
    with transaction(conn):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
            "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        version = _schema_version(conn, tables)  # another process may have migrated meanwhile
        for step in SQLITE_MIGRATIONS[version:]:
            for statement in step(tables):
                conn.execute(statement)
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} (name, version) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (tables.messages, len(SQLITE_MIGRATIONS)),
        )


def _configure(conn: sqlite3.Connection, path: str, durable: bool, tables: TableNames) -> None:
    if path != MEMORY:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    _migrate(conn, tables)


class ReaderSlot:
    """Hands the event loop a read-only connection, opened by the worker once the tables exist."""

    def __init__(self) -> None:
        self.connection: sqlite3.Connection | None = None

    def close(self) -> None:
        """Close the reader, if one was handed over."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


def open_connection(
    path: str, tables: TableNames, durable: bool, busy_timeout: float, reader: ReaderSlot
) -> sqlite3.Connection:
    """Open the worker's connection: WAL, the chosen durability, and an up-to-date schema.

    For a file, also opens a read-only connection with a zero busy timeout into ``reader``.

    Raises:
        StorageUnavailableError: the file cannot be opened or set up.
    """
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageUnavailableError(f"cannot open SQLite database {path!r}: {exc}") from exc
    try:
        retry_busy(lambda c: _configure(c, path, durable, tables), conn, busy_timeout)
        if path != MEMORY:
            read_only = sqlite3.connect(
                path, timeout=0, isolation_level=None, check_same_thread=False
            )
            read_only.execute("PRAGMA query_only=ON")
            reader.connection = read_only
    except sqlite3.Error as exc:
        conn.close()
        raise StorageUnavailableError(f"cannot set up SQLite database {path!r}: {exc}") from exc
    return conn

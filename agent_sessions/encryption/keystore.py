"""Key stores: where ``EncryptedSession`` keeps each session's wrapped data key.

With a key store, every session is encrypted under its own random data key, and only that key,
wrapped (encrypted) by a master key, is kept here. Deleting it (:meth:`KeyStore.delete`, or
``EncryptedSession.shred()``) makes every copy of the session's ciphertext unreadable, backups of
the data included, while other sessions are untouched. For that to hold, the key store must live
apart from the data: another file or database, not in the data's backups, and with backups of
its own kept only as long as shredded keys may be remembered.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._lifecycle import AsyncClosing
from .._worker import ConnectionWorker
from ..errors import SessionClosedError, StorageError

__all__ = ["KeyStore", "MemoryKeyStore", "SQLiteKeyStore"]


@runtime_checkable
class KeyStore(Protocol):
    """Holds one wrapped data key per session id. Records are opaque ASCII strings."""

    async def load(self, session_id: str) -> str | None:
        """Return the session's record, or None if it has none (never made, or shredded)."""
        ...

    async def create(self, session_id: str, record: str) -> str:
        """Store ``record`` unless the session has one already; return the one that is stored.

        Two processes creating a session's key at once must end up with the same key.
        """
        ...

    async def replace(self, session_id: str, record: str) -> None:
        """Overwrite the session's record (re-wrapped under a newer master key)."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session's record for good; return whether there was one."""
        ...

    async def aclose(self) -> None:
        """Release the store's resources; idempotent."""
        ...


class MemoryKeyStore(AsyncClosing):
    """A key store in a dict: for tests, and for data that must not outlive the process."""

    def __init__(self) -> None:
        self._records: dict[str, str] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<MemoryKeyStore sessions={len(self._records)} records=<redacted> {state}>"

    def _open(self) -> dict[str, str]:
        if self._closed:
            raise SessionClosedError("MemoryKeyStore is closed")
        return self._records

    async def load(self, session_id: str) -> str | None:
        """Return the session's record, or None."""
        return self._open().get(session_id)

    async def create(self, session_id: str, record: str) -> str:
        """Store ``record`` unless one exists; return the stored one."""
        return self._open().setdefault(session_id, record)

    async def replace(self, session_id: str, record: str) -> None:
        """Overwrite the session's record."""
        self._open()[session_id] = record

    async def delete(self, session_id: str) -> bool:
        """Forget the session's record; return whether there was one."""
        return self._open().pop(session_id, None) is not None

    async def aclose(self) -> None:
        """Refuse later calls; idempotent."""
        self._closed = True


_TABLE = "agent_session_keys"


def _create_private(path: str) -> None:
    """Create the key file readable and writable by its owner only, unless it exists."""
    if path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _connect(path: str) -> sqlite3.Connection:
    # SQLite gives its journal the database file's permissions, so the journal is 0600 too.
    _create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # A rollback journal, not WAL: WAL would keep a deleted key's old page in the -wal file until
    # a checkpoint. secure_delete overwrites the key's bytes in the file instead of freeing them.
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {_TABLE} (session_id TEXT PRIMARY KEY, record TEXT NOT NULL, "
        "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
    )
    return conn


class SQLiteKeyStore(AsyncClosing):
    """The default key store: one SQLite file, kept apart from the session data.

    Writes are durable (``synchronous=FULL``), and a deleted key is overwritten in the file
    (``secure_delete``, and no write-ahead log to keep an old copy). Keep this file out of the
    data's backups. A new file is created readable and writable by its owner only (0600); an
    existing file keeps its permissions, so to share keys between users on purpose, create the
    file first with the mode (and group) they need.

    Args:
        path: The key file, e.g. ``"keys.db"``; created if missing.

    Example:
        >>> from agent_sessions import EncryptedSession, SQLiteSession
        >>> keys = SQLiteKeyStore("keys.db")
        >>> session = EncryptedSession(
        ...     "u1", SQLiteSession("u1", "chats.db"), "<a Fernet key>", key_store=keys
        ... )
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._worker: ConnectionWorker[sqlite3.Connection] = ConnectionWorker(
            lambda: _connect(str(path)), sqlite3.Connection.close, label=f"SQLiteKeyStore({path!r})"
        )

    async def _run(self, what: str, sql: str, params: tuple[str, ...]) -> list[tuple[str, ...]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, ...]]:
            return conn.execute(sql, params).fetchall()

        try:
            return await self._worker.run(run)
        except sqlite3.Error as exc:
            raise StorageError(f"key store {what} on {str(self.path)!r} failed: {exc}") from exc

    async def load(self, session_id: str) -> str | None:
        """Return the session's record, or None."""
        rows = await self._run(
            "load", f"SELECT record FROM {_TABLE} WHERE session_id = ?", (session_id,)
        )
        return rows[0][0] if rows else None

    async def create(self, session_id: str, record: str) -> str:
        """Store ``record`` unless one exists; return the stored one (one statement, atomic)."""
        rows = await self._run(
            "create",
            f"INSERT INTO {_TABLE} (session_id, record) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET record = record RETURNING record",
            (session_id, record),
        )
        return rows[0][0]

    async def replace(self, session_id: str, record: str) -> None:
        """Overwrite the session's record."""
        await self._run(
            "replace",
            f"INSERT INTO {_TABLE} (session_id, record) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET record = excluded.record",
            (session_id, record),
        )

    async def delete(self, session_id: str) -> bool:
        """Forget the session's record; return whether there was one."""
        rows = await self._run(
            "delete",
            f"DELETE FROM {_TABLE} WHERE session_id = ? RETURNING session_id",
            (session_id,),
        )
        return bool(rows)

    def __repr__(self) -> str:
        return f"<SQLiteKeyStore path={str(self.path)!r}>"

    def close(self) -> None:
        """Close the file; idempotent. Blocks until queued calls are done."""
        self._worker.close()

    async def aclose(self) -> None:
        """Close the file without blocking the loop; idempotent."""
        await self._worker.aclose()

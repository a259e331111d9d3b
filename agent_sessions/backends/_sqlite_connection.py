"""Opening, configuring and locking a stdlib ``sqlite3`` connection for a worker thread.

Waiting for the write lock is done here rather than by SQLite's busy handler, which sleeps 1, 2,
5 ... up to 100 ms between attempts: a writer keeps sleeping long after the lock came free, and
twenty writers on one file stall for up to a second. Instead:

- Our writers of one file first queue on an advisory lock (``flock``) on ``<database>-lock``,
  which the kernel hands to the next waiter the moment it is released, across threads and
  processes alike. It is held only for the length of one transaction, and the kernel drops it
  if its process dies.
- Writers that do not take that lock (the SDK's classes, other tools) are waited for by
  retrying a refused ``BEGIN IMMEDIATE`` after a randomized pause (0.5 ms, doubling to 10 ms)
  until the store's ``busy_timeout`` runs out. Only work that has not changed anything is
  retried: a transaction is refused at ``BEGIN IMMEDIATE``, before its first write.

A database file this module creates is readable and writable by its owner only (``0600``; SQLite
gives its ``-wal`` and ``-shm`` files the same mode, and the lock file gets it too). A file that
already exists keeps its mode: to share one between users, create it first with the mode and
group they need. Every commit first checks that the path still names the file the connection
opened, so a database deleted or replaced while open is reported instead of written to and lost.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import DatabaseFileGoneError, StorageUnavailableError
from ..schema import SQLITE_MIGRATIONS, VERSION_TABLE, TableNames

__all__ = [
    "MEMORY",
    "ReaderSlot",
    "WriterConnection",
    "close_connections",
    "create_owner_only",
    "file_identity",
    "migrate",
    "open_connection",
    "open_worker_connection",
    "retry_busy",
    "retry_undecodable",
    "transaction",
]

T = TypeVar("T")
MEMORY = ":memory:"
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0005, 0.010
_OWNER_ONLY = 0o600


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


def _tolerant_text(data: bytes) -> str | bytes:
    """A ``text_factory`` that returns TEXT which is not UTF-8 as bytes, for the codec to refuse."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def retry_undecodable(call: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    """Run ``call(conn)``; if a TEXT value is not UTF-8, run it again reading such values as bytes.

    sqlite3 fails the whole query on one such value; read again, its row is a ``bytes`` value
    that the codec reports as undecodable, so the session's other rows stay readable. ``call``
    must leave nothing changed when it fails (a read, or a transaction, which rolls back).
    """
    try:
        return call(conn)
    except sqlite3.OperationalError as exc:
        if "decode to UTF-8" not in str(exc):
            raise
    conn.text_factory = _tolerant_text
    try:
        return call(conn)
    finally:
        conn.text_factory = str


def create_owner_only(path: str) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (SQLite opens it as a new database).

    A link at ``path`` is resolved first: SQLite follows it, so the file it names is the one
    to create.
    """
    try:
        fd = os.open(os.path.realpath(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, _OWNER_ONLY)
    except OSError:
        return  # it exists, or it cannot be made: then sqlite3.connect reports why
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _OWNER_ONLY)  # whatever the umask
    finally:
        os.close(fd)


def file_identity(path: str) -> tuple[int, int] | None:
    """The file's (device, inode), or None if it does not exist: a replaced file gets a new one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


if sys.platform == "win32":  # pragma: no cover - no flock; writers rely on the retries alone

    def _open_lock_file(path: str) -> int | None:
        return None

    def _hold(fd: int, exclusive: bool) -> None:
        pass

else:
    import fcntl

    def _open_lock_file(path: str) -> int | None:
        lock = f"{path}-lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, _OWNER_ONLY)  # no link either
        except FileExistsError:
            pass
        except OSError:
            return None  # a read-only directory: fall back to the retries
        else:
            with contextlib.suppress(OSError):  # the database's mode: its sharers lock too
                os.fchmod(fd, os.stat(path).st_mode & 0o666)
            return fd
        try:
            return os.open(lock, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None  # not ours to write: fall back to the retries

    def _hold(fd: int, exclusive: bool) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)


class WriterConnection(sqlite3.Connection):
    """The worker's connection, with the lock file that queues the writers of its database."""

    lock_fd: int | None = None
    path: str = MEMORY
    identity: tuple[int, int] | None = None
    """The device and inode of the file opened; None for ``:memory:``."""

    def check_file(self) -> None:
        """Raise if the path no longer names the file this connection has open.

        Raises:
            DatabaseFileGoneError: the file was deleted, or another file put in its place.
        """
        if self.identity is not None and file_identity(self.path) != self.identity:
            raise DatabaseFileGoneError(
                f"SQLite database {self.path!r} was deleted or replaced while open; the "
                "write was refused, as it would be lost with the old file (open it again)"
            )

    def close(self) -> None:
        """Close the connection and its lock file."""
        super().close()
        fd, self.lock_fd = self.lock_fd, None
        if fd is not None:
            os.close(fd)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Take the write lock at the first statement; commit on success, roll back on any error."""
    lock_fd = getattr(conn, "lock_fd", None)
    if lock_fd is not None:
        _hold(lock_fd, exclusive=True)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            if isinstance(conn, WriterConnection):
                conn.check_file()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        if lock_fd is not None:
            _hold(lock_fd, exclusive=False)


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


def migrate(conn: sqlite3.Connection, tables: TableNames) -> None:
    """Bring a file's tables to the newest schema version, once, under the write lock."""
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
    migrate(conn, tables)


class ReaderSlot:
    """Hands the event loop a read-only connection, opened by the worker once the tables exist.

    The store may be closed while its worker is still opening the file: a reader handed over
    after :meth:`close` is closed at once instead of being left open.

    One thread at a time may use the reader (:meth:`take` and :meth:`give_back`): a store shared
    by sessions in several threads (several event loops) must not run one connection's
    statements from two threads at once, which sqlite3 does not make safe (a cached statement
    can be reset under another thread's feet). While one thread reads, the others' reads go
    through the worker instead.
    """

    def __init__(self) -> None:
        self.connection: sqlite3.Connection | None = None
        self._closed = False
        self._user: int | None = None  # the thread reading now
        self._depth = 0  # its reads in progress (tasks of one loop interleave)
        # Guards the hand-over (worker thread) against close (event loop thread).
        self._lock = threading.Lock()

    def take(self) -> sqlite3.Connection | None:
        """The reader for this thread, or None if there is none or another thread is reading.

        Every connection returned must be given back with :meth:`give_back`.
        """
        me = threading.get_ident()
        with self._lock:
            connection = self.connection
            if connection is None or (self._user is not None and self._user != me):
                return None
            self._user = me
            self._depth += 1
            return connection

    def give_back(self) -> None:
        """End one read that :meth:`take` started."""
        with self._lock:
            self._depth -= 1
            if not self._depth:
                self._user = None

    def hand_over(self, connection: sqlite3.Connection) -> None:
        """Publish the reader, or close it if the slot was closed meanwhile."""
        with self._lock:
            if not self._closed:
                self.connection = connection
                return
        connection.close()

    def close(self) -> None:
        """Close the reader, if one was handed over, and refuse later ones; idempotent."""
        with self._lock:
            self._closed = True
            connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


def close_connections(reader: ReaderSlot, connection: sqlite3.Connection) -> None:
    """Close a worker's reader, then its connection: the worker's ``disconnect``.

    The reader is usually closed already by the store's ``close``; this also covers a store
    that was garbage-collected unclosed.
    """
    reader.close()
    connection.close()


def open_connection(
    path: str, tables: TableNames, durable: bool, busy_timeout: float, reader: ReaderSlot
) -> sqlite3.Connection:
    """Open the worker's connection: WAL, the chosen durability, and an up-to-date schema.

    For a file, also opens a read-only connection with a zero busy timeout into ``reader``.

    Raises:
        StorageUnavailableError: the file cannot be opened or set up.
    """
    return open_worker_connection(
        path, busy_timeout, reader, lambda c: _configure(c, path, durable, tables)
    )


def open_worker_connection(
    path: str,
    busy_timeout: float,
    reader: ReaderSlot,
    configure: Callable[[sqlite3.Connection], None],
) -> sqlite3.Connection:
    """Open a worker's connection with its writers' lock file, set it up, and open the reader.

    Args:
        path: The database file, or ``":memory:"`` (no lock file, no reader).
        busy_timeout: Seconds ``configure`` may wait out other writers.
        reader: Receives the read-only connection of a file.
        configure: Sets up the connection (pragmas, migrations); retried while busy.

    Raises:
        StorageUnavailableError: the file cannot be opened or set up.
    """
    if path != MEMORY:
        create_owner_only(path)
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, factory=WriterConnection)
    except sqlite3.Error as exc:
        raise StorageUnavailableError(f"cannot open SQLite database {path!r}: {exc}") from exc
    if path != MEMORY:
        conn.path = os.path.abspath(path)  # still the same file if the process changes directory
        conn.identity = file_identity(conn.path)
        conn.lock_fd = _open_lock_file(path)
    try:
        retry_busy(configure, conn, busy_timeout)
        if path != MEMORY:
            read_only = sqlite3.connect(
                path, timeout=0, isolation_level=None, check_same_thread=False
            )
            try:
                read_only.execute("PRAGMA query_only=ON")
            except sqlite3.Error:
                read_only.close()
                raise
            reader.hand_over(read_only)
    except sqlite3.Error as exc:
        conn.close()
        raise StorageUnavailableError(f"cannot set up SQLite database {path!r}: {exc}") from exc
    return conn

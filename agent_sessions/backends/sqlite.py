"""SQLite: stdlib ``sqlite3`` on one dedicated worker thread per store.

The file layout is the SDK's own (same tables, columns, index and JSON rows), so a database moves
between ``agents.SQLiteSession`` and ours in both directions. Files run in WAL mode with
``synchronous=FULL`` by default, so a returned write survives power loss; every write transaction
starts with ``BEGIN IMMEDIATE`` and waits for other writers (see ``_sqlite_connection``) instead
of failing with "database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from agents.memory.session_settings import SessionSettings

from .._lifecycle import AsyncClosing, Closing
from .._worker import ConnectionWorker
from ..core import MAX_LIMIT, StoreSession, check_session_id, is_tail, tail_fetch, tail_window
from ..errors import ProvenanceConflictError, StorageError
from ..schema import TableNames
from ..store import (
    ArchiveBatch,
    ArchivedRow,
    Popped,
    RowTag,
    StoredRecord,
    Taker,
    always,
    tagged_values,
    unstored,
)
from . import _shared_stores
from ._group_commit import GroupCommit
from ._restore import ClearLog, Provenance, provenance_of, with_mark, with_provenance
from ._shared_stores import Lease
from ._sqlite_connection import (
    MEMORY,
    ReaderSlot,
    close_connections,
    open_connection,
    retry_busy,
    retry_undecodable,
    transaction,
)
from ._sqlite_state import (
    StateStatements,
    add_batch,
    archived_rows,
    clear_side_tables,
    drop_batch,
    update_state,
    write_state,
)

__all__ = ["SQLiteFileSession", "SQLiteSession", "SQLiteStore", "guarded"]

T = TypeVar("T")
_BUSY_TIMEOUT = 30.0
"""Seconds a write waits for another connection's lock (``SQLiteStore``'s default)."""
_CHUNK = 2_000
"""Rows a read on the event loop fetches between two yields to the loop (about a millisecond)."""


def guarded(
    call: Callable[[sqlite3.Connection], T], busy_timeout: float, what: str
) -> Callable[[sqlite3.Connection], T]:
    """Wrap a worker-side call: wait out busy locks, read past non-UTF-8 TEXT, translate errors."""

    def guarded(conn: sqlite3.Connection) -> T:
        try:
            return retry_undecodable(lambda c: retry_busy(call, c, busy_timeout), conn)
        except sqlite3.Error as exc:
            raise StorageError(f"{what} failed: {exc}") from exc

    return guarded


class _Batch(NamedTuple):
    """One ``add_items`` call queued for the group commit; ``tags`` for a fresh tagged batch."""

    session_id: str
    texts: Sequence[str]
    tags: Sequence[RowTag] | None = None


def _write_batches(
    sql: _Statements,
    busy_timeout: float,
    what: str,
    conn: sqlite3.Connection,
    batches: list[_Batch],
) -> None:
    """Write several sessions' batches in one transaction (the group commit's writer)."""

    def write(conn: sqlite3.Connection) -> None:
        with transaction(conn):
            for session_id, texts, tags in batches:
                conn.execute(sql.touch_session, (session_id,))
                if tags is None:
                    conn.executemany(sql.insert, [(session_id, text) for text in texts])
                else:
                    rows = tagged_values(session_id, list(zip(texts, tags, strict=True)))
                    conn.executemany(sql.insert_tagged, rows)

    guarded(write, busy_timeout, what)(conn)


class SQLiteStore(AsyncClosing):
    """The :class:`~agent_sessions.store.Store` of one SQLite database (a file or ``:memory:``).

    Args:
        db_path: A file path, or ``":memory:"`` for a private in-memory database.
        tables: The table names to use.
        durable: ``True`` (default) commits with ``synchronous=FULL``: a returned write survives
            power loss. ``False`` uses ``synchronous=NORMAL``: several times faster commits, and
            still never corrupt, but the last writes before a power cut may be lost.
        busy_timeout: Seconds a write waits for another connection's lock before failing.
    """

    def __init__(
        self,
        db_path: str | Path = MEMORY,
        *,
        tables: TableNames | None = None,
        durable: bool = True,
        busy_timeout: float = 30.0,
    ) -> None:
        self.db_path = db_path
        self.tables = tables or TableNames()
        self.durable = durable
        self.busy_timeout = busy_timeout
        self._sql = _Statements(self.tables)
        self._state_sql = StateStatements(self.tables)
        self._where = repr(str(db_path))
        self._reader = ReaderSlot()
        self._clears = ClearLog()
        # The opener must not refer to the store, or the worker thread would keep it alive.
        opener = partial(
            open_connection, str(db_path), self.tables, durable, busy_timeout, self._reader
        )
        self._worker: ConnectionWorker[sqlite3.Connection] = ConnectionWorker(
            opener, partial(close_connections, self._reader), label=f"SQLiteStore({str(db_path)!r})"
        )
        # Module-level functions only: a callback bound to the store would form a cycle that
        # keeps an unclosed store (and its thread) alive until the cycle collector runs.
        self._commits = GroupCommit(
            self._worker,
            partial(_write_batches, self._sql, busy_timeout, f"SQLite append on {self._where}"),
        )
        # Open the file in the background now, as the SDK's constructor does in the foreground,
        # so the first call does not wait for it.
        self._worker.start()

    async def _call(self, operation: str, call: Callable[[sqlite3.Connection], T]) -> T:
        return await self._worker.run(
            guarded(call, self.busy_timeout, f"SQLite {operation} on {self._where}")
        )

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of a session (all if None), oldest first."""
        params: tuple[object, ...]
        if limit is None:
            statement, params = self._sql.read_all, (session_id,)
        else:
            statement, params = self._sql.read_latest, (session_id, min(limit, MAX_LIMIT))
        rows = await self._read_inline(statement, params)
        if rows is None:
            rows = await self._call("read", lambda conn: conn.execute(statement, params).fetchall())
        texts = [row[0] for row in rows]
        if limit is not None:
            texts.reverse()
        return texts

    async def _read_inline(self, statement: str, params: tuple[object, ...]) -> list[Any] | None:
        """Run a read on the loop's own connection; None if it must go through the worker.

        In WAL mode a reader never waits for a writer, and a read costs less than the round
        trip to the worker thread, so reads of a file skip the hop. The reader's busy timeout
        is zero: in the rare moments a reader would have to wait (recovery after a crash, a
        journal-mode switch) the read falls back to the worker instead of blocking the loop;
        so does a read that fails in any other way, where the worker reports the error (or
        reads past TEXT that is not UTF-8).

        It yields to the loop first, so a task that loops on reads lets the others run, and
        between chunks of a long read, so reading a long history never holds the loop for long.
        The chunks come from one statement: one snapshot of the file.
        """
        await asyncio.sleep(0)
        reader = self._reader.take()
        if reader is None:
            return None
        try:
            cursor = reader.execute(statement, params)
            rows = cursor.fetchmany(_CHUNK)
            if len(rows) < _CHUNK:
                return rows
            while True:
                await asyncio.sleep(0)
                chunk = cursor.fetchmany(_CHUNK)
                rows += chunk
                if len(chunk) < _CHUNK:
                    return rows
        except sqlite3.Error:
            return None
        finally:
            self._reader.give_back()

    def append(self, session_id: str, texts: Sequence[str]) -> Awaitable[None]:
        """Store rows after the session's newest row, in one transaction; await the result.

        Batches that other sessions of this store queue meanwhile share the transaction (and
        its fsync); each batch is still stored whole or not at all. The batch is queued at
        once and the returned future cannot be cancelled (it is a ``Settling``): a cancelled
        caller is told so once the batch is committed.
        """
        return self._commits.append(_Batch(session_id, texts))

    def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> Awaitable[int]:
        """Append rows with their provenance in one transaction, skipping a run's stored ones.

        See :meth:`agent_sessions.store.ProvenanceStore.append_tagged`. The check and the
        insert share the write lock, so concurrent retries from any process store one copy.
        A fresh batch has nothing to check: it joins the group commit as a plain one does.
        """
        if fresh:
            return self._commits.append_counted(_Batch(session_id, texts, tags), len(texts))
        return self._append_checked(session_id, list(zip(texts, tags, strict=True)))

    async def _append_checked(self, session_id: str, rows: list[tuple[str, RowTag]]) -> int:
        sql = self._sql

        def write(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return _insert_tagged(conn, sql, session_id, rows)

        return await self._call("append", write)

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the newest ``limit`` rows with their provenance (all if None), oldest first."""
        sql = self._sql
        params: tuple[object, ...]
        if limit is None:
            statement, params = sql.records_all, (session_id,)
        else:
            statement, params = sql.records_latest, (session_id, min(limit, MAX_LIMIT))
        found = await self._call("read", lambda conn: conn.execute(statement, params).fetchall())
        if limit is not None:
            found.reverse()
        return [StoredRecord.from_columns(*row) for row in found]

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove and return the newest row ``decode`` accepts; others stay stored."""
        taken = await self.pop_through(session_id, decode, always)
        return taken[0] if taken else None

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove the newest rows down to the first item ``stop`` accepts, in one transaction."""

        def pop_through(conn: sqlite3.Connection) -> list[Popped[T]]:
            taker = Taker(decode, stop)
            tagged: dict[int, Provenance] = {}
            with transaction(conn):
                before, batch = -1, 1
                while True:
                    rows = conn.execute(
                        self._sql.pop_tail, (session_id, before, before, batch)
                    ).fetchall()
                    tagged.update((row[0], row[2:]) for row in rows if row[3] is not None)
                    if any(taker.feed(row[0], row[1]) for row in rows) or len(rows) < batch:
                        break
                    before, batch = rows[-1][0], min(batch * 4, 256)
                taken = taker.result()
                if not taken:
                    return []
                conn.executemany(self._sql.delete_row, [(p.row_id,) for p in taken])
                marked = self.mark_popped(conn, session_id, session_id, taken)
                return with_provenance(marked, tagged)

        return await self._call("pop", pop_through)

    def mark_popped(
        self, conn: sqlite3.Connection, session_id: str, key: Hashable, taken: list[Popped[T]]
    ) -> list[Popped[T]]:
        """Attach to popped rows what their restore checks; on the worker, in the pop's transaction.

        Args:
            conn: The worker's connection.
            session_id: The session popped from.
            key: What a clear that must void the restore is noted under (see ``ClearLog``).
            taken: The popped rows; plain ones become marked copies.
        """
        record = conn.execute(self._sql.record, (session_id,)).fetchone()
        return with_mark(taken, self._clears.mark(key, None if record is None else tuple(record)))

    def restorable(self, conn: sqlite3.Connection, session_id: str, popped: Popped[Any]) -> bool:
        """Whether a popped row may go back: no clear of its session (or branch) came since.

        A row popped by this store carries its mark; a clear by this store since, or a session
        record deleted or made anew since (a clear by anyone), means no. On the worker.
        """
        record = conn.execute(self._sql.record, (session_id,)).fetchone()
        return self._clears.may_restore(popped, None if record is None else tuple(record))

    def note_clear(self, key: Hashable) -> None:
        """Record, on the worker, that a clear of ``key`` committed: earlier pops stay popped."""
        self._clears.note(key)

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Put popped rows back under their original ids, all in one transaction.

        Rows a clear removed meanwhile stay removed: a restore never brings back a session, or
        part of one, that was cleared after the pop.
        """
        if not popped:
            return

        def restore(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                back = [p for p in popped if self.restorable(conn, session_id, p)]
                if not back:
                    return
                conn.execute(self._sql.touch_only, (session_id,))
                plain, tagged = [], []
                for p in back:
                    tags = provenance_of(p)
                    if tags is None:
                        plain.append((p.row_id, session_id, p.text))
                    else:
                        tagged.append((p.row_id, session_id, p.text, *tags))
                conn.executemany(self._sql.insert_at, plain)
                conn.executemany(self._sql.insert_at_tagged, tagged)

        await self._call("restore", restore)

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the newest ``limit`` rows as ``(row_id, text)``, oldest first.

        Returns:
            The rows, and whether they are all of the session's rows.
        """
        fetch = tail_fetch(limit)
        rows = await self._call(
            "read",
            lambda conn: conn.execute(self._sql.tail, (session_id, -1, -1, fetch)).fetchall(),
        )
        return tail_window(rows, limit)

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the newest rows for ``texts`` if they are exactly ``expected``, in one transaction.

        Returns:
            Whether the rows were swapped (False if the tail changed meanwhile).
        """
        return await self._swap_tail("replace tail", session_id, expected, texts, None)

    async def _swap_tail(
        self,
        operation: str,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        after: Callable[[sqlite3.Connection], None] | None,
    ) -> bool:
        """``replace_tail``, with ``after`` run in the same transaction once rows were swapped."""
        want = [(int(row_id), text) for row_id, text in expected]

        def replace_tail(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                newest = conn.execute(self._sql.tail, (session_id, -1, -1, len(want))).fetchall()
                if not is_tail(newest, want):
                    return False
                conn.executemany(self._sql.delete_row, [(row_id,) for row_id, _ in want])
                conn.execute(self._sql.touch_session, (session_id,))
                conn.executemany(self._sql.insert, [(session_id, text) for text in texts])
                if after is not None:
                    after(conn)
                return True

        return await self._call(operation, replace_tail)

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows, oldest batch first."""
        statement, params = self._state_sql.archived, (session_id,)
        rows = await self._read_inline(statement, params)
        if rows is None:
            rows = await self._call(
                "read archive", lambda conn: conn.execute(statement, params).fetchall()
            )
        return archived_rows(rows)

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """Swap the newest rows (see ``replace_tail``) and archive ``batch``, in one transaction."""
        sql = self._state_sql
        return await self._swap_tail(
            "compact", session_id, expected, texts, partial(_add_batch, sql, session_id, batch)
        )

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """Swap the newest rows (see ``replace_tail``) and drop archive ``batch``, at once."""
        after = partial(drop_batch, self._state_sql, session_id, batch)
        return await self._swap_tail("uncompact", session_id, expected, texts, after)

    async def clear(self, session_id: str) -> None:
        """Delete a session's rows and its session record in one transaction."""

        def clear(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(self._sql.delete_messages, (session_id,))
                conn.execute(self._sql.delete_session, (session_id,))
                clear_side_tables(conn, self._state_sql, session_id)
            self.note_clear(session_id)

        await self._call("clear", clear)

    async def read_state(self, session_id: str, name: str) -> str | None:
        """Return the text stored under ``name`` for the session, or None."""
        params = (session_id, name)
        statement = self._state_sql.read
        rows = await self._read_inline(statement, params)
        if rows is None:
            rows = await self._call(
                "read state", lambda conn: conn.execute(statement, params).fetchall()
            )
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def write_state(self, session_id: str, name: str, text: str | None) -> None:
        """Store ``text`` under ``name`` (None deletes it), in one transaction."""
        await self._call(
            "write state", partial(write_state, self._state_sql, session_id, name, text)
        )

    async def update_state(
        self, session_id: str, name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read, change and write one value in one transaction (the file's write lock)."""
        return await self._call(
            "update state", partial(update_state, self._state_sql, session_id, name, change)
        )

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Return every row of a session as ``(row_id, text)``, oldest first."""
        params = (session_id,)
        rows = await self._read_inline(self._sql.rows, params)
        if rows is None:
            rows = await self._call(
                "rows", lambda conn: conn.execute(self._sql.rows, params).fetchall()
            )
        return [(row_id, text) for row_id, text in rows]

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text, or delete the rows whose new text is None, in one transaction.

        Returns:
            How many of the session's rows were changed or deleted.
        """
        return await self._rewrite("rewrite", session_id, changes, None)

    async def rewrite_archiving(
        self, session_id: str, changes: Mapping[int, str | None], batch: ArchiveBatch
    ) -> int:
        """``rewrite``, archiving ``batch`` in the same transaction."""
        after = partial(_add_batch, self._state_sql, session_id, batch)
        return await self._rewrite("prune", session_id, changes, after)

    async def _rewrite(
        self,
        operation: str,
        session_id: str,
        changes: Mapping[int, str | None],
        after: Callable[[sqlite3.Connection], None] | None,
    ) -> int:
        updates = [(text, rid, session_id) for rid, text in changes.items() if text is not None]
        deletes = [(rid, session_id) for rid, text in changes.items() if text is None]

        def rewrite(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                changed = 0
                if updates:
                    changed += conn.executemany(self._sql.update_row, updates).rowcount
                if deletes:
                    changed += conn.executemany(self._sql.delete_session_row, deletes).rowcount
                    self._forget_rows(conn, [row_id for row_id, _ in deletes])
                if after is not None:
                    after(conn)
                return changed

        return await self._call(operation, rewrite)

    def _forget_rows(self, conn: sqlite3.Connection, row_ids: list[int]) -> None:
        """Called inside ``rewrite``'s transaction after rows were deleted; for subclasses."""

    def session(
        self,
        session_id: str,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        strict: bool = False,
    ) -> SQLiteSession:
        """Return a session on this store; all sessions of a store share one thread and commit.

        Sharing a store is the fast way to serve many conversations from one file: concurrent
        writes are committed together (one fsync for all), and one thread does the work.

        Example:
            >>> async def serve() -> None:
            ...     async with SQLiteStore("chats.db") as store:
            ...         alice, bob = store.session("alice"), store.session("bob")
        """
        return SQLiteSession(
            session_id, session_settings=session_settings, strict=strict, store=self
        )

    @property
    def closed(self) -> bool:
        """True once ``close`` or ``aclose`` was called."""
        return self._worker.closed

    def abandon(self) -> None:
        """Close without waiting or warning: for a finalizer, whose owner already warned."""
        self._worker.stop_nowait()

    def close(self) -> None:
        """Finish queued calls and close the connections; idempotent. Blocks until done."""
        self._reader.close()
        self._worker.close()

    async def aclose(self) -> None:
        """Finish queued calls and close the connections without blocking the loop; idempotent."""
        self._reader.close()
        await self._worker.aclose()


def _add_batch(
    sql: StateStatements, session_id: str, batch: ArchiveBatch, conn: sqlite3.Connection
) -> None:
    add_batch(conn, sql, session_id, batch)


def _insert_tagged(
    conn: sqlite3.Connection,
    sql: _Statements,
    session_id: str,
    rows: Sequence[tuple[str, RowTag]],
) -> int:
    """Insert the tagged rows their run has not stored yet (inside the caller's transaction)."""
    if not rows:
        return 0
    run_id = rows[0][1].run_id
    positions = [tag.position for _, tag in rows]
    stored: dict[int, str] = dict(
        conn.execute(sql.run_digests, (session_id, run_id, min(positions), max(positions)))
    )
    new, refused = unstored(rows, stored)
    if refused is not None:
        raise ProvenanceConflictError(session_id, run_id, refused.position)
    if new:
        conn.execute(sql.touch_session, (session_id,))
        conn.executemany(sql.insert_tagged, tagged_values(session_id, new))
    return len(new)


class _Statements:
    """The SQL of one pair of tables, formatted once from validated names."""

    def __init__(self, t: TableNames) -> None:
        m, s = t.messages, t.sessions
        self.read_all = f"SELECT message_data FROM {m} WHERE session_id = ? ORDER BY id"
        self.read_latest = (
            f"SELECT message_data FROM {m} WHERE session_id = ? ORDER BY id DESC LIMIT ?"
        )
        # Bound as (session, before, before, limit); `before = -1` means "from the newest row".
        self.tail = (
            f"SELECT id, message_data FROM {m} WHERE session_id = ? "
            "AND (? < 0 OR id < ?) ORDER BY id DESC LIMIT ?"
        )
        self.insert = f"INSERT INTO {m} (session_id, message_data) VALUES (?, ?)"
        self.insert_at = (
            f"INSERT INTO {m} (id, session_id, message_data) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING"
        )
        # A pop reads the rows' provenance too, so that a restore puts it back. A restored row
        # its run stored again meanwhile (a retry) stays out: the history keeps one copy.
        self.pop_tail = (
            f"SELECT id, message_data, agent_name, run_id, run_position, item_digest, created_at "
            f"FROM {m} WHERE session_id = ? AND (? < 0 OR id < ?) ORDER BY id DESC LIMIT ?"
        )
        self.insert_at_tagged = (
            f"INSERT INTO {m} (id, session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        )
        self.record = f"SELECT rowid, created_at FROM {s} WHERE session_id = ?"
        self.touch_only = f"UPDATE {s} SET updated_at = CURRENT_TIMESTAMP WHERE session_id = ?"
        self.delete_row = f"DELETE FROM {m} WHERE id = ?"
        self.rows = f"SELECT id, message_data FROM {m} WHERE session_id = ? ORDER BY id"
        self.update_row = f"UPDATE {m} SET message_data = ? WHERE id = ? AND session_id = ?"
        self.delete_session_row = f"DELETE FROM {m} WHERE id = ? AND session_id = ?"
        self.delete_messages = f"DELETE FROM {m} WHERE session_id = ?"
        self.delete_session = f"DELETE FROM {s} WHERE session_id = ?"
        self.touch_session = (
            f"INSERT INTO {s} (session_id) VALUES (?) "
            "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
        )
        # Provenance (schema v4): tagged rows get their time in UTC to the millisecond.
        self.insert_tagged = (
            f"INSERT INTO {m} (session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (?, ?, ?, ?, ?, ?, "
            "strftime('%Y-%m-%d %H:%M:%f', 'now'))"
        )
        self.run_digests = (
            f"SELECT run_position, item_digest FROM {m} WHERE session_id = ? AND run_id = ? "
            "AND run_position BETWEEN ? AND ?"
        )
        columns = "message_data, agent_name, run_id, run_position, created_at"
        self.records_all = f"SELECT {columns} FROM {m} WHERE session_id = ? ORDER BY id"
        self.records_latest = (
            f"SELECT {columns} FROM {m} WHERE session_id = ? ORDER BY id DESC LIMIT ?"
        )


FileStore = TypeVar("FileStore", bound=SQLiteStore)


def file_store(
    store_type: type[FileStore], db_path: str | Path, tables: TableNames, durable: bool
) -> tuple[FileStore, Lease[FileStore] | None]:
    """The store a session made by a drop-in constructor uses, and its lease if it is shared.

    A file's sessions (of one store type, tables and durability) share one store, closed when
    the last of them closes (see ``_shared_stores``); ``":memory:"`` gets a private store.
    """
    if str(db_path) == MEMORY:
        return store_type(db_path, tables=tables, durable=durable), None
    return _shared_stores.lease(
        str(db_path),
        tables,
        durable,
        _BUSY_TIMEOUT,
        partial(store_type, db_path, tables=tables, durable=durable, busy_timeout=_BUSY_TIMEOUT),
        kind=store_type.__qualname__,
    )


class SQLiteFileSession(StoreSession):
    """A session over a :class:`SQLiteStore` (or a subclass): SQLite's attributes and sync close.

    Shared by :class:`SQLiteSession` and ``AdvancedSQLiteSession``; not meant to be built directly.
    """

    def __init__(
        self,
        session_id: str,
        store: SQLiteStore,
        *,
        owns_store: bool,
        session_settings: SessionSettings | dict[str, Any] | None,
        strict: bool,
        lease: Lease[Any] | None = None,
    ) -> None:
        self.db_path = store.db_path
        self.sessions_table = store.tables.sessions
        self.messages_table = store.tables.messages
        self._sqlite = store
        try:
            super().__init__(
                session_id,
                store,
                owns_store=owns_store,
                session_settings=session_settings,
                strict=strict,
            )
        except BaseException:
            if lease is not None:
                last = lease.release()
                if last is not None:
                    last.close()
            raise
        if lease is not None:
            self._lease = lease
            label = f"{type(self).__name__}({session_id!r}, {str(store.db_path)!r})"
            self._abandoned = weakref.finalize(self, _shared_stores.abandon, lease, label)
            self._abandoned.atexit = False

    _lease: Lease[SQLiteStore] | None = None
    """This session's claim on a store shared per file (``SQLiteSession(id, path)``), if any."""
    _abandoned: weakref.finalize[..., Any] | None = None

    def close(self) -> Closing:
        """Close the session, and the store unless it was shared, at once; idempotent.

        Like the SDK's ``close()``, it needs no ``await``; it may be awaited all the same.
        """
        if self._mark_closed():
            store = self._give_back()
            if store is not None:
                store.close()
        return Closing()

    async def aclose(self) -> None:
        """Close the session, and the store unless it was shared; idempotent."""
        if self._mark_closed():
            store = self._give_back()
            if store is not None:
                await store.aclose()

    def _give_back(self) -> SQLiteStore | None:
        """The store to close now: the session's own, or a shared one this session held last."""
        if self._lease is None:
            return self._sqlite if self._owns_store else None
        if self._abandoned is not None:
            self._abandoned.detach()
        return self._lease.release()


class SQLiteSession(SQLiteFileSession):
    """A drop-in for ``agents.SQLiteSession``: the same constructor, tables and row format.

    Args:
        session_id: The conversation this object reads and writes.
        db_path: A file path, or ``":memory:"`` (the default) for a private in-memory database.
            The sessions of one file (with the same tables and durability) share one
            :class:`SQLiteStore`: one worker thread and connection, and concurrent writes share
            commits. It closes when the last of them closes; see ``_shared_stores``.
        sessions_table: Table of session records.
        messages_table: Table of items.
        session_settings: Defaults for reads, such as ``SessionSettings(limit=50)``.
        durable: See :class:`SQLiteStore`; ``False`` trades power-loss safety for speed.
        strict: Raise :class:`~agent_sessions.errors.CorruptItemError` on an undecodable row
            instead of skipping it with a logged warning.
        store: An open :class:`SQLiteStore` to share instead of opening ``db_path`` (its path,
            tables and durability are used). Closing the session leaves a shared store open.

    Example:
        >>> from agents import Agent, Runner
        >>> from agent_sessions import SQLiteSession
        >>> async def chat() -> None:
        ...     async with SQLiteSession("user-42", "chats.db") as session:
        ...         await Runner.run(Agent(name="a"), "Hi, I'm Ada", session=session)
    """

    def __init__(
        self,
        session_id: str,
        db_path: str | Path = MEMORY,
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: SessionSettings | dict[str, Any] | None = None,
        *,
        durable: bool = True,
        strict: bool = False,
        store: SQLiteStore | None = None,
    ) -> None:
        check_session_id(session_id)
        lease: Lease[SQLiteStore] | None = None
        owns_store = store is None
        if store is None:
            store, lease = file_store(
                SQLiteStore, db_path, TableNames(sessions_table, messages_table), durable
            )
            owns_store = lease is None
        super().__init__(
            session_id,
            store,
            owns_store=owns_store,
            session_settings=session_settings,
            strict=strict,
            lease=lease,
        )
        if lease is not None:
            self.db_path = db_path  # as given, like the SDK's attribute

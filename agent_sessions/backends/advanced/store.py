"""``AdvancedSQLiteStore``: a :class:`SQLiteStore` whose reads and writes follow a branch.

A branch's history is its own rows plus its parent's visible history below a cutoff id
(``inherit_below``), applied up the chain of parents. Creating a branch writes one row; popping an
inherited item lowers the cutoff. The current branch lives in the database, so every object on
the file agrees, and nothing about it is cached.

Writes run on the store's worker thread, each in one transaction; appends that arrive while
another is being written share one (group commit). Reads of a file run on the event loop's
read-only connection inside one read transaction (a consistent snapshot, which in WAL mode never
waits for a writer), and fall back to the worker whenever that connection cannot serve them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from ...schema import TableNames
from ...serialization import Codec, JsonCodec
from ...store import RowTag, tag_time
from .._group_commit import GroupCommit
from .._sqlite_connection import MEMORY
from ..sqlite import SQLiteStore
from .chain import Chain
from .db import Connection, snapshot
from .flavor import SQLITE
from .ops import BranchOps, UsageRow
from .renumber import renumber
from .sql import AdvancedStatements
from .tagged import TaggedStatements, TaggedWriter
from .write import BaseStatements, Schema, Writer, write_batches

__all__ = ["AdvancedSQLiteStore", "UsageRow"]  # UsageRow: where it was first defined

T = TypeVar("T")


def _in_snapshot(conn: Connection, call: Callable[[Connection], T]) -> T:
    """Run a read-only ``call`` in one read transaction, ended whatever happens."""
    with snapshot(conn):
        return call(conn)


class AdvancedSQLiteStore(BranchOps, SQLiteStore):
    """A :class:`SQLiteStore` with copy-free branches; see :class:`AdvancedSQLiteSession`.

    Args:
        db_path: A file path, or ``":memory:"`` for a private in-memory database.
        tables: The SDK's table names; the branch tables are named after the messages table.
        durable: See :class:`SQLiteStore`.
        busy_timeout: Seconds a write waits for another connection's lock before failing.
        codec: Decodes rows to classify them (user message, tool call, ...); JSON by default.
    """

    def __init__(
        self,
        db_path: str | Path = MEMORY,
        *,
        tables: TableNames | None = None,
        durable: bool = True,
        busy_timeout: float = 30.0,
        codec: Codec | None = None,
    ) -> None:
        tables = tables or TableNames()
        self._adv = AdvancedStatements(tables)
        self._chain = Chain(self._adv, codec or JsonCodec())
        self._schema = Schema(self._adv, self._chain.classify_text)
        self._reading = threading.Lock()  # the reader serves one caller at a time
        self._appending = 0  # appends in flight, on the event loop's thread
        super().__init__(db_path, tables=tables, durable=durable, busy_timeout=busy_timeout)
        base = BaseStatements(
            self._sql.touch_session,
            self._sql.insert,
            self._sql.insert_at,
            self._sql.delete_row,
            self._sql.delete_messages,
            self._sql.delete_session,
        )
        self._writer = Writer(self._adv, base, self._chain, self._schema)
        self._record_sql = self._sql.record
        self._tagged = TaggedWriter(
            TaggedStatements(tables.messages, SQLITE), self._sql.touch_session, self._writer.append
        )
        self._commits = GroupCommit(
            self._worker,
            partial(write_batches, self._writer, busy_timeout, f"SQLite append on {self._where}"),
        )

    async def _write_call(
        self, operation: str, session_id: str, call: Callable[[Connection], T]
    ) -> T:
        """Run ``call`` on the worker thread, after creating the tables if needed.

        The call opens its own transaction (``BEGIN IMMEDIATE``: the file's write lock).
        """
        del session_id  # one writer at a time per file: the write lock covers every session

        def run(conn: sqlite3.Connection) -> T:
            self._schema.ensure(conn)
            return call(conn)

        return await self._call(operation, run)

    async def _read_call(
        self, operation: str, call: Callable[[Connection], T], *, snapshot: bool = True
    ) -> T:
        """Run a read-only ``call`` on the loop's reader if it can, else on the worker.

        Either way it runs in one read transaction, so a walk of several statements sees one
        snapshot of the file; with ``snapshot`` False, ``call`` opens one itself if it needs
        more than one statement. It yields to the loop first, like every read of ours.
        """
        await asyncio.sleep(0)
        done = self._read_here(call, snapshot=snapshot)
        if done is not None:
            return done[0]
        if not snapshot:
            return await self._write_call(operation, "", call)
        return await self._write_call(operation, "", lambda conn: _in_snapshot(conn, call))

    def _read_here(
        self, call: Callable[[Connection], T], *, snapshot: bool = True
    ) -> tuple[T] | None:
        """Run ``call`` on the reader; None if the worker must run it.

        A read costs less than the round trip to the worker thread, and in WAL mode it never
        waits for a writer. The reader's busy timeout is zero, so in the rare moments it would
        have to wait (recovery, a journal-mode switch), or before this file has the branch
        tables, or while another thread holds the reader, the worker runs the read instead.
        """
        reader = self._reader.connection
        if reader is None or not self._schema.ready:
            return None
        if not self._reading.acquire(blocking=False):
            return None
        try:
            return (_in_snapshot(reader, call) if snapshot else call(reader),)
        except sqlite3.Error:
            if reader.in_transaction:
                reader.execute("ROLLBACK")
            return None
        finally:
            self._reading.release()

    # The Store protocol --------------------------------------------------------------------

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows on the current branch, with their turn metadata, in one transaction.

        A batch that arrives while another is being written waits in the group commit, and
        every batch queued meanwhile shares its transaction (and fsync); each batch is still
        stored whole or not at all.
        """
        # The queue costs a second hand-off between threads (~30 us): a lone writer, the usual
        # case of a session that owns its store, goes to the worker directly.
        grouped = self._appending > 0
        self._appending += 1
        try:
            if grouped:
                await self._commits.append((session_id, texts))
            else:
                batch = [(session_id, texts)]
                await self._write_call(
                    "append", session_id, lambda conn: self._writer.write(conn, batch)
                )
        finally:
            self._appending -= 1

    async def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> int:
        """Store rows with their provenance on the current branch, skipping a run's stored ones.

        See :meth:`agent_sessions.store.ProvenanceStore.append_tagged`; a run's position is
        stored once per session, whichever branch holds it (:mod:`.tagged`). The check and the
        insert share the file's write lock, so concurrent retries from any process store one
        copy.
        """
        rows = list(zip(texts, tags, strict=True))
        tagged = self._tagged
        now = tag_time(as_text=True)
        return await self._write_call(
            "append",
            session_id,
            lambda conn: tagged.write(conn, session_id, rows, now, fresh=fresh),
        )

    def _forget_rows(self, conn: sqlite3.Connection, row_ids: list[int]) -> None:
        """Drop the structure rows of rows ``rewrite`` deleted (a purge), in its transaction.

        Later turns get lower numbers: the session is renumbered in the same transaction.
        """
        self._schema.ensure(conn)
        session_of = f"SELECT session_id FROM {self._adv.n.structure} WHERE message_id = ?"
        sessions = {
            str(row[0]) for row_id in row_ids for row in conn.execute(session_of, (row_id,))
        }
        conn.executemany(self._adv.delete_forgotten, [(row_id,) for row_id in row_ids])
        for session_id in sorted(sessions):
            renumber(conn, self._adv, self._chain, session_id)

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
from typing import Any, NamedTuple, TypeVar

from ...schema import TableNames
from ...serialization import Codec, JsonCodec
from ...store import Popped, always
from .._group_commit import GroupCommit
from .._sqlite_connection import MEMORY
from ..sqlite import SQLiteStore
from .chain import Chain, UserRow
from .db import snapshot
from .sql import MAIN, AdvancedStatements, check_branch_name
from .write import BaseStatements, Schema, Writer, write_batches

__all__ = ["AdvancedSQLiteStore", "UsageRow"]

T = TypeVar("T")


class UsageRow(NamedTuple):
    """One turn's token usage, with its details as stored JSON text."""

    user_turn: int
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: str | None
    output_tokens_details: str | None


def _in_snapshot(conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], T]) -> T:
    """Run a read-only ``call`` in one read transaction, ended whatever happens."""
    with snapshot(conn):
        return call(conn)


class AdvancedSQLiteStore(SQLiteStore):
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
        self._commits = GroupCommit(
            self._worker,
            partial(write_batches, self._writer, busy_timeout, f"SQLite append on {self._where}"),
        )

    async def _run(self, operation: str, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``call`` on the worker thread, after creating the tables if needed."""

        def run(conn: sqlite3.Connection) -> T:
            self._schema.ensure(conn)
            return call(conn)

        return await self._call(operation, run)

    async def _read(
        self, operation: str, call: Callable[[sqlite3.Connection], T], *, snapshot: bool = True
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
            return await self._run(operation, call)
        return await self._run(operation, lambda conn: _in_snapshot(conn, call))

    def _read_here(
        self, call: Callable[[sqlite3.Connection], T], *, snapshot: bool = True
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

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of the current branch (all if None), oldest first."""
        return await self.read_branch(session_id, None, limit)

    async def read_branch(
        self, session_id: str, branch: str | None, limit: int | None
    ) -> list[str]:
        """Return the newest ``limit`` rows of a branch (the current one if None), oldest first.

        Raises:
            ValueError: the branch does not exist.
        """

        def read(conn: sqlite3.Connection) -> list[str]:
            texts = self._chain.read_texts(conn, session_id, branch, limit)
            texts.reverse()
            return texts

        return await self._read("read", read, snapshot=False)

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
                await self._commits.append(session_id, texts)
            else:
                batch = [(session_id, texts)]
                await self._run("append", lambda conn: self._writer.write(conn, batch))
        finally:
            self._appending -= 1

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove the current branch's newest decodable item; hide it if it is inherited.

        Raises:
        Forks that inherit the item take their own record of it, so they keep it.
        """
        taken = await self.pop_through(session_id, decode, always)
        return taken[0] if taken else None

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove the current branch's newest items down to the first ``stop`` accepts.

        Own items are deleted and inherited ones hidden, all in one transaction; forks that
        inherit them take their own records of them first, so they keep them.
        """

        def pop_through(conn: sqlite3.Connection) -> list[Popped[T]]:
            taken = self._writer.pop_through(conn, session_id, decode, stop)
            if not taken:
                return taken
            branch = self._chain.head(conn, session_id).branch
            return self.mark_popped(conn, session_id, (session_id, branch), taken)

        return await self._run("pop", pop_through)

    def _forget_rows(self, conn: sqlite3.Connection, row_ids: list[int]) -> None:
        """Drop the structure rows of rows ``rewrite`` deleted (a purge), in its transaction."""
        conn.executemany(self._adv.delete_forgotten, [(row_id,) for row_id in row_ids])

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Undo a pop in one transaction: put rows back under their ids, or restore the cutoff.

        Nothing comes back that a clear of its branch removed after the pop.
        """
        await self._run(
            "restore",
            lambda conn: self._writer.restore(
                conn, session_id, popped, lambda row: self.restorable(conn, session_id, row)
            ),
        )

    async def clear(self, session_id: str) -> None:
        """Clear the current branch; clearing ``main`` deletes the whole session."""

        def clear(conn: sqlite3.Connection) -> None:
            branch = self._chain.head(conn, session_id).branch
            self._writer.clear(conn, session_id)
            self.note_clear((session_id, branch))

        await self._run("clear", clear)

    # Branches ------------------------------------------------------------------------------

    async def current_branch(self, session_id: str) -> str:
        """Return the session's current branch."""
        return await self._read(
            "current_branch", lambda conn: self._chain.head(conn, session_id).branch
        )

    async def create_branch(self, session_id: str, turn: int, name: str | None) -> str:
        """Fork the current branch before its ``turn``-th user message and switch to the fork.

        Raises:
            ValueError: the turn does not exist, or the name is invalid or was used.
            TypeError: the name is not a string.
        """
        if name is not None:
            check_branch_name(name)
        return await self._run(
            "create_branch", lambda conn: self._writer.create_branch(conn, session_id, turn, name)
        )

    async def switch(self, session_id: str, branch: str) -> None:
        """Make ``branch`` the session's current branch.

        Raises:
            ValueError: the branch does not exist.
        """
        await self._run(
            "switch_to_branch", lambda conn: self._writer.switch(conn, session_id, branch)
        )

    async def delete_branch(self, session_id: str, branch: str, *, force: bool) -> None:
        """Delete a branch, its records and usage; its forks keep what they showed.

        Raises:
            ValueError: the branch is ``main``, unknown, or current without force.
        """
        await self._run(
            "delete_branch",
            lambda conn: self._writer.delete_branch(conn, session_id, branch, force=force),
        )

    async def list_branches(self, session_id: str) -> list[dict[str, Any]]:
        """Return each branch with the size of its visible history, main first."""

        def branches(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            current = self._chain.head(conn, session_id).branch
            found = list(conn.execute(self._adv.branches, {"session": session_id}))
            if all(row[0] != MAIN for row in found):
                found.insert(0, (MAIN, None, 0))
            listed = []
            for branch, created_at, _order in found:
                head = self._chain.resolve(conn, session_id, branch)
                messages, users = self._chain.size(conn, session_id, head)
                listed.append(
                    {
                        "branch_id": branch,
                        "message_count": messages,
                        "user_turns": users,
                        "created_at": created_at,
                        "is_current": branch == current,
                    }
                )
            return listed

        return await self._read("list_branches", branches)

    # Turns ---------------------------------------------------------------------------------

    async def user_turns(self, session_id: str, branch: str | None) -> list[UserRow]:
        """Return a branch's visible user messages numbered by turn (current branch if None).

        Raises:
            ValueError: the branch does not exist.
        """
        return await self._read(
            "get_conversation_turns",
            lambda conn: self._chain.users(
                conn, session_id, self._chain.resolve(conn, session_id, branch)
            ),
        )

    async def item_kinds(
        self, session_id: str, branch: str | None
    ) -> list[tuple[int, str, str | None]]:
        """Return each visible item's turn, type and tool name, oldest first.

        Raises:
            ValueError: the branch does not exist.
        """
        return await self._read(
            "get_conversation_by_turns",
            lambda conn: self._chain.kinds(
                conn, session_id, self._chain.resolve(conn, session_id, branch)
            ),
        )

    async def tool_counts(self, session_id: str, branch: str | None) -> dict[tuple[int, str], int]:
        """Return ``{(turn, tool): calls}`` over a branch's visible history.

        Raises:
            ValueError: the branch does not exist.
        """
        return await self._read(
            "get_tool_usage",
            lambda conn: self._chain.tool_counts(
                conn, session_id, self._chain.resolve(conn, session_id, branch)
            ),
        )

    # Usage ---------------------------------------------------------------------------------

    async def put_usage(self, session_id: str, usage: UsageRow) -> None:
        """Record usage against the current branch and its current user turn.

        ``usage.user_turn`` is ignored; a second record for one turn replaces the first.
        """
        await self._run(
            "store_run_usage", lambda conn: self._writer.put_usage(conn, session_id, usage[1:])
        )

    async def session_usage(self, session_id: str, branch: str | None) -> tuple[Any, ...]:
        """Return summed usage and the turn count, of one branch or (None) of all branches."""

        def sums(conn: sqlite3.Connection) -> tuple[Any, ...]:
            if branch is None:
                row = conn.execute(self._adv.session_usage, (session_id,)).fetchone()
            else:
                row = conn.execute(self._adv.branch_usage, (session_id, branch)).fetchone()
            return tuple(row)

        return await self._read("get_session_usage", sums)

    async def turn_usage(self, session_id: str, branch: str | None) -> list[UsageRow]:
        """Return a branch's usage rows by turn (the current branch if None)."""

        def turns(conn: sqlite3.Connection) -> list[UsageRow]:
            resolved = self._chain.resolve(conn, session_id, branch).branch
            rows = conn.execute(self._adv.turn_usage, (session_id, resolved))
            return [UsageRow(*row) for row in rows]

        return await self._read("get_turn_usage", turns)

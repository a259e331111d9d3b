"""The write side of ``AdvancedSQLiteStore``: setup, appends, pops, undo, branch changes.

Everything here runs on the store's worker thread, inside one ``BEGIN IMMEDIATE`` transaction
per call (or per group commit), and holds no reference to the store itself: the group commit's
writer lives as long as the worker thread, which must not keep an unclosed store alive.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from ..store import Popped, Taker
from ._advanced_chain import Chain, Head
from ._advanced_sql import MAIN, NO_CUTOFF, AdvancedStatements, Row
from ._group_commit import Batch
from ._sqlite_connection import transaction
from .sqlite import guarded

__all__ = ["BaseStatements", "Schema", "Writer", "write_batches"]

T = TypeVar("T")


class BaseStatements(NamedTuple):
    """The statements of the SDK's two tables that the branch-aware writes reuse."""

    touch_session: str
    insert: str
    insert_at: str
    delete_row: str
    delete_messages: str
    delete_session: str


class Schema:
    """Creates the branch tables once per store, on the worker thread (``IF NOT EXISTS``).

    Args:
        sql: The statements of the store's tables.
    """

    def __init__(self, sql: AdvancedStatements) -> None:
        self._sql = sql
        self.ready = False  # read and set on the worker thread only

    def ensure(self, conn: sqlite3.Connection) -> None:
        """Create the tables unless this store did already or they all exist."""
        if self.ready:
            return
        names = self._sql.objects
        marks = ", ".join("?" * len(names))
        (present,) = conn.execute(
            f"SELECT count(*) FROM sqlite_master WHERE name IN ({marks})", names
        ).fetchone()
        # Existing tables need no write lock: a read-only or busy file still opens for reading.
        if present < len(names):
            with transaction(conn):
                for statement in self._sql.ddl:
                    conn.execute(statement)
        self.ready = True


class _Undo(NamedTuple):
    """How to put back a popped row: its own row again, or the cutoff a pop lowered."""

    branch_id: str
    meta: tuple[int, str, str | None] | None
    """An own row's turn, item type and tool name; None if it had no branch record."""
    cutoff: int | None = None
    """The cutoff to raise back to, if the pop hid an inherited row (None: own row)."""
    left: int = 0
    """The cutoff that pop left in place: a cutoff moved since then is not raised."""


class _BranchPopped(Popped[T]):
    """A :class:`Popped` that carries its own undo record, so restore needs no memory."""

    undo: _Undo


def _popped(taken: Popped[T], undo: _Undo) -> Popped[T]:
    popped = _BranchPopped(*taken)
    popped.undo = undo
    return popped


class Writer:
    """The branch-aware write transactions of one store.

    Args:
        sql: The branch tables' statements.
        base: The SDK tables' statements.
        chain: Reads of the branch tables.
        schema: Creates the tables before the first write.
    """

    def __init__(
        self, sql: AdvancedStatements, base: BaseStatements, chain: Chain, schema: Schema
    ) -> None:
        self.sql = sql
        self.base = base
        self.chain = chain
        self.schema = schema

    def append(self, conn: sqlite3.Connection, session_id: str, texts: Sequence[str]) -> None:
        """Store rows on the current branch with their turn metadata (inside a transaction)."""
        conn.execute(self.base.touch_session, (session_id,))
        head = self.chain.head(conn, session_id)
        if not head.recorded:  # the session's first write, or its branch was just deleted
            conn.execute(self.sql.ensure_main, (session_id, MAIN))
        turn = self.chain.turn_now(conn, session_id, head)
        meta = []
        for text in texts:
            kind, tool = self.chain.classify_text(text)
            turn += kind == "user"
            # Each id comes from its own INSERT: ids are not promised to be consecutive.
            row_id = conn.execute(self.base.insert, (session_id, text)).lastrowid
            meta.append((row_id, session_id, head.branch, turn, kind, tool))
        conn.executemany(self.sql.insert_meta, meta)

    def write(self, conn: sqlite3.Connection, batches: Sequence[Batch]) -> None:
        """Store batches (of one session or several) in one transaction."""
        with transaction(conn):
            for session_id, texts in batches:
                self.append(conn, session_id, texts)

    def pop_through(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        decode: Callable[[str], T | None],
        stop: Callable[[T], bool],
    ) -> list[Popped[T]]:
        """Remove the current branch's newest items down to the first ``stop`` accepts.

        Own rows are deleted; inherited ones are hidden by lowering the branch's cutoff.

        Returns:
            The removed items, newest first; none if ``stop`` accepted none.

        Raises:
            ValueError: a branch made from this one sees the items; nothing was changed.
        """
        with transaction(conn):
            head = self.chain.head(conn, session_id)
            taker, seen = Taker(decode, stop), dict[int, Row]()
            before, batch = NO_CUTOFF, 1
            while True:
                rows = self.chain.visible(conn, session_id, head, batch, before)
                seen.update((row.id, row) for row in rows)
                if any(taker.feed(row.id, row.text) for row in rows) or len(rows) < batch:
                    break
                before, batch = rows[-1].id, min(batch * 4, 256)
            taken = taker.result()
            if not taken:
                return []
            self.refuse_if_forks_see(
                conn, session_id, head.branch, min(p.row_id for p in taken), "pop these items"
            )
            # Inherited rows stay for the parent: the branch stops inheriting from the lowest.
            inherited = [p.row_id for p in taken if seen[p.row_id].branch_id != head.branch]
            cut = min(inherited, default=0)
            popped = [_popped(p, self._take(conn, head, seen[p.row_id], cut)) for p in taken]
            if inherited:
                conn.execute(self.sql.set_cutoff, (cut, session_id, head.branch))
            return popped

    def refuse_if_forks_see(
        self, conn: sqlite3.Connection, session_id: str, branch: str, row_id: int, action: str
    ) -> None:
        """Raise rather than change what a branch made from ``branch`` inherits.

        Raises:
            ValueError: a fork of ``branch`` sees rows from ``row_id`` on; nothing was changed.
        """
        forks = [r[0] for r in conn.execute(self.sql.forks_seeing, (session_id, branch, row_id))]
        if forks:
            raise ValueError(
                f"cannot {action} on branch {branch!r}: branch(es) {', '.join(map(repr, forks))} "
                "were made from that part of it and would change too; delete them first"
            )

    def _take(self, conn: sqlite3.Connection, head: Head, row: Row, cut: int) -> _Undo:
        """Delete an own row; return how to undo taking it (an inherited row needs ``cut``)."""
        if row.branch_id != head.branch:
            # Every inherited row of one pop returns to the same cutoff, once.
            return _Undo(head.branch, None, head.inherit_below, cut)
        conn.execute(self.base.delete_row, (row.id,))
        if row.item_type is None:  # an SDK-written row: it goes back as it was
            return _Undo(head.branch, None)
        conn.execute(self.sql.delete_meta, (row.id,))
        return _Undo(head.branch, (row.user_turn or 0, row.item_type, row.tool_name))

    def restore(self, conn: sqlite3.Connection, session_id: str, popped: Popped[Any]) -> None:
        """Undo a pop: put the row back under its id, or raise the lowered cutoff again.

        Nothing is put back on a branch deleted meanwhile, nor over a row that is back already;
        a cutoff another pop or a clear has moved since stays where they put it.
        """
        with transaction(conn):
            undo = popped.undo if isinstance(popped, _BranchPopped) else None
            if undo is not None and undo.cutoff is not None:
                conn.execute(
                    self.sql.restore_cutoff,
                    (undo.cutoff, session_id, undo.branch_id, undo.left),
                )
                return
            if conn.execute(self.sql.has_row, (popped.row_id,)).fetchone() is not None:
                return
            if undo is None:
                undo = self._undo_unknown(conn, session_id, popped)
            if not self.chain.exists(conn, session_id, undo.branch_id):
                return
            conn.execute(self.base.touch_session, (session_id,))
            conn.execute(self.base.insert_at, (popped.row_id, session_id, popped.text))
            if undo.meta is not None:
                conn.execute(
                    self.sql.insert_meta, (popped.row_id, session_id, undo.branch_id, *undo.meta)
                )

    def _undo_unknown(
        self, conn: sqlite3.Connection, session_id: str, popped: Popped[Any]
    ) -> _Undo:
        """Undo a pop this store did not record: re-add the row on the current branch."""
        head = self.chain.head(conn, session_id)
        kind, tool = self.chain.classify_text(popped.text)
        turn = self.chain.turn_now(conn, session_id, head) + (kind == "user")
        return _Undo(head.branch, (turn, kind, tool))

    def clear(self, conn: sqlite3.Connection, session_id: str) -> None:
        """Clear the current branch; clearing ``main`` deletes the whole session."""
        with transaction(conn):
            branch = self.chain.head(conn, session_id).branch
            if branch != MAIN:
                self.refuse_if_forks_see(conn, session_id, branch, 0, "clear the branch")
                self.delete_rows(conn, session_id, branch)
                conn.execute(self.sql.set_cutoff, (0, session_id, branch))
                return
            conn.execute(self.base.delete_messages, (session_id,))
            conn.execute(self.base.delete_session, (session_id,))
            for statement in (
                self.sql.delete_session_meta,
                self.sql.delete_branches,
                self.sql.delete_current,
                self.sql.delete_session_usage,
            ):
                conn.execute(statement, (session_id,))

    def delete_rows(self, conn: sqlite3.Connection, session_id: str, branch: str) -> None:
        """Delete a branch's own items, their records and its usage (inside a transaction)."""
        conn.execute(self.sql.delete_branch_messages, (session_id, branch))
        conn.execute(self.sql.delete_branch_meta, (session_id, branch))
        conn.execute(self.sql.delete_branch_usage, (session_id, branch))

    # Branches ------------------------------------------------------------------------------

    def create_branch(
        self, conn: sqlite3.Connection, session_id: str, turn: int, name: str | None
    ) -> str:
        """Fork the current branch before its ``turn``-th user message and switch to the fork.

        Raises:
            ValueError: the turn does not exist, or the name is taken.
        """
        with transaction(conn):
            conn.execute(self.sql.ensure_main, (session_id, MAIN))
            head = self.chain.head(conn, session_id)
            fork_at = self.chain.user_message_id(conn, session_id, head, turn)
            branch = name or f"branch_from_turn_{turn}_{uuid.uuid4().hex[:8]}"
            if self.chain.exists(conn, session_id, branch):
                raise ValueError(f"branch {branch!r} already exists in session {session_id!r}")
            conn.execute(self.sql.insert_branch, (session_id, branch, head.branch, fork_at))
            conn.execute(self.sql.set_current, (session_id, branch))
            return branch

    def switch(self, conn: sqlite3.Connection, session_id: str, branch: str) -> None:
        """Make ``branch`` the session's current branch.

        Raises:
            ValueError: the branch does not exist.
        """
        with transaction(conn):
            self.chain.resolve(conn, session_id, branch)
            conn.execute(self.sql.set_current, (session_id, branch))

    def delete_branch(
        self, conn: sqlite3.Connection, session_id: str, branch: str, *, force: bool
    ) -> None:
        """Delete a branch, its own items and its usage.

        Raises:
            ValueError: the branch is ``main``, unknown, forked from, or current without force.
        """
        with transaction(conn):
            if branch == MAIN:
                raise ValueError("the 'main' branch cannot be deleted")
            self.chain.resolve(conn, session_id, branch)
            children = [r[0] for r in conn.execute(self.sql.children, (session_id, branch))]
            if children:
                raise ValueError(
                    f"branch {branch!r} cannot be deleted: branches {children!r} fork from it"
                )
            if self.chain.head(conn, session_id).branch == branch:
                if not force:
                    raise ValueError(
                        f"branch {branch!r} is current: switch first, or pass force=True"
                    )
                conn.execute(self.sql.set_current, (session_id, MAIN))
            self.delete_rows(conn, session_id, branch)
            conn.execute(self.sql.delete_branch, (session_id, branch))

    def put_usage(
        self, conn: sqlite3.Connection, session_id: str, usage: tuple[object, ...]
    ) -> None:
        """Record usage columns against the current branch and its current user turn."""
        with transaction(conn):
            head = self.chain.head(conn, session_id)
            turn = self.chain.turn_now(conn, session_id, head)
            conn.execute(self.sql.put_usage, (session_id, head.branch, turn, *usage))


def write_batches(
    writer: Writer, busy_timeout: float, what: str, conn: sqlite3.Connection, batches: list[Batch]
) -> None:
    """Write several batches in one transaction: the group commit's writer.

    A module-level function over a store-free :class:`Writer`, so the worker thread that holds
    it does not keep the store alive.
    """

    def write(conn: sqlite3.Connection) -> None:
        writer.schema.ensure(conn)
        writer.write(conn, batches)

    guarded(write, busy_timeout, what)(conn)

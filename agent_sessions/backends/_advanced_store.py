"""``AdvancedSQLiteStore``: a :class:`SQLiteStore` whose reads and writes follow a branch.

A branch's history is its own rows plus its parent's visible history below a cutoff id
(``inherit_below``), applied up the chain of parents. Creating a branch writes one row; popping an
inherited item lowers the cutoff. Every call runs on the store's worker thread, each mutation in
one transaction, and the current branch lives in the database, so every object on the file agrees.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..schema import TableNames
from ..serialization import Codec, JsonCodec
from ..store import Popped
from ._advanced_chain import Chain
from ._advanced_sql import (
    MAIN,
    NO_CUTOFF,
    AdvancedStatements,
    Row,
    check_branch_name,
)
from ._sqlite_connection import MEMORY, transaction
from .sqlite import SQLiteStore

__all__ = ["AdvancedSQLiteStore", "UsageRow"]

T = TypeVar("T")
_UNDO_KEPT = 256  # pops whose caller may still be cancelled; restore needs only the last few


class _Undo(NamedTuple):
    """How to put back a popped row: re-insert it (own row) or raise the cutoff again."""

    branch_id: str
    cutoff: int | None
    user_turn: int
    item_type: str
    tool_name: str | None


class UsageRow(NamedTuple):
    """One turn's token usage, with its details as stored JSON text."""

    user_turn: int
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: str | None
    output_tokens_details: str | None


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
        self._ready = False  # read and set on the worker thread only
        self._undo: dict[tuple[str, int], _Undo] = {}
        super().__init__(db_path, tables=tables, durable=durable, busy_timeout=busy_timeout)

    async def _run(self, operation: str, call: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            if not self._ready:
                with transaction(conn):
                    for statement in self._adv.ddl:
                        conn.execute(statement)
                self._ready = True
            return call(conn)

        return await self._call(operation, run)

    # The Store protocol --------------------------------------------------------------------

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of the current branch (all if None), oldest first."""

        def read(conn: sqlite3.Connection) -> list[str]:
            rows = self._chain.visible(
                conn, session_id, self._chain.current(conn, session_id), limit
            )
            return [row.text for row in reversed(rows)]

        return await self._run("read", read)

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows on the current branch, with their turn metadata, in one transaction."""

        def append(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(self._adv.ensure_main, (session_id, MAIN))
                conn.execute(self._sql.touch_session, (session_id,))
                branch = self._chain.current(conn, session_id)
                turn = self._chain.turn_now(conn, session_id, branch)
                for text in texts:
                    kind, tool = self._chain.classify_text(text)
                    turn += kind == "user"
                    row_id = conn.execute(self._sql.insert, (session_id, text)).lastrowid
                    conn.execute(
                        self._adv.insert_meta, (row_id, session_id, branch, turn, kind, tool)
                    )

        await self._run("append", append)

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove the current branch's newest decodable item; hide it if it is inherited."""

        def pop(conn: sqlite3.Connection) -> Popped[T] | None:
            with transaction(conn):
                branch = self._chain.current(conn, session_id)
                before, batch = NO_CUTOFF, 1
                while True:
                    rows = self._chain.visible(conn, session_id, branch, batch, before)
                    for row in rows:
                        item = decode(row.text)
                        if item is not None:
                            self._take(conn, session_id, branch, row)
                            return Popped(row.id, row.text, item)
                    if len(rows) < batch:
                        return None
                    before, batch = rows[-1].id, min(batch * 4, 256)

        return await self._run("pop", pop)

    def _refuse_if_forks_see(
        self, conn: sqlite3.Connection, session_id: str, branch: str, row_id: int, action: str
    ) -> None:
        """Raise rather than change what a branch made from ``branch`` inherits.

        Raises:
            ValueError: a fork of ``branch`` sees rows from ``row_id`` on; nothing was changed.
        """
        forks = [r[0] for r in conn.execute(self._adv.forks_seeing, (session_id, branch, row_id))]
        if forks:
            raise ValueError(
                f"cannot {action} on branch {branch!r}: branch(es) {', '.join(map(repr, forks))} "
                "were made from that part of it and would change too; delete them first"
            )

    def _take(self, conn: sqlite3.Connection, session_id: str, branch: str, row: Row) -> None:
        self._refuse_if_forks_see(conn, session_id, branch, row.id, "pop this item")
        if row.branch_id == branch:
            conn.execute(self._sql.delete_row, (row.id,))
            conn.execute(self._adv.delete_meta, (row.id,))
            kind, tool = (row.item_type, row.tool_name)
            if kind is None:
                kind, tool = self._chain.classify_text(row.text)
            undo = _Undo(branch, None, row.user_turn or 0, kind, tool)
        else:
            # Inherited: the parent keeps it; this branch stops inheriting from its id on.
            _, inherit_below = self._chain.cutoff(conn, session_id, branch)
            conn.execute(self._adv.set_cutoff, (row.id, session_id, branch))
            undo = _Undo(branch, inherit_below, 0, "", None)
        self._undo[session_id, row.id] = undo
        if len(self._undo) > _UNDO_KEPT:
            del self._undo[next(iter(self._undo))]

    async def restore(self, session_id: str, popped: Popped[Any]) -> None:
        """Undo a pop: put the row back under its id, or restore the branch's cutoff."""

        def restore(conn: sqlite3.Connection) -> None:
            undo = self._undo.pop((session_id, popped.row_id), None)
            with transaction(conn):
                if undo is None:
                    undo = self._undo_lost(conn, session_id, popped)
                    if undo is None:
                        return
                if undo.cutoff is not None:
                    conn.execute(self._adv.set_cutoff, (undo.cutoff, session_id, undo.branch_id))
                    return
                conn.execute(self._sql.touch_session, (session_id,))
                conn.execute(self._sql.insert_at, (popped.row_id, session_id, popped.text))
                conn.execute(
                    self._adv.insert_meta,
                    (
                        popped.row_id,
                        session_id,
                        undo.branch_id,
                        undo.user_turn,
                        undo.item_type,
                        undo.tool_name,
                    ),
                )

        await self._run("restore", restore)

    def _undo_lost(
        self, conn: sqlite3.Connection, session_id: str, popped: Popped[Any]
    ) -> _Undo | None:
        """Rebuild the undo record of a pop too old to be remembered: re-add a deleted row."""
        if conn.execute(self._adv.has_row, (popped.row_id,)).fetchone() is not None:
            return None  # it was hidden, not deleted: the cutoff it needs is not known
        branch = self._chain.current(conn, session_id)
        kind, tool = self._chain.classify_text(popped.text)
        turn = self._chain.turn_now(conn, session_id, branch) + (kind == "user")
        return _Undo(branch, None, turn, kind, tool)

    async def clear(self, session_id: str) -> None:
        """Clear the current branch; clearing ``main`` deletes the whole session."""

        def clear(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                branch = self._chain.current(conn, session_id)
                if branch != MAIN:
                    self._refuse_if_forks_see(conn, session_id, branch, 0, "clear the branch")
                    conn.execute(self._adv.delete_branch_messages, (session_id, branch))
                    conn.execute(self._adv.delete_branch_meta, (session_id, branch))
                    conn.execute(self._adv.delete_branch_usage, (session_id, branch))
                    conn.execute(self._adv.set_cutoff, (0, session_id, branch))
                    return
                conn.execute(self._sql.delete_messages, (session_id,))
                conn.execute(self._sql.delete_session, (session_id,))
                for statement in (
                    self._adv.delete_session_meta,
                    self._adv.delete_branches,
                    self._adv.delete_current,
                    self._adv.delete_session_usage,
                ):
                    conn.execute(statement, (session_id,))

        await self._run("clear", clear)

    # Branches ------------------------------------------------------------------------------

    async def current_branch(self, session_id: str) -> str:
        """Return the session's current branch."""
        return await self._run("current_branch", lambda conn: self._chain.current(conn, session_id))

    async def history(self, session_id: str, branch: str | None) -> list[Row]:
        """Return a branch's visible rows oldest first, each classified (current if None).

        Raises:
            ValueError: the branch does not exist.
        """

        def history(conn: sqlite3.Connection) -> list[Row]:
            resolved = self._chain.resolve(conn, session_id, branch)
            rows = self._chain.visible(conn, session_id, resolved, None, classify_all=True)
            rows.reverse()
            return rows

        return await self._run("history", history)

    async def create_branch(self, session_id: str, turn: int, name: str | None) -> str:
        """Fork the current branch before its ``turn``-th user message and switch to the fork.

        Raises:
            ValueError: the turn does not exist, or the name is invalid or taken.
        """
        if name is not None:
            check_branch_name(name)

        def create(conn: sqlite3.Connection) -> str:
            with transaction(conn):
                conn.execute(self._adv.ensure_main, (session_id, MAIN))
                parent = self._chain.current(conn, session_id)
                fork_at = self._chain.user_message_id(conn, session_id, parent, turn)
                branch = name or f"branch_from_turn_{turn}_{uuid.uuid4().hex[:8]}"
                if self._chain.exists(conn, session_id, branch):
                    raise ValueError(f"branch {branch!r} already exists in session {session_id!r}")
                conn.execute(self._adv.insert_branch, (session_id, branch, parent, fork_at))
                conn.execute(self._adv.set_current, (session_id, branch))
                return branch

        return await self._run("create_branch", create)

    async def switch(self, session_id: str, branch: str) -> None:
        """Make ``branch`` the session's current branch.

        Raises:
            ValueError: the branch does not exist.
        """

        def switch(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                self._chain.resolve(conn, session_id, branch)
                conn.execute(self._adv.set_current, (session_id, branch))

        await self._run("switch_to_branch", switch)

    async def delete_branch(self, session_id: str, branch: str, *, force: bool) -> None:
        """Delete a branch, its own items and its usage.

        Raises:
            ValueError: the branch is ``main``, unknown, forked from, or current without force.
        """

        def delete(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                if branch == MAIN:
                    raise ValueError("the 'main' branch cannot be deleted")
                self._chain.resolve(conn, session_id, branch)
                children = [r[0] for r in conn.execute(self._adv.children, (session_id, branch))]
                if children:
                    raise ValueError(
                        f"branch {branch!r} cannot be deleted: branches {children!r} fork from it"
                    )
                if self._chain.current(conn, session_id) == branch:
                    if not force:
                        raise ValueError(
                            f"branch {branch!r} is current: switch first, or pass force=True"
                        )
                    conn.execute(self._adv.set_current, (session_id, MAIN))
                conn.execute(self._adv.delete_branch_messages, (session_id, branch))
                conn.execute(self._adv.delete_branch_meta, (session_id, branch))
                conn.execute(self._adv.delete_branch_usage, (session_id, branch))
                conn.execute(self._adv.delete_branch, (session_id, branch))

        await self._run("delete_branch", delete)

    async def list_branches(self, session_id: str) -> list[dict[str, Any]]:
        """Return each branch with the size of its visible history, main first."""

        def branches(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            current = self._chain.current(conn, session_id)
            found = list(conn.execute(self._adv.branches, (session_id,)))
            if all(row[0] != MAIN for row in found):
                found.insert(0, (MAIN, None, None))
            listed = []
            for branch, _parent, created_at in found:
                rows = self._chain.visible(conn, session_id, branch, None, classify_all=True)
                listed.append(
                    {
                        "branch_id": branch,
                        "message_count": len(rows),
                        "user_turns": sum(row.item_type == "user" for row in rows),
                        "created_at": created_at,
                        "is_current": branch == current,
                    }
                )
            return listed

        return await self._run("list_branches", branches)

    # Usage ---------------------------------------------------------------------------------

    async def put_usage(self, session_id: str, usage: UsageRow) -> None:
        """Record usage against the current branch and its current user turn.

        ``usage.user_turn`` is ignored; a second record for one turn replaces the first.
        """

        def put(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                branch = self._chain.current(conn, session_id)
                turn = self._chain.turn_now(conn, session_id, branch)
                conn.execute(self._adv.put_usage, (session_id, branch, turn, *usage[1:]))

        await self._run("store_run_usage", put)

    async def session_usage(self, session_id: str, branch: str | None) -> tuple[Any, ...]:
        """Return summed usage and the turn count, of one branch or (None) of all branches."""

        def sums(conn: sqlite3.Connection) -> tuple[Any, ...]:
            if branch is None:
                row = conn.execute(self._adv.session_usage, (session_id,)).fetchone()
            else:
                row = conn.execute(self._adv.branch_usage, (session_id, branch)).fetchone()
            return tuple(row)

        return await self._run("get_session_usage", sums)

    async def turn_usage(self, session_id: str, branch: str | None) -> list[UsageRow]:
        """Return a branch's usage rows by turn (the current branch if None)."""

        def turns(conn: sqlite3.Connection) -> list[UsageRow]:
            resolved = self._chain.resolve(conn, session_id, branch)
            rows = conn.execute(self._adv.turn_usage, (session_id, resolved))
            return [UsageRow(*row) for row in rows]

        return await self._run("get_turn_usage", turns)

"""The branch, turn and usage operations of an advanced store, written once for every backend.

A store mixes :class:`BranchOps` in and says how to run a call on a connection: ``_write_call`` in a
write transaction that holds the session's lock, ``_read_call`` in one read snapshot. The calls are
the :class:`~agent_sessions.backends.advanced.chain.Chain` reads and the
:class:`~agent_sessions.backends.advanced.write.Writer` transactions, which take any
:class:`~agent_sessions.backends.advanced.db.Connection`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple, TypeVar

from ...core import tail_fetch, tail_window
from ...store import ArchiveBatch, ArchivedRow, Popped, StoredRecord, always
from .._restore import ClearLog, with_mark
from .archive import add_batch, archived_rows, drop_batch
from .chain import Chain, UserRow
from .db import Connection, transaction
from .sql import MAIN, AdvancedStatements, check_branch_name
from .types import BranchInfo
from .write import Writer

__all__ = ["BranchOps", "HistoryRows", "UsageRow"]

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


class HistoryRows(NamedTuple):
    """What ``history()`` is made of, read in one snapshot."""

    users: list[UserRow]
    """The branch's visible user messages, numbered by turn, each with the branch holding it."""
    items: dict[int, int]
    """How many visible items each turn holds (turn 0: those before the first user message)."""
    usage: list[UsageRow]
    """The usage recorded on the branch, by turn."""


class BranchOps:
    """Branches, turns and usage over ``_write_call`` and ``_read_call`` (each store's own)."""

    _adv: AdvancedStatements
    _chain: Chain
    _writer: Writer
    _clears: ClearLog
    _record_sql: str
    """Selects what identifies a session's record (``?``: the session id); a clear deletes it."""

    async def _write_call(
        self, operation: str, session_id: str, call: Callable[[Connection], T]
    ) -> T:
        """Run ``call`` in one write transaction that holds ``session_id``'s lock."""
        raise NotImplementedError

    async def _read_call(
        self, operation: str, call: Callable[[Connection], T], *, snapshot: bool = True
    ) -> T:
        """Run a read-only ``call`` in one read snapshot (with ``snapshot`` False, as it is)."""
        raise NotImplementedError

    # The Store protocol (append is each store's own) -------------------------------------

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

        def read(conn: Connection) -> list[str]:
            texts = self._chain.read_texts(conn, session_id, branch, limit)
            texts.reverse()
            return texts

        return await self._read_call("read", read, snapshot=False)

    async def _keeps_provenance(self) -> bool:
        """Whether the messages table has the provenance columns (a server's may lack them)."""
        return True

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the current branch's newest ``limit`` rows with their provenance, oldest first.

        The rows :meth:`read` returns, in its order; an item inherited from a parent branch
        keeps the provenance it was stored with.
        """
        if not await self._keeps_provenance():
            texts = await self.read(session_id, limit)
            return [StoredRecord(text, None, None, None, None) for text in texts]

        def records(conn: Connection) -> list[StoredRecord]:
            head = self._chain.head(conn, session_id)
            found = self._chain.records(conn, session_id, head, limit)
            found.reverse()
            return [StoredRecord.from_columns(*row[1:]) for row in found]

        return await self._read_call("read", records)

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove the current branch's newest decodable item; hide it if it is inherited.

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
        keep = await self._keeps_provenance()

        def pop_through(conn: Connection) -> list[Popped[T]]:
            taken = self._writer.pop_through(conn, session_id, decode, stop, provenance=keep)
            if not taken:
                return taken
            branch = self._chain.head(conn, session_id).branch
            return self._marked(conn, session_id, (session_id, branch), taken)

        return await self._write_call("pop", session_id, pop_through)

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the current branch's newest ``limit`` rows as ``(row_id, text)``, oldest first.

        Returns:
            The rows, and whether they are the branch's whole visible history.
        """

        def tail(conn: Connection) -> tuple[list[tuple[int, str]], bool]:
            head = self._chain.head(conn, session_id)
            rows = self._chain.visible(conn, session_id, head, tail_fetch(limit))
            return tail_window([(row.id, row.text) for row in rows], limit)

        return await self._read_call("read", tail)

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the current branch's newest rows for ``texts`` if they are exactly ``expected``.

        In one transaction; forks keep what they showed. With it, advanced sessions support
        the SDK's suffix compaction and :meth:`~agent_sessions.core.StoreSession.replace_items`.

        Returns:
            Whether the rows were swapped (False if the branch's tail changed meanwhile).
        """
        return await self._write_call(
            "replace tail",
            session_id,
            lambda conn: self._writer.replace_tail(conn, session_id, expected, texts),
        )

    # The archive: the session's, whatever the branch (see .archive) ---------------------------

    def _swap_then(
        self,
        conn: Connection,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        then: Callable[[Connection], None],
    ) -> bool:
        with transaction(conn):  # the swap joins it: one transaction for both
            if not self._writer.replace_tail(conn, session_id, expected, texts):
                return False
            then(conn)
            return True

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows (every branch's), oldest batch first."""
        tables = self._adv.tables
        return await self._read_call(
            "read archive", lambda conn: archived_rows(conn, tables, session_id)
        )

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """Swap the current branch's newest rows and archive ``batch``, in one transaction."""
        tables = self._adv.tables
        return await self._write_call(
            "compact",
            session_id,
            lambda conn: self._swap_then(
                conn, session_id, expected, texts, lambda c: add_batch(c, tables, session_id, batch)
            ),
        )

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """Swap the current branch's newest rows and drop archive ``batch``, at once."""
        tables = self._adv.tables
        return await self._write_call(
            "uncompact",
            session_id,
            lambda conn: self._swap_then(
                conn,
                session_id,
                expected,
                texts,
                lambda c: drop_batch(c, tables, session_id, batch),
            ),
        )

    def _record(self, conn: Connection, session_id: str) -> tuple[Any, ...] | None:
        row = conn.execute(self._record_sql, (session_id,)).fetchone()
        return None if row is None else tuple(row)

    def _marked(
        self, conn: Connection, session_id: str, key: Hashable, taken: list[Popped[T]]
    ) -> list[Popped[T]]:
        """Attach to popped rows what their restore checks, in the pop's transaction."""
        return with_mark(taken, self._clears.mark(key, self._record(conn, session_id)))

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Undo a pop in one transaction: put rows back under their ids, or restore the cutoff.

        Nothing comes back that a clear of its branch (by this store) or of its session (by
        anyone: the session record is gone or new) removed after the pop.
        """
        if not popped:
            return

        def restore(conn: Connection) -> None:
            # The record is read inside the writer's transaction, under the session's lock.
            self._writer.restore(
                conn,
                session_id,
                popped,
                lambda row: self._clears.may_restore(row, self._record(conn, session_id)),
            )

        await self._write_call("restore", session_id, restore)

    async def clear(self, session_id: str) -> None:
        """Clear the current branch; clearing ``main`` deletes the whole session."""

        def clear(conn: Connection) -> None:
            branch = self._chain.head(conn, session_id).branch
            self._writer.clear(conn, session_id)
            self._clears.note((session_id, branch))

        await self._write_call("clear", session_id, clear)

    # Branches ------------------------------------------------------------------------------

    async def current_branch(self, session_id: str) -> str:
        """Return the session's current branch."""
        return await self._read_call(
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
        return await self._write_call(
            "create_branch",
            session_id,
            lambda conn: self._writer.create_branch(conn, session_id, turn, name),
        )

    async def switch(self, session_id: str, branch: str) -> None:
        """Make ``branch`` the session's current branch.

        Raises:
            ValueError: the branch does not exist.
        """
        await self._write_call(
            "switch_to_branch",
            session_id,
            lambda conn: self._writer.switch(conn, session_id, branch),
        )

    async def delete_branch(self, session_id: str, branch: str, *, force: bool) -> None:
        """Delete a branch, its records and usage; its forks keep what they showed.

        Raises:
            ValueError: the branch is ``main``, unknown, or current without force.
        """
        await self._write_call(
            "delete_branch",
            session_id,
            lambda conn: self._writer.delete_branch(conn, session_id, branch, force=force),
        )

    async def list_branches(self, session_id: str) -> list[BranchInfo]:
        """Return each branch with the size of its visible history, main first."""

        def branches(conn: Connection) -> list[BranchInfo]:
            current = self._chain.head(conn, session_id).branch
            found = list(conn.execute(self._adv.branches, {"session": session_id}))
            if all(row[0] != MAIN for row in found):
                found.insert(0, (MAIN, None, 0))
            listed: list[BranchInfo] = []
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

        return await self._read_call("list_branches", branches)

    async def rewind(self, session_id: str, turn: int, keep_as: str | None) -> str:
        """Move the current branch back to before its ``turn``; a new branch keeps the rest.

        Returns:
            The keeper's id (see :meth:`Writer.rewind`).

        Raises:
            ValueError: the turn does not exist, or the name is invalid or was used.
            TypeError: the name is not a string.
        """
        if keep_as is not None:
            check_branch_name(keep_as)
        return await self._write_call(
            "rewind",
            session_id,
            lambda conn: self._writer.rewind(conn, session_id, turn, keep_as),
        )

    # Turns ---------------------------------------------------------------------------------

    async def user_turns(self, session_id: str, branch: str | None) -> list[UserRow]:
        """Return a branch's visible user messages numbered by turn (current branch if None).

        Raises:
            ValueError: the branch does not exist.
        """
        return await self._read_call(
            "get_conversation_turns",
            lambda conn: self._chain.users(
                conn, session_id, self._chain.resolve(conn, session_id, branch)
            ),
        )

    async def history(self, session_id: str, branch: str | None) -> HistoryRows:
        """Return a branch's turns, their item counts and its usage, in one snapshot.

        One pass over the branch's segments for the user messages, one for the item kinds
        and one query for the usage: the count of statements grows with the chain of
        parents, not with the number of turns.

        Raises:
            ValueError: the branch does not exist.
        """

        def read(conn: Connection) -> HistoryRows:
            head = self._chain.resolve(conn, session_id, branch)
            items: dict[int, int] = {}
            for turn, _kind, _tool in self._chain.kinds(conn, session_id, head):
                items[turn] = items.get(turn, 0) + 1
            usage = conn.execute(self._adv.turn_usage, (session_id, head.branch))
            return HistoryRows(
                self._chain.users(conn, session_id, head),
                items,
                [UsageRow(*row) for row in usage],
            )

        return await self._read_call("history", read)

    async def item_kinds(
        self, session_id: str, branch: str | None
    ) -> list[tuple[int, str, str | None]]:
        """Return each visible item's turn, type and tool name, oldest first.

        Raises:
            ValueError: the branch does not exist.
        """
        return await self._read_call(
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
        return await self._read_call(
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
        await self._write_call(
            "store_run_usage",
            session_id,
            lambda conn: self._writer.put_usage(conn, session_id, usage[1:]),
        )

    async def session_usage(self, session_id: str, branch: str | None) -> tuple[Any, ...]:
        """Return summed usage and the turn count, of one branch or (None) of all branches."""

        def sums(conn: Connection) -> tuple[Any, ...]:
            if branch is None:
                row = conn.execute(self._adv.session_usage, (session_id,)).fetchone()
            else:
                row = conn.execute(self._adv.branch_usage, (session_id, branch)).fetchone()
            return tuple(row)

        return await self._read_call("get_session_usage", sums)

    async def turn_usage(self, session_id: str, branch: str | None) -> list[UsageRow]:
        """Return a branch's usage rows by turn (the current branch if None)."""

        def turns(conn: Connection) -> list[UsageRow]:
            resolved = self._chain.resolve(conn, session_id, branch).branch
            rows = conn.execute(self._adv.turn_usage, (session_id, resolved))
            return [UsageRow(*row) for row in rows]

        return await self._read_call("get_turn_usage", turns)

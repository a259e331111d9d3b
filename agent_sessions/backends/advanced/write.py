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

from ...schema import VERSION_TABLE
from ...store import Popped, Taker
from .._group_commit import Batch
from ..sqlite import guarded
from .chain import Chain, Head
from .db import Connection, transaction
from .sql import (
    MAIN,
    MIGRATIONS,
    NO_CUTOFF,
    AdvancedStatements,
    Row,
    bind_existing,
    schema_version,
    set_schema_version,
)

__all__ = ["BaseStatements", "Inserter", "Schema", "Writer", "write_batches"]

T = TypeVar("T")

_ROWS_PER_INSERT = 1000
"""Rows per multi-row INSERT: PostgreSQL takes at most 32,767 parameters in one statement."""


Inserter = Callable[[Connection, str, Sequence[str]], list[int]]
"""Inserts a session's message rows in order and returns their ids."""


class BaseStatements(NamedTuple):
    """The statements of the SDK's two tables that the branch-aware writes reuse."""

    touch_session: str
    insert: str
    insert_at: str
    delete_row: str
    delete_messages: str
    delete_session: str
    insert_rows: Callable[[int], str] | None = None
    """An INSERT of ``n`` rows (``?`` pairs: session, text) returning their ids, where one
    statement costs less than ``n`` (a network round trip each); None: one INSERT per row."""


class Schema:
    """Brings the branch tables up to date once per store, on the worker thread.

    The steps are :data:`MIGRATIONS`, in order, from the version the file records; a file at
    the latest version is not written to, so a read-only or busy file still opens for reading.

    Args:
        sql: The statements of the store's tables.
        classify_text: Classifies a stored row, for the structure rows a migration writes.
    """

    def __init__(
        self, sql: AdvancedStatements, classify_text: Callable[[str], tuple[str, str | None]]
    ) -> None:
        self._sql = sql
        self._classify = classify_text
        self.ready = False  # set on the worker thread; the loop's reader waits for it

    def ensure(self, conn: Connection) -> None:
        """Migrate the tables unless this store did already or they are up to date."""
        if self.ready:
            return
        if schema_version(conn, self._sql) < len(MIGRATIONS):
            with transaction(conn):
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                    "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                )
                version = schema_version(conn, self._sql)  # another process may have, meanwhile
                for step in MIGRATIONS[version:]:
                    step(conn, self._sql, self._classify)
                set_schema_version(conn, self._sql, len(MIGRATIONS))
        bind_existing(conn, self._sql)
        self.ready = True


class _Undo(NamedTuple):
    """How to put back a popped row: its own record again, or the cutoff a pop lowered."""

    branch_id: str
    meta: tuple[str, int, int | None, str | None] | None
    """An own row's item type, sequence number, turn and tool name; None if it had none."""
    cutoff: int | None = None
    """The cutoff to raise back to, if the pop hid an inherited row (None: own row)."""
    left: int = 0
    """The cutoff that pop left in place: a cutoff moved since then is not raised."""


class _BranchPopped(Popped[T]):
    """A :class:`Popped` that carries its own undo record, so restore needs no memory.

    ``provenance`` holds the schema v4 values of a tagged row the pop deleted.
    """

    undo: _Undo
    provenance: tuple[Any, ...] | None = None


def _popped(taken: Popped[T], undo: _Undo, provenance: tuple[Any, ...] | None) -> Popped[T]:
    popped = _BranchPopped(*taken)
    popped.undo = undo
    popped.provenance = provenance
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

    def append(
        self,
        conn: Connection,
        session_id: str,
        texts: Sequence[str],
        insert: Inserter | None = None,
    ) -> None:
        """Store rows on the current branch with their structure rows (inside a transaction).

        ``insert`` stores the message rows and returns their ids (a tagged append's, with
        provenance); the plain INSERT by default. A caller that gives ``insert`` has upserted
        the session row in the transaction already.
        """
        if insert is None:
            conn.execute(self.base.touch_session, (session_id,))
        head = self.chain.head(conn, session_id)
        if not head.recorded:  # the session's first write, or its branch was just deleted
            conn.execute(self.sql.ensure_main, (session_id, MAIN))
        turn = self.chain.turn_now(conn, session_id, head)
        (sequence,) = conn.execute(self.sql.next_sequence, (session_id,)).fetchone()
        records = []
        ids = (insert or self._insert)(conn, session_id, texts)
        for text, row_id in zip(texts, ids, strict=True):
            kind, tool = self.chain.classify_text(text)
            turn += kind == "user"
            sequence += 1
            records.append((session_id, row_id, head.branch, kind, sequence, turn, turn, tool))
        conn.executemany(self.sql.insert_structure, records)

    def _insert(self, conn: Connection, session_id: str, texts: Sequence[str]) -> list[int]:
        """Insert the rows in order and return their ids (not promised to be consecutive)."""
        many = self.base.insert_rows
        if many is None or len(texts) < 2:  # noqa: PLR2004 (one row needs no batch)
            return [
                int(conn.execute(self.base.insert, (session_id, t)).lastrowid or 0) for t in texts
            ]
        ids: list[int] = []
        for start in range(0, len(texts), _ROWS_PER_INSERT):
            chunk = texts[start : start + _ROWS_PER_INSERT]
            params = [value for text in chunk for value in (session_id, text)]
            # Rows get ids in VALUES order; sorted, they match the texts whatever order
            # RETURNING lists them in.
            ids.extend(sorted(int(row[0]) for row in conn.execute(many(len(chunk)), params)))
        return ids

    def write(self, conn: Connection, batches: Sequence[Batch]) -> None:
        """Store batches (of one session or several) in one transaction."""
        with transaction(conn):
            for session_id, texts in batches:
                self.append(conn, session_id, texts)

    def pop_through(
        self,
        conn: Connection,
        session_id: str,
        decode: Callable[[str], T | None],
        stop: Callable[[T], bool],
        *,
        provenance: bool = True,
    ) -> list[Popped[T]]:
        """Remove the current branch's newest items down to the first ``stop`` accepts.

        ``provenance``: the table has the provenance columns (their values are kept for a
        restore).

        Own rows lose their structure row (and the message goes once no branch holds it);
        inherited ones are hidden by lowering the branch's cutoff. Forks made from the part
        popped first take their own records of what they see, so they keep it.

        Returns:
            The removed items, newest first; none if ``stop`` accepted none.
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
            self.detach_forks(conn, session_id, head, min(p.row_id for p in taken))
            # Inherited rows stay for the parent: the branch stops inheriting from the lowest.
            inherited = [p.row_id for p in taken if seen[p.row_id].branch_id != head.branch]
            cut = min(inherited, default=0)
            popped = [
                _popped(
                    p, *self._take_keeping_provenance(conn, head, seen[p.row_id], cut, provenance)
                )
                for p in taken
            ]
            if inherited:
                conn.execute(self.sql.set_cutoff, (cut, session_id, head.branch))
            left = self.chain.turn_now(conn, session_id, self.chain.head(conn, session_id))
            conn.execute(self.sql.drop_usage_after, (session_id, head.branch, left))
            return popped

    def _rows_from(
        self, conn: Connection, session_id: str, head: Head, low: int, before: int
    ) -> list[Row]:
        """Return the branch's visible rows with ids in ``[low, before)``, newest first."""
        found: list[Row] = []
        batch = 16
        while True:
            rows = self.chain.visible(conn, session_id, head, batch, before)
            for row in rows:
                if row.id < low:
                    return found
                found.append(row)
            if len(rows) < batch:
                return found
            before, batch = rows[-1].id, min(batch * 4, 1024)

    def _hold(self, conn: Connection, session_id: str, branch: str, rows: list[Row]) -> None:
        """Give ``branch`` structure rows of its own for ``rows`` (their metadata kept)."""
        records = []
        for row in rows:
            kind, tool = (
                (row.item_type, row.tool_name)
                if row.item_type is not None
                else self.chain.classify_text(row.text)
            )
            seq = row.sequence if row.sequence is not None else 0
            turn = row.user_turn
            records.append((session_id, row.id, branch, kind, seq, turn, turn, tool))
        conn.executemany(self.sql.insert_structure, records)

    def detach_forks(self, conn: Connection, session_id: str, head: Head, low: int) -> list[Row]:
        """Before rows from id ``low`` on leave ``head``'s branch, let forks keep seeing them.

        Each fork made from the branch that inherits rows at or above ``low`` gets structure
        rows of its own for them, and its cutoff drops to ``low``: what it shows is unchanged,
        and the copy is only of the part between the change and the fork point. On ``main``,
        rows a plain session wrote (no structure row) first get one of ``main``'s: a row a
        fork holds a record of is no longer ``main``'s otherwise, and ``main`` must keep
        the ones it does not give up.

        Returns:
            The branch's visible rows from ``low`` up to the highest fork's cutoff, newest
            first, as they were before (none if no fork inherits from ``low`` on).
        """
        forks = [
            (fork, int(inherit_below))
            for fork, inherit_below in conn.execute(
                self.sql.children, (session_id, head.branch)
            ).fetchall()
            if inherit_below > low
        ]
        if not forks:
            return []
        # One walk, before any record changes what the branch shows.
        rows = self._rows_from(conn, session_id, head, low, max(below for _, below in forks))
        if head.branch == MAIN:
            self._hold(conn, session_id, MAIN, [row for row in rows if row.item_type is None])
        for fork, inherit_below in forks:
            self._hold(conn, session_id, fork, [row for row in rows if row.id < inherit_below])
            conn.execute(self.sql.set_cutoff, (low, session_id, fork))
        return rows

    def _take_keeping_provenance(
        self, conn: Connection, head: Head, row: Row, cut: int, columns: bool
    ) -> tuple[_Undo, tuple[Any, ...] | None]:
        """:meth:`_take`, with the provenance of an own row read first (a restore needs it).

        ``columns``: whether the table has the provenance columns at all.
        """
        provenance = None
        if columns and row.branch_id == head.branch:
            found = conn.execute(self.sql.row_provenance, (row.id,)).fetchone()
            provenance = None if found is None else tuple(found)
        return self._take(conn, head, row, cut), provenance

    def _take(self, conn: Connection, head: Head, row: Row, cut: int) -> _Undo:
        """Remove an own row; return how to undo taking it (an inherited row needs ``cut``)."""
        if row.branch_id != head.branch:
            # Every inherited row of one pop returns to the same cutoff, once.
            return _Undo(head.branch, None, head.inherit_below, cut)
        if row.item_type is None:  # a plain session's row (main's record if a fork took one)
            conn.execute(self.sql.delete_structure_any, (row.id, head.branch))
            conn.execute(self.sql.delete_if_orphan, (row.id, row.id))
            if conn.execute(self.sql.has_row, (row.id,)).fetchone() is None:
                return _Undo(head.branch, None)  # gone: it goes back as it was
            # A fork holds it (see detach_forks): an undo gives main a record of it again.
            kind, tool = self.chain.classify_text(row.text)
            return _Undo(head.branch, (kind, 0, row.user_turn, tool))
        # The id is unique to the session, so the session needs no check here.
        conn.execute(self.sql.delete_structure_any, (row.id, head.branch))
        conn.execute(self.sql.delete_if_orphan, (row.id, row.id))
        return _Undo(head.branch, (row.item_type, row.sequence or 0, row.user_turn, row.tool_name))

    def restore(
        self,
        conn: Connection,
        session_id: str,
        popped: Sequence[Popped[Any]],
        restorable: Callable[[Popped[Any]], bool],
    ) -> None:
        """Undo a pop in one transaction: put its rows back, or raise the lowered cutoff again.

        Only rows ``restorable`` accepts go back. Nothing is put back on a branch deleted
        meanwhile, nor over a record that is back already; a cutoff another pop or a clear has
        moved since stays where they put it.
        """
        with transaction(conn):
            for row in popped:
                if restorable(row):
                    self._restore_row(conn, session_id, row)

    def _restore_row(self, conn: Connection, session_id: str, popped: Popped[Any]) -> None:
        undo = popped.undo if isinstance(popped, _BranchPopped) else None
        if undo is not None and undo.cutoff is not None:
            conn.execute(
                self.sql.restore_cutoff,
                (undo.cutoff, session_id, undo.branch_id, undo.left),
            )
            return
        present = conn.execute(self.sql.has_row, (popped.row_id,)).fetchone() is not None
        if undo is None:
            if present:
                return
            undo = self._undo_unknown(conn, session_id, popped)
        if undo.meta is None and present:
            return
        if not self.chain.exists(conn, session_id, undo.branch_id):
            return
        if undo.meta is not None:
            held = (popped.row_id, undo.branch_id)
            if conn.execute(self.sql.has_structure, held).fetchone() is not None:
                return
        if not present:
            provenance = popped.provenance if isinstance(popped, _BranchPopped) else None
            if provenance is None:
                conn.execute(self.base.touch_session, (session_id,))
                conn.execute(self.base.insert_at, (popped.row_id, session_id, popped.text))
            else:
                _, run_id, position, _, _ = provenance
                again = (session_id, run_id, position)
                if conn.execute(self.sql.has_run_position, again).fetchone() is not None:
                    return  # its run's retry stored it again meanwhile: one copy is kept
                conn.execute(self.base.touch_session, (session_id,))
                conn.execute(
                    self.sql.insert_at_tagged, (popped.row_id, session_id, popped.text, *provenance)
                )
        if undo.meta is not None:
            kind, seq, turn, tool = undo.meta
            conn.execute(
                self.sql.insert_structure,
                (session_id, popped.row_id, undo.branch_id, kind, seq, turn, turn, tool),
            )

    def _undo_unknown(self, conn: Connection, session_id: str, popped: Popped[Any]) -> _Undo:
        """Undo a pop this store did not record: re-add the row on the current branch."""
        head = self.chain.head(conn, session_id)
        kind, tool = self.chain.classify_text(popped.text)
        turn = self.chain.turn_now(conn, session_id, head) + (kind == "user")
        (seq,) = conn.execute(self.sql.next_sequence, (session_id,)).fetchone()
        return _Undo(head.branch, (kind, seq + 1, turn, tool))

    def clear(self, conn: Connection, session_id: str) -> None:
        """Clear the current branch; clearing ``main`` deletes the whole session.

        Forks of a cleared branch keep what they saw (see :meth:`detach_forks`). Branch ids
        stay reserved, and the SDK's clear generation moves on, so an SDK object on the file
        drops back to ``main`` as after its own clear.
        """
        with transaction(conn):
            head = self.chain.head(conn, session_id)
            if head.branch != MAIN:
                self.detach_forks(conn, session_id, head, 0)
                self.delete_rows(conn, session_id, head.branch)
                conn.execute(self.sql.set_cutoff, (0, session_id, head.branch))
                return
            conn.execute(self.base.delete_messages, (session_id,))
            conn.execute(self.base.delete_session, (session_id,))
            for statement in (
                self.sql.delete_session_structure,
                self.sql.delete_branches,
                self.sql.delete_current,
                self.sql.delete_session_usage,
                self.sql.bump_generation,
            ):
                conn.execute(statement, (session_id,))
            for table in (self.sql.tables.state, self.sql.tables.archive):  # start over: all of it
                conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    def delete_rows(self, conn: Connection, session_id: str, branch: str) -> None:
        """Delete a branch's records, the messages no other branch holds, and its usage."""
        ids = [r[0] for r in conn.execute(self.sql.branch_message_ids, (session_id, branch))]
        conn.execute(self.sql.delete_branch_structure, (session_id, branch))
        conn.executemany(self.sql.delete_if_orphan, [(i, i) for i in ids])
        conn.execute(self.sql.delete_branch_usage, (session_id, branch))

    # Branches ------------------------------------------------------------------------------

    def create_branch(self, conn: Connection, session_id: str, turn: int, name: str | None) -> str:
        """Fork the current branch before its ``turn``-th user message and switch to the fork.

        Raises:
            ValueError: the turn does not exist, or the name is or was used in the session.
        """
        with transaction(conn):
            conn.execute(self.sql.ensure_main, (session_id, MAIN))
            head = self.chain.head(conn, session_id)
            fork_at = self.chain.user_message_id(conn, session_id, head, turn)
            branch = self._new_branch(
                conn,
                session_id,
                name,
                f"branch_from_turn_{turn}",
                parent=head.branch,
                inherit_below=fork_at,
            )
            conn.execute(self.sql.set_current, (session_id, branch))
            return branch

    def _new_branch(
        self,
        conn: Connection,
        session_id: str,
        name: str | None,
        prefix: str,
        *,
        parent: str,
        inherit_below: int,
    ) -> str:
        """Record a branch of ``parent`` named ``name`` (generated from ``prefix`` if None).

        Raises:
            ValueError: the name is or was used in the session.
        """
        if name is None:
            branch = f"{prefix}_{uuid.uuid4().hex[:8]}"
            while self._used(conn, session_id, branch):
                branch = f"{prefix}_{uuid.uuid4().hex[:8]}"
        else:
            branch = name
            if self._used(conn, session_id, branch):
                raise ValueError(
                    f"branch id {branch!r} has already been used in session "
                    f"{session_id!r}: branch ids are never reused; choose a new one"
                )
        conn.execute(self.sql.reserve, (session_id, branch))
        conn.execute(self.sql.insert_branch, (session_id, branch, parent, inherit_below))
        return branch

    def rewind(self, conn: Connection, session_id: str, turn: int, keep_as: str | None) -> str:
        """Move the current branch's head back to just before its ``turn``-th user message.

        In one transaction: a branch named ``keep_as`` (generated if None) is made that
        inherits the current branch's whole visible history; then the current branch gives up
        its rows from that user message on, as :meth:`pop_through` gives them up (forks,
        the keeper among them, first take their own records of them, so they keep them; no
        message is deleted, since the keeper holds every one), and the usage of those turns
        moves to the keeper, which now holds them (so the session's totals count it once).
        The current branch stays current.

        Returns:
            The keeper's id.

        Raises:
            ValueError: the turn does not exist, or the name is or was used in the session;
                nothing has changed then.
        """
        with transaction(conn):
            conn.execute(self.sql.ensure_main, (session_id, MAIN))
            head = self.chain.head(conn, session_id)
            cut = self.chain.user_message_id(conn, session_id, head, turn)
            keeper = self._new_branch(
                conn,
                session_id,
                keep_as,
                f"kept_from_turn_{turn}",
                parent=head.branch,
                inherit_below=NO_CUTOFF,  # everything it shows, until detach_forks below
            )
            dropped = self.detach_forks(conn, session_id, head, cut)  # the keeper's rows
            own = [(row.id, head.branch) for row in dropped if row.branch_id == head.branch]
            conn.executemany(self.sql.delete_structure_any, own)
            if len(own) < len(dropped):  # inherited rows: the branch stops inheriting them
                conn.execute(self.sql.set_cutoff, (cut, session_id, head.branch))
            moved = [
                (session_id, keeper, *row)
                for row in conn.execute(self.sql.turn_usage, (session_id, head.branch))
                if row[0] >= turn
            ]
            conn.executemany(self.sql.put_usage, moved)
            conn.execute(self.sql.drop_usage_after, (session_id, head.branch, turn - 1))
            return keeper

    def _used(self, conn: Connection, session_id: str, branch: str) -> bool:
        """Whether a branch of that id exists or ever existed in the session."""
        reserved = conn.execute(self.sql.is_reserved, (session_id, branch)).fetchone()
        return reserved is not None or self.chain.exists(conn, session_id, branch)

    def switch(self, conn: Connection, session_id: str, branch: str) -> None:
        """Make ``branch`` the session's current branch.

        Raises:
            ValueError: the branch does not exist.
        """
        with transaction(conn):
            self.chain.resolve(conn, session_id, branch)
            conn.execute(self.sql.set_current, (session_id, branch))

    def delete_branch(self, conn: Connection, session_id: str, branch: str, *, force: bool) -> None:
        """Delete a branch, its records, the messages only it holds, and its usage.

        Forks made from it move to its parent and take their own records of the rows they
        saw of it, so what they show is unchanged. Its id stays reserved.

        Raises:
            ValueError: the branch is ``main``, unknown, or current without force.
        """
        with transaction(conn):
            if branch == MAIN:
                raise ValueError("the 'main' branch cannot be deleted")
            gone = self.chain.resolve(conn, session_id, branch)
            if self.chain.head(conn, session_id).branch == branch:
                if not force:
                    raise ValueError(
                        f"branch {branch!r} is current: switch first, or pass force=True"
                    )
                conn.execute(self.sql.set_current, (session_id, MAIN))
            for fork, inherit_below in conn.execute(
                self.sql.children, (session_id, branch)
            ).fetchall():
                own = [
                    Row(mid, "", branch, kind, tool, turn, None, seq)
                    for mid, kind, seq, turn, _bturn, tool in conn.execute(
                        self.sql.own_rows_below, (session_id, branch, inherit_below)
                    )
                ]
                self._hold(conn, session_id, fork, own)
                cut = min(inherit_below, gone.inherit_below) if gone.parent is not None else 0
                conn.execute(self.sql.set_parent, (gone.parent, cut, session_id, fork))
            self.delete_rows(conn, session_id, branch)
            conn.execute(self.sql.delete_branch, (session_id, branch))

    def replace_tail(
        self,
        conn: Connection,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
    ) -> bool:
        """Swap the current branch's newest rows for ``texts`` if they are exactly ``expected``.

        One transaction: the rows are removed as a pop removes them (own rows deleted, inherited
        ones hidden, forks given their own records first), then ``texts`` are appended.

        Returns:
            Whether the rows were swapped (False if the branch's tail changed meanwhile).
        """
        want = [(int(row_id), text) for row_id, text in expected]
        if not want:
            return False
        with transaction(conn):
            head = self.chain.head(conn, session_id)
            newest = self.chain.visible(conn, session_id, head, len(want))
            if [(row.id, row.text) for row in reversed(newest)] != want:
                return False
            left = len(want)

            def last(_item: str) -> bool:
                nonlocal left
                left -= 1
                return left == 0

            self.pop_through(conn, session_id, lambda text: text, last)
            if texts:
                self.append(conn, session_id, texts)
            else:
                conn.execute(self.base.touch_session, (session_id,))
            return True

    def put_usage(self, conn: Connection, session_id: str, usage: tuple[object, ...]) -> None:
        """Record usage columns against the current branch and its current user turn.

        A branch with no user turn yet records nothing, as the SDK's class does.
        """
        with transaction(conn):
            head = self.chain.head(conn, session_id)
            turn = self.chain.turn_now(conn, session_id, head)
            if turn > 0:
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

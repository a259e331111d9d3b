"""Walking a branch's history up its chain of parents, on any connection to the file.

A branch's history is its own rows, then its parent's visible history below the branch's cutoff
(``inherit_below``), and so on up the chain, with the smallest cutoff so far applied. Each step
(a segment) is one bounded index range query, so a short read costs the same on a long history,
and whole-history questions (sizes, user turns, tool use) are answered by SQL aggregates per
segment. Only rows a plain session wrote, which carry no structure row, are decoded to be
classified.

Every method takes the connection to run on (the worker's, or the event loop's read-only one)
and is called inside one transaction, a write or a read one, so a walk sees one snapshot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from ...serialization import Codec
from .db import Connection, snapshot
from .segments import NO_LIMIT, SegmentParams, SegmentStatements
from .sql import (
    MAIN,
    NAMED_BY_TYPE,
    NO_CUTOFF,
    TOOL_CALL_TYPES,
    AdvancedStatements,
    Row,
    classify,
)
from .turns import find_stored

__all__ = ["Chain", "Head", "UserRow"]


class Head(NamedTuple):
    """A branch and where it hangs: its parent and the id below which it inherits from it."""

    branch: str
    parent: str | None
    inherit_below: int
    recorded: bool
    """Whether the branch has its row in the branches table (``main`` may not, yet)."""


class UserRow(NamedTuple):
    """A visible user message with its turn number (its 1-based place among user messages)."""

    turn: int
    id: int
    text: str
    created_at: str | None
    branch_id: str
    """The branch that holds the message: the one read, or the ancestor it is inherited from."""


_EARLY_TURNS = 32
"""Turns up to this are found from the oldest end at once; later ones from the newest end."""
_PAGE_MAX = 1024
"""The most rows one page of a turn lookup reads."""
_HINTS = 4096
"""Sessions the read hint remembers; forgotten all at once past this."""


def _params(session_id: str, below: int, limit: int, branch: str) -> SegmentParams:
    """Return the parameters of one segment query."""
    return {"session": session_id, "below": below, "limit": limit, "branch": branch}


class Chain:
    """Reads of the branch tables that every operation of the store builds on.

    Args:
        sql: The statements of the store's tables.
        codec: Decodes rows that carry no structure row, to classify them.
    """

    def __init__(self, sql: AdvancedStatements, codec: Codec) -> None:
        self.sql = sql
        self.codec = codec
        self._off_main: set[str] = set()
        """Sessions whose last read found another branch current: they skip the main read."""

    @property
    def seg(self) -> SegmentStatements:
        """The segment queries, as last bound to the file's structure table."""
        return self.sql.segments

    # Branches ------------------------------------------------------------------------------

    def head(self, conn: Connection, session_id: str) -> Head:
        """Return the session's current branch (``main`` if unset or deleted meanwhile)."""
        branch, parent, inherit_below, recorded, held = conn.execute(
            self.sql.head, {"session": session_id}
        ).fetchone()
        if branch is None or branch == MAIN:
            return Head(MAIN, None, 0, bool(recorded))
        if recorded:
            return Head(str(branch), parent, int(inherit_below), True)
        if held:  # a branch the SDK's class made: it holds every row it shows
            return Head(str(branch), None, 0, True)
        return Head(MAIN, None, 0, False)  # deleted by another object on the file

    def resolve(self, conn: Connection, session_id: str, branch: str | None) -> Head:
        """Return ``branch`` (the current branch if None) and where it hangs.

        Raises:
            ValueError: the branch does not exist.
        """
        if branch is None:
            return self.head(conn, session_id)
        row = conn.execute(self.sql.branch, (session_id, branch)).fetchone()
        if row is not None:
            return Head(branch, row[0], int(row[1]), True)
        if branch == MAIN:  # main exists before its row is written
            return Head(MAIN, None, 0, False)
        if conn.execute(self.sql.has_structure_branch, (session_id, branch)).fetchone():
            return Head(branch, None, 0, True)  # made by the SDK's class: no parent
        raise ValueError(f"Branch {branch!r} does not exist in session {session_id!r}")

    def exists(self, conn: Connection, session_id: str, branch: str) -> bool:
        """Return whether the session has the branch (``main`` always exists)."""
        return (
            branch == MAIN
            or conn.execute(self.sql.branch, (session_id, branch)).fetchone() is not None
            or conn.execute(self.sql.has_structure_branch, (session_id, branch)).fetchone()
            is not None
        )

    def segments(
        self, conn: Connection, session_id: str, head: Head, before: int = NO_CUTOFF
    ) -> Iterator[tuple[str, int]]:
        """Yield the branch's segments, newest first: each branch and its exclusive upper id.

        The parent of each further branch is looked up only when the caller asks for it.
        """
        branch, parent, inherit_below = head.branch, head.parent, head.inherit_below
        while before > 0:
            yield branch, before
            if parent is None:
                return
            before = min(before, inherit_below)
            branch = parent
            if branch == MAIN:  # main never has a parent: skip the lookup
                parent, inherit_below = None, 0
            else:
                row = conn.execute(self.sql.branch, (session_id, branch)).fetchone()
                parent, inherit_below = (None, 0) if row is None else (row[0], int(row[1]))

    def oldest_first(
        self, conn: Connection, session_id: str, head: Head
    ) -> list[tuple[str, SegmentParams]]:
        """Return each segment with its query parameters, oldest first."""
        found = [
            (branch, _params(session_id, before, NO_LIMIT, branch))
            for branch, before in self.segments(conn, session_id, head)
        ]
        found.reverse()
        return found

    # Rows ----------------------------------------------------------------------------------

    def visible(
        self,
        conn: Connection,
        session_id: str,
        head: Head,
        limit: int,
        before: int = NO_CUTOFF,
    ) -> list[Row]:
        """Return up to ``limit`` visible rows with ids below ``before``, newest first."""
        rows: list[Row] = []
        for branch, upper in self.segments(conn, session_id, head, before):
            statement = self.seg.rows.on(branch)
            for mid, text, kind, tool, turn, created, seq in conn.execute(
                statement, _params(session_id, upper, limit - len(rows), branch)
            ):
                rows.append(Row(mid, text, branch, kind, tool, turn, created, seq))
            if len(rows) >= limit:
                break
        return rows

    def texts(self, conn: Connection, session_id: str, head: Head, limit: int | None) -> list[str]:
        """Return the texts of the newest ``limit`` visible rows (all if None), newest first."""
        texts: list[str] = []
        for branch, upper in self.segments(conn, session_id, head):
            want = NO_LIMIT if limit is None else limit - len(texts)
            statement = self.seg.texts.on(branch)
            texts.extend(
                row[0] for row in conn.execute(statement, _params(session_id, upper, want, branch))
            )
            if limit is not None and len(texts) >= limit:
                break
        return texts

    def records(
        self, conn: Connection, session_id: str, head: Head, limit: int | None
    ) -> list[tuple[Any, ...]]:
        """Return the newest ``limit`` visible rows with their provenance, newest first.

        Each is ``(id, text, agent_name, run_id, run_position, created_at)``; an inherited row
        keeps the provenance it was stored with.
        """
        found: list[tuple[Any, ...]] = []
        for branch, upper in self.segments(conn, session_id, head):
            want = NO_LIMIT if limit is None else limit - len(found)
            statement = self.seg.records.on(branch)
            found.extend(
                tuple(row)
                for row in conn.execute(statement, _params(session_id, upper, want, branch))
            )
            if limit is not None and len(found) >= limit:
                break
        return found

    def read_texts(
        self, conn: Connection, session_id: str, branch: str | None, limit: int | None
    ) -> list[str]:
        """Return a branch's newest ``limit`` texts (all if None), newest first.

        A read of ``main``, named or current, is one statement with no transaction (a
        ``SELECT`` is its own snapshot); one that finds no row on the current branch, which is
        then another branch or an empty ``main``, and a read of another branch, walk the chain
        in one read transaction. A single statement for a chain of parents (a recursive CTE
        with a ``UNION ALL`` arm per segment) returns the same rows but costs 1.5-1.6x the walk
        on SQLite 3.40 (docs/performance.md). A session last read on another branch skips
        the statement of ``main`` (a hint only: the walk resolves the branch either way).
        ``conn`` must not be in a transaction.

        Raises:
            ValueError: the branch does not exist.
        """
        found = self.read_main(conn, session_id, branch, limit)
        if found is not None:
            return found
        return self.read_walk(conn, session_id, branch, limit)

    def read_main(
        self, conn: Connection, session_id: str, branch: str | None, limit: int | None
    ) -> list[str] | None:
        """The first step of :meth:`read_texts`: one statement, if the read may be ``main``'s.

        Returns:
            The texts, newest first; None if the branch's chain must be walked.
        """
        want = NO_LIMIT if limit is None else limit
        statement = self.main_statement(session_id, branch)
        if statement is None:
            return None
        found = [
            row[0] for row in conn.execute(statement, _params(session_id, NO_CUTOFF, want, MAIN))
        ]
        return found if found or branch == MAIN else None

    def main_statement(self, session_id: str, branch: str | None) -> str | None:
        """Return the one statement :meth:`read_main` runs, or None if the chain must be walked.

        Its parameters are a :class:`SegmentParams` (``below``: :data:`NO_CUTOFF`, ``branch``:
        ``main``); it returns texts newest first, none if another branch is current.
        """
        if branch == MAIN:  # main always exists and never has a parent
            return self.seg.texts.main
        if branch is None and session_id not in self._off_main:
            return self.sql.main_texts
        return None

    def read_walk(
        self, conn: Connection, session_id: str, branch: str | None, limit: int | None
    ) -> list[str]:
        """The second step of :meth:`read_texts`: the chain walked in one read snapshot.

        Raises:
            ValueError: the branch does not exist.
        """
        with snapshot(conn):
            head = self.resolve(conn, session_id, branch)
            if branch is None:
                self._note_current(session_id, head.branch)
            return self.texts(conn, session_id, head, limit)

    def _note_current(self, session_id: str, branch: str) -> None:
        """Remember whether a session's current branch is ``main``, as a hint for reads."""
        if branch == MAIN:
            self._off_main.discard(session_id)
        else:
            if len(self._off_main) >= _HINTS:
                self._off_main.clear()
            self._off_main.add(session_id)

    def classify_text(self, text: str) -> tuple[str, str | None]:
        """Return a stored row's item type and tool name; ``other`` if undecodable."""
        try:
            return classify(self.codec.decode(text))
        except (ValueError, TypeError, RecursionError):
            return "other", None

    # Turns ---------------------------------------------------------------------------------

    def turn_now(self, conn: Connection, session_id: str, head: Head) -> int:
        """Return the number of user messages in the branch's visible history."""
        for branch, upper in self.segments(conn, session_id, head):
            statement = self.seg.newest_turn.on(branch)
            row = conn.execute(statement, _params(session_id, upper, 1, branch)).fetchone()
            if row is None:
                continue
            if row[0] is not None:
                return int(row[0])
            return self.size(conn, session_id, head)[1]  # a plain session's row has no turn: count
        return 0

    def _segment_size(
        self, conn: Connection, branch: str, params: SegmentParams
    ) -> tuple[int, int]:
        """Return one segment's rows and user messages, counted by SQL where rows are recorded."""
        rows, users, unrecorded = conn.execute(self.seg.sizes.on(branch), params).fetchone()
        if unrecorded:
            users += sum(
                self.classify_text(text)[0] == "user"
                for (text,) in conn.execute(self.seg.unrecorded_texts, params)
            )
        return int(rows), int(users)

    def size(self, conn: Connection, session_id: str, head: Head) -> tuple[int, int]:
        """Return the number of visible rows and of user messages among them."""
        sizes = [
            self._segment_size(conn, b, p) for b, p in self.oldest_first(conn, session_id, head)
        ]
        return sum(rows for rows, _ in sizes), sum(users for _, users in sizes)

    def _users_in(
        self, conn: Connection, branch: str, params: SegmentParams
    ) -> Iterator[tuple[int, str, str | None]]:
        """Yield one segment's user messages oldest first: id, text and creation time."""
        for mid, text, created, kind in conn.execute(self.seg.users.on(branch), params):
            if kind is not None or self.classify_text(text)[0] == "user":
                yield mid, text, created  # (a row with no record is classified here)

    def users(self, conn: Connection, session_id: str, head: Head) -> list[UserRow]:
        """Return the visible user messages oldest first, numbered by turn."""
        found: list[UserRow] = []
        for branch, params in self.oldest_first(conn, session_id, head):
            for mid, text, created in self._users_in(conn, branch, params):
                found.append(UserRow(len(found) + 1, mid, text, created, branch))
        return found

    def _kinds_in(
        self, conn: Connection, branch: str, params: SegmentParams
    ) -> Iterator[tuple[str, str | None]]:
        """Yield each item's type and tool name in one segment, oldest first."""
        for _id, kind, tool, text in conn.execute(self.seg.kinds.on(branch), params):
            yield (kind, tool) if kind is not None else self.classify_text(text)

    def kinds(
        self, conn: Connection, session_id: str, head: Head
    ) -> list[tuple[int, str, str | None]]:
        """Return each visible item's turn, type and tool name, oldest first (0: before any)."""
        found: list[tuple[int, str, str | None]] = []
        turn = 0
        for branch, params in self.oldest_first(conn, session_id, head):
            for kind, tool in self._kinds_in(conn, branch, params):
                turn += kind == "user"
                found.append((turn, kind, tool))
        return found

    def tool_counts(
        self, conn: Connection, session_id: str, head: Head
    ) -> dict[tuple[int, str], int]:
        """Return how many calls of each tool each turn made: ``{(turn, tool): count}``.

        What the SDK counts: one per item of a tool-call type (shell and patch calls under
        their type), and a tool search's output when its turn has no tool search call.
        """
        counts: dict[tuple[int, str], int] = {}
        searched: set[int] = set()
        outputs: list[tuple[int, str | None]] = []
        for turn, kind, tool in self.kinds(conn, session_id, head):
            if kind in TOOL_CALL_TYPES:
                if kind == "tool_search_call":
                    searched.add(turn)
                name = kind if tool is None and kind in NAMED_BY_TYPE else tool
                if name is not None:
                    counts[turn, name] = counts.get((turn, name), 0) + 1
            elif kind == "tool_search_output":
                outputs.append((turn, tool))
        for turn, tool in outputs:
            if tool is not None and turn not in searched:
                counts[turn, tool] = counts.get((turn, tool), 0) + 1
        return counts

    def _nth_user(
        self,
        conn: Connection,
        branch: str,
        params: SegmentParams,
        rank: int,
        *,
        newest: bool,
    ) -> int | None:
        """Return the id of a segment's ``rank``-th user message (from the oldest or newest).

        Rows are read a page at a time, so the walk stops as soon as it is found; rows with no
        record are classified as they come. None if the segment has fewer.
        """
        statement = (self.seg.user_ids_newest if newest else self.seg.user_ids).on(branch)
        page = max(16, min(rank, _PAGE_MAX))
        cursor: dict[str, object] = {**params, "after": 0}
        seen = 0
        while True:
            rows = conn.execute(statement, {**cursor, "limit": page}).fetchall()
            for mid, text in rows:
                if text is not None and self.classify_text(text)[0] != "user":
                    continue  # a row with no record that is not a user message
                seen += 1
                if seen == rank:
                    return int(mid)
            if len(rows) < page:
                return None
            cursor["below" if newest else "after"] = int(rows[-1][0])
            page = min(page * 4, _PAGE_MAX)

    def user_message_id(self, conn: Connection, session_id: str, head: Head, turn: int) -> int:
        """Return the id of the ``turn``-th user message visible on the branch.

        Turns are counted, as :meth:`users` numbers them, not read from the stored turn of
        each row, which no longer matches once older rows were deleted (by a purge, say).
        Older segments are counted by SQL; the one holding the turn is read up to it.

        Raises:
            ValueError: the branch has fewer user turns, or ``turn`` is not a positive int.
        """
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
            raise ValueError(
                f"Turn {turn!r} does not contain a user message: turns are numbered from 1"
            )
        segments = self.oldest_first(conn, session_id, head)
        if turn > _EARLY_TURNS:
            # By its stored number first: a few index probes, whatever the history's length.
            stored = find_stored(conn, self.seg, segments, turn)
            if stored is not None:
                return stored
            # A late turn is found from the newest end: counting the users is one SQL
            # aggregate per segment, far cheaper than reading every user row before it.
            sizes = [self._segment_size(conn, branch, params)[1] for branch, params in segments]
            from_end = sum(sizes) - turn + 1
            if 0 < from_end < turn:
                for (branch, params), users in zip(
                    reversed(segments), reversed(sizes), strict=True
                ):
                    if from_end <= users:
                        found = self._nth_user(conn, branch, params, from_end, newest=True)
                        if found is not None:
                            return found
                        break
                    from_end -= users
        before = 0  # user messages in the segments already passed
        for index, (branch, params) in enumerate(segments):
            if index < len(segments) - 1:
                users = self._segment_size(conn, branch, params)[1]
                if before + users < turn:
                    before += users
                    continue
            found = self._nth_user(conn, branch, params, turn - before, newest=False)
            if found is not None:
                return found
            before += self._segment_size(conn, branch, params)[1]
        raise ValueError(
            f"Turn {turn} does not contain a user message in branch {head.branch!r}: it has "
            f"{before} user turn(s), numbered from 1"
        )

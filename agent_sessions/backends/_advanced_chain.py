"""Walking a branch's history up its chain of parents, on the store's worker thread.

A branch's history is its own rows, then its parent's visible history below the branch's cutoff
(``inherit_below``), and so on up the chain, with the smallest cutoff so far applied. Each step is
one bounded index range query, newest first, so a short read costs the same on a long history.
"""

from __future__ import annotations

import sqlite3

from ..serialization import Codec
from ._advanced_sql import MAIN, NO_CUTOFF, AdvancedStatements, Row, classify

__all__ = ["Chain"]


class Chain:
    """Reads of the branch tables that every operation of the store builds on.

    Args:
        sql: The statements of the store's tables.
        codec: Decodes SDK-written rows, which carry no metadata, to classify them.
    """

    def __init__(self, sql: AdvancedStatements, codec: Codec) -> None:
        self.sql = sql
        self.codec = codec

    def current(self, conn: sqlite3.Connection, session_id: str) -> str:
        """Return the session's current branch (``main`` if unset or deleted meanwhile)."""
        row = conn.execute(self.sql.current, (session_id,)).fetchone()
        branch = MAIN if row is None else str(row[0])
        if branch != MAIN and not self.exists(conn, session_id, branch):
            return MAIN  # deleted by another object on the file
        return branch

    def exists(self, conn: sqlite3.Connection, session_id: str, branch: str) -> bool:
        """Return whether the session has the branch (``main`` always exists)."""
        return branch == MAIN or (
            conn.execute(self.sql.branch, (session_id, branch)).fetchone() is not None
        )

    def resolve(self, conn: sqlite3.Connection, session_id: str, branch: str | None) -> str:
        """Return ``branch``, or the current branch if None.

        Raises:
            ValueError: the branch does not exist.
        """
        if branch is None:
            return self.current(conn, session_id)
        if not self.exists(conn, session_id, branch):
            raise ValueError(f"branch {branch!r} does not exist in session {session_id!r}")
        return branch

    def cutoff(
        self, conn: sqlite3.Connection, session_id: str, branch: str
    ) -> tuple[str | None, int]:
        """Return a branch's parent and the id below which it inherits the parent's rows."""
        row = conn.execute(self.sql.branch, (session_id, branch)).fetchone()
        return (None, 0) if row is None else (row[0], int(row[1]))

    def visible(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        branch: str,
        limit: int | None,
        before: int = NO_CUTOFF,
        *,
        classify_all: bool = False,
    ) -> list[Row]:
        """Return up to ``limit`` visible rows with ids below ``before``, newest first."""
        rows: list[Row] = []
        current: str | None = branch
        while current is not None and before > 0 and (limit is None or len(rows) < limit):
            want = -1 if limit is None else limit - len(rows)
            statement = self.sql.main_segment if current == MAIN else self.sql.branch_segment
            for mid, text, kind, tool, turn, created in conn.execute(
                statement, (session_id, before, want, current)
            ):
                if kind is None and classify_all:
                    rows.append(Row(mid, text, current, *self.classify_text(text), turn, created))
                else:
                    rows.append(Row(mid, text, current, kind, tool, turn, created))
            parent, inherit_below = self.cutoff(conn, session_id, current)
            current, before = parent, min(before, inherit_below)
        return rows

    def classify_text(self, text: str) -> tuple[str, str | None]:
        """Return a stored row's item type and tool name; ``other`` if undecodable."""
        try:
            return classify(self.codec.decode(text))
        except (ValueError, TypeError, RecursionError):
            return "other", None

    def turn_now(self, conn: sqlite3.Connection, session_id: str, branch: str) -> int:
        """Return the number of user messages in the branch's visible history."""
        newest = self.visible(conn, session_id, branch, 1)
        if not newest:
            return 0
        if newest[0].user_turn is not None:
            return newest[0].user_turn
        # An SDK-written row carries no turn: count once over the whole history.
        rows = self.visible(conn, session_id, branch, None, classify_all=True)
        return sum(row.item_type == "user" for row in rows)

    def user_message_id(
        self, conn: sqlite3.Connection, session_id: str, branch: str, turn: int
    ) -> int:
        """Return the id of the ``turn``-th user message visible on ``branch``.

        Raises:
            ValueError: the branch has fewer user turns, or ``turn`` is not a positive int.
        """
        if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
            raise ValueError(f"turn {turn!r} does not exist: turns are numbered from 1")
        # Stored turns find it with one index range per branch of the chain...
        current, before = branch, NO_CUTOFF
        while True:
            row = conn.execute(
                self.sql.user_message, (session_id, before, turn, current)
            ).fetchone()
            if row is not None:
                return int(row[0])
            parent, inherit_below = self.cutoff(conn, session_id, current)
            if parent is None or inherit_below <= 0:
                break
            current, before = parent, min(before, inherit_below)
        # ...except where SDK-written rows, which carry no turn, must be counted.
        rows = self.visible(conn, session_id, branch, None, classify_all=True)
        users = [row for row in reversed(rows) if row.item_type == "user"]
        if turn > len(users):
            raise ValueError(
                f"turn {turn} does not exist on branch {branch!r}: it has {len(users)} user "
                "turn(s), numbered from 1"
            )
        return users[turn - 1].id

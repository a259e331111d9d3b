"""Provenance on a branched session: tagged appends and the records of a branch (issue 19).

Items live in the messages table, one row per item whatever the branches that show it, so a row's
provenance (agent, run, position, digest, time: schema v4's columns) is stored on that row and an
item a fork inherits keeps it. A run's ``(run_id, position)`` is stored once per **session**, the
key of the v4 unique index: a retry is checked against the run's rows on every branch, not only
those the current branch shows (docs/provenance.md says why). The check and the insert share
one transaction that holds the session's lock: the file's write lock on SQLite, and on a server
the session row's, which the session upsert takes as the first statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ...errors import ProvenanceConflictError
from ...store import RowTag, unstored
from .db import Connection, transaction
from .flavor import Flavor
from .write import Inserter

__all__ = ["TaggedStatements", "TaggedWriter"]

_ROWS_PER_INSERT = 1000
"""Rows per multi-row INSERT on PostgreSQL: 7,000 parameters, within its 32,767."""

_COLUMNS = "session_id, message_data, agent_name, run_id, run_position, item_digest, created_at"


class TaggedStatements:
    """The provenance statements of one messages table, in ``?`` form.

    Args:
        messages: The messages table (a validated name).
        flavor: The database's spelling.
    """

    def __init__(self, messages: str, flavor: Flavor) -> None:
        m = self.messages = messages
        self.flavor = flavor
        self.run_digests = (
            f"SELECT run_position, item_digest FROM {m} WHERE session_id = ? AND run_id = ? "
            "AND run_position BETWEEN ? AND ?"
        )
        self.run_end = f"SELECT max(run_position) FROM {m} WHERE session_id = ? AND run_id = ?"
        self.insert = f"INSERT INTO {m} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        if flavor.name == "postgresql":
            self.insert += " RETURNING id"  # asyncpg has no lastrowid

    def insert_rows(self, n: int) -> str:
        """An INSERT of ``n`` tagged rows that returns their ids (PostgreSQL's)."""
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
        return f"INSERT INTO {self.messages} ({_COLUMNS}) VALUES {values} RETURNING id"


Append = Callable[[Connection, str, Sequence[str], Inserter], None]
"""A branch-aware append that stores texts through an inserter (``Writer.append``)."""


class TaggedWriter:
    """The tagged appends of one store, on the worker thread or a bridged connection.

    Args:
        sql: The provenance statements.
        touch_session: The session upsert (``?``: the session id).
        append: The branch-aware append the rows go through (``Writer.append``, which leaves
            the session upsert to a caller that gives the inserter).
    """

    def __init__(self, sql: TaggedStatements, touch_session: str, append: Append) -> None:
        self.sql = sql
        self.touch_session = touch_session
        self.append = append

    def write(
        self,
        conn: Connection,
        session_id: str,
        rows: Sequence[tuple[str, RowTag]],
        now: object,
        *,
        fresh: bool = False,
    ) -> int:
        """Store the tagged rows their run has not stored in the session, on the current branch.

        One transaction: the session upsert first (it takes the session row's lock, so
        concurrent retries queue and each sees the other's rows), then the run's stored
        digests (not for a ``fresh`` batch), then the rows.

        Returns:
            How many rows were stored.

        Raises:
            ProvenanceConflictError: the run stored another item at a position; nothing is
                written.
        """
        if not rows:
            return 0
        sql, run_id = self.sql, rows[0][1].run_id
        positions = [tag.position for _, tag in rows]
        with transaction(conn):
            conn.execute(self.touch_session, (session_id,))
            found = (
                []  # a fresh batch: its run cannot have stored these positions
                if fresh
                else conn.execute(
                    sql.run_digests, (session_id, run_id, min(positions), max(positions))
                ).fetchall()
            )
            stored = {int(position): str(digest) for position, digest in found}
            new, refused = unstored(rows, stored)
            if refused is not None:
                (end,) = conn.execute(sql.run_end, (session_id, run_id)).fetchone()
                raise ProvenanceConflictError(
                    session_id, run_id, refused.position, run_end=int(end) + 1
                )
            if not new:
                return 0

            def insert(c: Connection, sid: str, texts: Sequence[str]) -> list[int]:
                return _insert(c, sql, sid, new, now)

            self.append(conn, session_id, [text for text, _ in new], insert)
            return len(new)


def _insert(
    conn: Connection,
    sql: TaggedStatements,
    session_id: str,
    rows: Sequence[tuple[str, RowTag]],
    now: object,
) -> list[int]:
    """Insert the tagged rows in order and return their ids."""

    def values(text: str, tag: RowTag) -> tuple[object, ...]:
        return (session_id, text, tag.agent_name, tag.run_id, tag.position, tag.digest, now)

    if sql.flavor.name != "postgresql" or len(rows) < 2:  # noqa: PLR2004 (one needs no batch)
        return [int(conn.execute(sql.insert, values(*row)).lastrowid or 0) for row in rows]
    ids: list[int] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        params = [value for row in chunk for value in values(*row)]
        # Ids come in VALUES order; sorted, they match the rows whatever order RETURNING uses.
        found = conn.execute(sql.insert_rows(len(chunk)), params)
        ids.extend(sorted(int(row[0]) for row in found))
    return ids

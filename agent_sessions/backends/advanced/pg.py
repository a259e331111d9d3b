"""PostgreSQL's hot paths of an advanced store as asyncpg SQL: one round trip per chat call.

A chat turn is ``get_items()`` then ``add_items()``. The portable path runs each through
SQLAlchemy's ``run_sync`` as several statements in a transaction (BEGIN, the session's lock, the
head, the newest turn, the next sequence number, the rows, their structure rows, COMMIT). Here:

- the read of a session with no branch but ``main`` is the plain store's read of its rows with
  three index probes that no other branch exists; a read of ``main`` when there are others is
  the portable path's one statement; both are sent by asyncpg itself;
- the append is one statement: it reads the head, the newest turn and the newest sequence
  number, takes the session row's lock, and inserts the rows and their structure rows;
- the next append of the session by the same store skips those three lookups: it starts from
  the :class:`Known` state the last one returned (branch, turn, sequence number, the session
  row's version and the newest row id), and stores nothing unless the session row is still
  that version and its newest row still that row, so any write in between (ours, the SDK's,
  another process's) sends it back to the lookups.

One statement sees one snapshot, taken before it waits for any lock, so what it read may be
stale by the time it holds the session row: a writer that committed in between would be missed
and two batches would share turn and sequence numbers. It does not read then write blindly: the
session row is updated only if it is still the version the snapshot saw (its ``xmin``). Every
writer of a session changes that row (an append upserts it, every other write locks it with an
``UPDATE``), so a writer that committed after the snapshot leaves the row at another version,
the ``UPDATE`` (which re-checks its condition on the newest version once the lock is free)
matches nothing, and nothing is inserted. A session with no row yet is created with
``ON CONFLICT DO NOTHING``, which likewise inserts nothing if another writer created it. The
statement reports how many rows it stored; with none, the caller runs the portable path, which
takes the lock before it reads. That path also serves what the statement does not cover: a
branch holding no rows of its own yet (its turn is its parent's) and a newest row that a plain
session wrote (its turn is counted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .segments import off_main
from .sql import MAIN, AdvancedStatements

__all__ = ["Known", "KnownStates", "PgStatements"]

_KEPT = 1024
"""Sessions whose :class:`Known` state one store keeps (the most recently appended)."""

_NAMED = re.compile(r"(?<![:\w]):(session|below|limit|branch)\b")
_POSITION = {"session": "$1", "below": "$2", "limit": "$3", "branch": "$4"}


def _numbered(sql: str) -> str:
    """Spell a segment statement's four named parameters as asyncpg's ``$1``...``$4``."""
    return _NAMED.sub(lambda match: _POSITION[match.group(1)], sql)


class PgStatements:
    """The asyncpg statements of one pair of tables (names validated by ``AdvancedStatements``).

    Args:
        sql: The branch tables' statements, bound to the pair's own tables.
        sessions: The sessions table.
    """

    def __init__(self, sql: AdvancedStatements, sessions: str) -> None:
        m, n = sql.tables.messages, sql.n
        st, br, cur = n.structure, n.branches, n.current
        self._driver: dict[str, str] = {}
        # No branch but main, none of ours (a branch row) nor another class's (a structure row
        # on another branch; two index ranges, as `<>` would scan the session's records):
        # then main's history is every row of the session, read as the plain store reads it.
        only_main = (
            f"NOT EXISTS (SELECT 1 FROM {br} b WHERE b.session_id = $1 "
            f"AND b.branch_id <> '{MAIN}') "
            f"AND NOT EXISTS (SELECT 1 FROM {st} x WHERE x.session_id = $1 "
            f"AND x.branch_id < '{MAIN}') "
            f"AND NOT EXISTS (SELECT 1 FROM {st} x WHERE x.session_id = $1 "
            f"AND x.branch_id > '{MAIN}')"
        )
        newest = (
            "SELECT r.message_data FROM (SELECT 1 AS one) o LEFT JOIN LATERAL "
            f"(SELECT id, message_data FROM {m} WHERE session_id = $1 ORDER BY id DESC LIMIT $2)"
            " r ON true WHERE "
        )
        self.read_linear = f"{newest}{only_main} ORDER BY r.id DESC"
        """The newest ``$2`` texts of session ``$1``, newest first, if it has no branch but
        ``main`` (one NULL if it has no rows); no row if it has other branches."""
        self.read_known = (
            f"SELECT message_data FROM {m} WHERE session_id = $1 AND "
            f"(SELECT xmin::text FROM {sessions} WHERE session_id = $1) = $3 "
            "ORDER BY id DESC LIMIT $2"
        )
        """:attr:`read_linear` for a session that had only ``main`` at the session row's version
        ``$3`` (a :class:`Known` state): every write that adds a branch changes that row, so the
        version alone proves it still has. No row if the version differs (or if the session
        has no rows: the caller then asks :attr:`read_linear`, which tells the two apart)."""
        # The newest turn of main is a LATERAL aggregate over each newest row's own records
        # (the (message_id, branch_id) index): asyncpg runs a generic plan after five calls, and
        # one made on nearly empty tables joined the rows to every record of main instead.
        found = f"""
WITH snap AS (SELECT xmin::text AS version FROM {sessions} WHERE session_id = $1),
head AS (
    SELECT CASE WHEN c.branch_id IS NULL OR c.branch_id = '{MAIN}' THEN '{MAIN}'
        WHEN EXISTS (SELECT 1 FROM {br} b WHERE b.session_id = $1 AND b.branch_id = c.branch_id)
            OR EXISTS (SELECT 1 FROM {st} x WHERE x.session_id = $1
                       AND x.branch_id = c.branch_id AND {off_main("x")}) THEN c.branch_id
        ELSE '{MAIN}' END AS branch
    FROM (SELECT 1 AS one) o LEFT JOIN {cur} c ON c.session_id = $1
),
base AS (
    SELECT h.branch, CASE WHEN h.branch = '{MAIN}' THEN coalesce((
        SELECT coalesce(k.turn, -1) FROM {m} r
        CROSS JOIN LATERAL (SELECT count(*) AS records, bool_or(s.branch_id = '{MAIN}') AS mine,
            min(s.user_turn_number) FILTER (WHERE s.branch_id = '{MAIN}') AS turn
            FROM {st} s WHERE s.message_id = r.id) k
        WHERE r.session_id = $1 AND (k.mine OR k.records = 0)
        ORDER BY r.id DESC LIMIT 1), 0)
    ELSE (SELECT coalesce(s.user_turn_number, -1) FROM {st} s
        WHERE s.session_id = $1 AND s.branch_id = h.branch
        ORDER BY s.message_id DESC LIMIT 1) END AS turn,
    (SELECT coalesce(max(q.sequence_number), 0) FROM {st} q WHERE q.session_id = $1) AS seq,
    h.branch = '{MAIN}' AND {only_main} AS linear
    FROM head h
),
locked AS (
    UPDATE {sessions} SET updated_at = CURRENT_TIMESTAMP
    WHERE session_id = $1 AND xmin::text = (SELECT version FROM snap)
    AND (SELECT turn FROM base) >= 0
    RETURNING session_id, xmin::text AS version
),
created AS (
    INSERT INTO {sessions} (session_id) SELECT $1
    WHERE NOT EXISTS (SELECT 1 FROM snap) AND (SELECT turn FROM base) >= 0
    ON CONFLICT (session_id) DO NOTHING RETURNING session_id, xmin::text AS version
),
owner AS (SELECT * FROM locked UNION ALL SELECT * FROM created),
main_row AS (
    INSERT INTO {br} (session_id, branch_id, parent_id, inherit_below)
    SELECT o.session_id, '{MAIN}', NULL, 0 FROM owner o, base b WHERE b.branch = '{MAIN}'
    AND NOT EXISTS (SELECT 1 FROM {br} x WHERE x.session_id = $1 AND x.branch_id = '{MAIN}')
    ON CONFLICT (session_id, branch_id) DO NOTHING
),"""
        # The state an append of this process left is still the session's if nobody wrote
        # since: the session row is the version that append made (every writer changes it)
        # and its newest row is the one that append stored (a pop that does not touch the
        # session row, such as the SDK's, deletes the newest row). Then the branch, turn and
        # sequence number need no lookup: they are six parameters after the batch's own
        # (branch, turn, sequence number, version, newest row id, whether only main exists).
        known = """
WITH base AS (SELECT ${0}::text AS branch, ${1}::int AS turn, ${2}::bigint AS seq,
    ${5}::boolean AS linear),
owner AS (
    UPDATE {sessions} SET updated_at = CURRENT_TIMESTAMP
    WHERE session_id = $1 AND xmin::text = ${3}::text
    AND (SELECT max(id) FROM {m} WHERE session_id = $1) = ${4}::bigint
    RETURNING session_id, xmin::text AS version
),"""
        rows = f"""
rows AS (
    INSERT INTO {m} (session_id, message_data)
    SELECT o.session_id, item.data FROM owner o,
        unnest($2::text[]) WITH ORDINALITY AS item(data, position)
    ORDER BY item.position RETURNING id
),"""
        tagged_rows = f"""
rows AS (
    INSERT INTO {m} (session_id, message_data, agent_name, run_id, run_position, item_digest,
        created_at)
    SELECT o.session_id, item.data, item.agent, $6, item.run_position, item.digest,
        timezone('UTC', now()) FROM owner o,
        unnest($2::text[], $7::text[], $8::integer[], $9::text[])
        WITH ORDINALITY AS item(data, agent, run_position, digest, position)
    ORDER BY item.position RETURNING id
),"""
        records = f"""
numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS position FROM rows),
records AS (
    INSERT INTO {st} (session_id, message_id, branch_id, message_type, sequence_number,
        user_turn_number, branch_turn_number, tool_name)
    SELECT $1, r.id, b.branch, k.kind, b.seq + r.position, b.turn + k.users,
        b.turn + k.users, k.tool
    FROM numbered r
    JOIN unnest($3::text[], $4::text[], $5::int[]) WITH ORDINALITY AS k(kind, tool, users, position)
        ON k.position = r.position
    CROSS JOIN base b
    RETURNING 1
)
SELECT (SELECT count(*) FROM records), (SELECT version FROM owner),
    (SELECT max(id) FROM rows), b.branch, b.turn, b.seq, b.linear FROM base b"""

        def after(first: int) -> str:
            return known.format(*range(first, first + 6), sessions=sessions, m=m)

        self.append = found + rows + records
        """Store ``$2`` (texts) with their types ``$3``, tool names ``$4`` and the user
        messages up to each ``$5`` on the current branch. Returns one row: how many it stored
        (0: the caller runs the portable path), the session row's version and the newest row
        id it left, and the branch, turn and sequence number it appended after, and whether the
        session has no branch but ``main``."""
        self.append_tagged = found + tagged_rows + records
        """:attr:`append` for a fresh tagged batch (no stored row of its run to look for):
        ``$6`` the run id, then per item ``$7`` its agent, ``$8`` position, ``$9`` digest."""
        self.append_known = after(6) + rows + records
        """:attr:`append` after a :class:`Known` state, given as ``$6`` to ``$11``; stores
        nothing if the session changed since."""
        self.append_known_tagged = after(10) + tagged_rows + records
        """:attr:`append_tagged` after a :class:`Known` state, given as ``$10`` to ``$15``."""

    def segment(self, sql: str) -> str:
        """Return a segment statement in asyncpg's form, made once per statement.

        ``:session``, ``:below``, ``:limit`` and ``:branch`` become ``$1`` to ``$4``.
        """
        found = self._driver.get(sql)
        if found is None:
            found = self._driver[sql] = _numbered(sql)
        return found


@dataclass(frozen=True, slots=True)
class Known:
    """The state one append left a session in, for the next append to start from.

    It is only a hint: :attr:`PgStatements.append_known` checks against the session row's
    version and newest row id that nobody wrote since, and stores nothing otherwise.
    """

    branch: str
    """The branch the rows went to."""
    turn: int
    """Its turn number after them."""
    seq: int
    """The session's newest sequence number after them."""
    version: str
    """The session row's ``xmin`` that the append left."""
    last_id: int
    """The id of the newest row it stored."""
    linear: bool
    """Whether the session had no branch but ``main`` (then :attr:`PgStatements.read_known`
    reads it)."""

    def params(self) -> tuple[str, int, int, str, int, bool]:
        """The six parameters of :attr:`PgStatements.append_known`, in order."""
        return self.branch, self.turn, self.seq, self.version, self.last_id, self.linear

    @classmethod
    def after(cls, result: Sequence[Any], users: int) -> Known | None:
        """The state an append's result row describes, or None if it stored nothing.

        ``users`` is how many user messages the batch held.
        """
        stored, version, last_id, branch, turn, seq, linear = result
        if not stored or version is None or last_id is None:
            return None
        count = int(stored)
        return cls(branch, int(turn) + users, int(seq) + count, version, int(last_id), linear)


class KnownStates:
    """The :class:`Known` states of a store's most recently appended sessions (bounded)."""

    def __init__(self, kept: int = _KEPT) -> None:
        self._states: dict[str, Known] = {}
        self._kept = kept

    def peek(self, session_id: str) -> Known | None:
        """A session's state, left in place (for a read)."""
        return self._states.get(session_id)

    def take(self, session_id: str) -> Known | None:
        """Remove and return a session's state: a concurrent append of it starts afresh."""
        return self._states.pop(session_id, None)

    def keep(self, session_id: str, known: Known | None) -> None:
        """Remember a session's state (forget it if None)."""
        self._states.pop(session_id, None)
        if known is None:
            return
        if len(self._states) >= self._kept:
            del self._states[next(iter(self._states))]
        self._states[session_id] = known

    def forget(self, session_id: str) -> None:
        """Forget a session's state ("" forgets every session's) after another kind of write."""
        if session_id:
            self._states.pop(session_id, None)
        else:
            self._states.clear()

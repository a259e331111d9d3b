"""The per-segment queries of the branch tables: one statement for ``main``, one for the others.

A branch's visible history is read segment by segment (see ``chain``): each segment is
the rows one branch holds itself (its structure rows) below an id. ``main`` also owns the rows
that have no structure row at all (those a plain ``SQLiteSession``, the SDK's or ours, wrote), so
its statements walk the messages table's ``(session_id, id)`` index, while another branch's walk
the structure table's ``(session_id, branch_id, message_id)`` index. A row only another branch
holds (one the SDK's class added on a branch) is not ``main``'s. Both kinds take the same four
named parameters, one :class:`SegmentParams` mapping: ``:session`` the session, ``:below`` the
exclusive upper id, ``:limit`` a limit (``NO_LIMIT``: all) and ``:branch`` the branch. sqlite3
looks up only the names a statement holds, so the one mapping serves every statement here.
"""

from __future__ import annotations

from typing import NamedTuple, TypedDict

__all__ = [
    "MAIN",
    "NO_CUTOFF",
    "NO_LIMIT",
    "Segment",
    "SegmentParams",
    "SegmentStatements",
    "off_main",
]

MAIN = "main"

NO_CUTOFF = 2**63 - 1
"""An id no row reaches: a segment with this cutoff is not cut."""
NO_LIMIT = 2**62
"""A ``:limit`` no segment reaches: every row (not -1, which only SQLite reads as "all")."""


def off_main(alias: str) -> str:
    """A condition that a structure row ``alias`` is not ``main``'s, as two index ranges.

    An existence probe for one branch other than ``main`` adds it: PostgreSQL's generic plan
    estimates ``branch_id = $n`` from the table's statistics, where nearly every record is
    ``main``'s (copy-free branches add none), as "every row", and then reads a whole index in
    ``message_id`` order for a branch without records (8 ms at 100k items). The ranges around
    ``main`` bound the (session_id, branch_id, message_id) index instead; the result is the
    same for any branch but ``main``.
    """
    return f"({alias}.branch_id < '{MAIN}' OR {alias}.branch_id > '{MAIN}')"


class SegmentParams(TypedDict):
    """The named parameters of every segment query (sqlite3 binds a name from a mapping)."""

    session: str
    """The session."""
    below: int
    """The exclusive upper id."""
    limit: int
    """The most rows to return; :data:`NO_LIMIT` for all."""
    branch: str
    """The branch whose segment is read."""


class Segment(NamedTuple):
    """One query in its two forms: for ``main`` and for any other branch."""

    main: str
    branch: str

    def on(self, branch: str) -> str:
        """Return the form for ``branch``."""
        return self.main if branch == MAIN else self.branch


class SegmentStatements:
    """The segment queries of one messages table and its structure table (validated names).

    Args:
        messages: The messages table.
        structure: The table of per-branch item records (the SDK's ``message_structure``).
        below: How the statements spell the ``:below`` parameter (see ``Flavor.id_bound``).
    """

    def __init__(self, messages: str, structure: str, below: str = ":below") -> None:
        m, st = messages, structure
        # A row with no structure row at all has NULL s.* columns: it is main's.
        main_rows = (
            f"{m} m LEFT JOIN {st} s ON s.message_id = m.id AND s.branch_id = :branch "
            f"WHERE m.session_id = :session AND m.id < {below} "
            "AND (s.id IS NOT NULL OR NOT EXISTS "
            f"(SELECT 1 FROM {st} x WHERE x.message_id = m.id))"
        )
        branch_rows = (
            f"{st} s JOIN {m} m ON m.id = s.message_id WHERE s.session_id = :session "
            f"AND s.branch_id = :branch AND s.message_id < {below}"
        )

        def both(select: str, tail: str = "") -> Segment:
            # `{id}` is each form's indexed id column, so ORDER BY walks the index unsorted.
            return Segment(
                f"SELECT {select} FROM {main_rows} {tail}".format(id="m.id"),
                f"SELECT {select} FROM {branch_rows} {tail}".format(id="s.message_id"),
            )

        self.rows = both(
            "{id}, m.message_data, s.message_type, s.tool_name, s.user_turn_number, "
            "m.created_at, s.sequence_number",
            "ORDER BY {id} DESC LIMIT :limit",
        )
        """Whole rows with their metadata, newest first."""
        self.texts = both("m.message_data", "ORDER BY {id} DESC LIMIT :limit")
        """Stored texts only, newest first: what ``get_items`` needs."""
        self.records = both(
            "{id}, m.message_data, m.agent_name, m.run_id, m.run_position, m.created_at",
            "ORDER BY {id} DESC LIMIT :limit",
        )
        """Texts with their provenance (schema v4), newest first: what ``get_records`` needs."""
        self.newest_turn = both("s.user_turn_number", "ORDER BY {id} DESC LIMIT 1")
        """The stored turn of the newest row (NULL for a row with no record), if there is one."""
        self.sizes = both(
            "count(*), coalesce(sum(CASE WHEN s.message_type = 'user' THEN 1 ELSE 0 END), 0), "
            "count(*) - count(s.message_type)"
        )
        """Rows, user messages among those with a record, and rows without one."""
        self.users = both(
            "{id}, m.message_data, coalesce(s.created_at, m.created_at), s.message_type",
            "AND (s.message_type = 'user' OR s.message_type IS NULL) ORDER BY {id}",
        )
        """User messages, and rows without a record to classify, oldest first."""
        user_id = "{id}, CASE WHEN s.message_type IS NULL THEN m.message_data END"
        is_user = "AND (s.message_type = 'user' OR s.message_type IS NULL)"
        self.user_ids = both(user_id, f"{is_user} AND {{id}} > :after ORDER BY {{id}} LIMIT :limit")
        """A page of the rows :attr:`users` yields, oldest first, above ``:after``: their ids,
        and the text only of rows without a record."""
        self.user_ids_newest = both(user_id, f"{is_user} ORDER BY {{id}} DESC LIMIT :limit")
        """A page of the same rows, newest first, below ``:below``."""
        self.kinds = both(
            "{id}, s.message_type, s.tool_name, "
            "CASE WHEN s.message_type IS NULL THEN m.message_data END",
            "ORDER BY {id}",
        )
        """Item types and tool names oldest first; the text only for rows without a record."""
        self.turns = both(
            "{id}, s.message_type, s.user_turn_number, "
            "CASE WHEN s.message_type IS NULL THEN m.message_data END",
            "ORDER BY {id}",
        )
        """Item types and stored turns oldest first; the text only for rows without a record."""
        # A segment's own records only (main's too: rows without one have no stored turn),
        # by the (session_id, branch_id, user_turn_number) and (..., message_id) indexes.
        own_users = (
            f"FROM {st} s WHERE s.session_id = :session AND s.branch_id = :branch "
            f"AND s.message_type = 'user' AND s.message_id < {below}"
        )
        # No ORDER BY (and `+s.message_id`, a bound checked per row): SQLite would otherwise
        # walk the id index in order rather than look the turn up.
        self.user_by_turn = (
            f"SELECT s.message_id FROM {st} s WHERE s.session_id = :session "
            "AND s.branch_id = :branch AND s.user_turn_number = :turn "
            f"AND s.message_type = 'user' AND +s.message_id < {below} LIMIT 2"
        )
        """The recorded user messages a segment holds with the stored turn ``:turn`` (two at
        most: more than one means the stored turns cannot be trusted)."""
        self.first_user_turn = (
            f"SELECT s.user_turn_number {own_users} ORDER BY s.message_id LIMIT 1"
        )
        """The stored turn of a segment's oldest recorded user message."""
        self.last_user_turn = (
            f"SELECT s.user_turn_number {own_users} ORDER BY s.message_id DESC LIMIT 1"
        )
        """The stored turn of a segment's newest recorded user message."""
        self.unrecorded_texts = (
            f"SELECT m.message_data FROM {m} m WHERE m.session_id = :session AND m.id < {below} "
            f"AND NOT EXISTS (SELECT 1 FROM {st} x WHERE x.message_id = m.id) "
            "ORDER BY m.id LIMIT :limit"
        )
        """main's rows without a structure row, oldest first."""

"""The per-segment queries of the branch tables: one statement for ``main``, one for the others.

A branch's visible history is read segment by segment (see ``_advanced_chain``): each segment is
the rows one branch wrote below an id. ``main`` also owns the rows that have no branch record
(those the SDK's ``SQLiteSession``, or ours, wrote), so its statements walk the messages table's
``(session_id, id)`` index with an outer join, while another branch's walk the branch table's
``(session_id, branch_id, message_id)`` index. Both kinds take the same four parameters: ``?1``
the session, ``?2`` the exclusive upper id, ``?3`` a limit (-1: all) and ``?4`` the branch.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["MAIN", "NO_CUTOFF", "Segment", "SegmentStatements"]

MAIN = "main"
NO_CUTOFF = 2**63 - 1
"""An id no row reaches: a segment with this cutoff is not cut."""


class Segment(NamedTuple):
    """One query in its two forms: for ``main`` and for any other branch."""

    main: str
    branch: str

    def on(self, branch: str) -> str:
        """Return the form for ``branch``."""
        return self.main if branch == MAIN else self.branch


class SegmentStatements:
    """The segment queries of one messages table and its branch table (validated names).

    Args:
        messages: The messages table.
        branch_of: The table of per-item branch records.
    """

    def __init__(self, messages: str, branch_of: str) -> None:
        m, bo = messages, branch_of
        # A row with no branch record has NULL b.* columns: it is main's, written by the SDK.
        main_rows = (
            f"{m} m LEFT JOIN {bo} b ON b.message_id = m.id WHERE m.session_id = ?1 "
            "AND m.id < ?2 AND (b.branch_id IS NULL OR b.branch_id = ?4)"
        )
        branch_rows = (
            f"{bo} b JOIN {m} m ON m.id = b.message_id WHERE b.session_id = ?1 "
            "AND b.branch_id = ?4 AND b.message_id < ?2"
        )

        def both(select: str, tail: str = "") -> Segment:
            # `{id}` is each form's indexed id column, so ORDER BY walks the index unsorted.
            return Segment(
                f"SELECT {select} FROM {main_rows} {tail}".format(id="m.id"),
                f"SELECT {select} FROM {branch_rows} {tail}".format(id="b.message_id"),
            )

        self.rows = both(
            "{id}, m.message_data, b.item_type, b.tool_name, b.user_turn, m.created_at",
            "ORDER BY {id} DESC LIMIT ?3",
        )
        """Whole rows with their metadata, newest first."""
        self.texts = both("m.message_data", "ORDER BY {id} DESC LIMIT ?3")
        """Stored texts only, newest first: what ``get_items`` needs."""
        self.newest_turn = both("b.user_turn", "ORDER BY {id} DESC LIMIT 1")
        """The stored turn of the newest row (NULL for an SDK-written row), if there is one."""
        self.sizes = both(
            "count(*), coalesce(sum(b.item_type = 'user'), 0), count(*) - count(b.item_type)"
        )
        """Rows, user messages among those with a record, and rows without one (SDK rows)."""
        self.users = both(
            "{id}, m.message_data, m.created_at, b.item_type",
            "AND (b.item_type = 'user' OR b.item_type IS NULL) ORDER BY {id}",
        )
        """User messages, and SDK rows to classify, oldest first."""
        self.kinds = both(
            "{id}, b.item_type, b.tool_name, CASE WHEN b.item_type IS NULL THEN m.message_data END",
            "ORDER BY {id}",
        )
        """Item types and tool names oldest first; the text only for SDK rows, to classify."""
        # The running count of user messages numbers each row's turn within the segment.
        self.tools = Segment(
            *(
                "SELECT turn, tool_name, count(*) FROM (SELECT b.tool_name AS tool_name, "
                f"sum(b.item_type = 'user') OVER (ORDER BY {column}) AS turn "
                f"FROM {rows} AND (b.item_type = 'user' OR b.tool_name IS NOT NULL)) "
                "WHERE tool_name IS NOT NULL GROUP BY turn, tool_name"
                for column, rows in (("m.id", main_rows), ("b.message_id", branch_rows))
            )
        )
        """Tool calls counted per (turn within the segment, tool); for segments without SDK rows."""
        self.sdk_texts = (
            f"SELECT m.message_data FROM {m} m LEFT JOIN {bo} b ON b.message_id = m.id "
            "WHERE m.session_id = ?1 AND m.id < ?2 AND b.message_id IS NULL "
            "ORDER BY m.id LIMIT ?3"
        )
        """main's rows without a branch record, oldest first."""

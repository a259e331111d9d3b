"""The branch tables of :mod:`agent_sessions.backends.advanced`, their SQL, and item metadata.

Items stay in the SDK's messages table. Four tables of our own, named after it, say which branch
wrote each item and how branches hang together, so a branch is a pointer into its parent's
history rather than a copy of it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from ..errors import InvalidIdentifierError
from ..schema import TableNames, validate_identifier
from ._advanced_segments import MAIN, NO_CUTOFF, SegmentStatements

__all__ = [
    "MAIN",
    "NO_CUTOFF",
    "AdvancedStatements",
    "Row",
    "check_branch_name",
    "classify",
    "user_text",
]

_BRANCH_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_branch_name(name: object) -> str:
    """Return ``name`` if it is a usable branch id.

    Raises:
        InvalidIdentifierError: ``name`` is not 1-64 letters, digits, ``-`` or ``_`` (a
            ``ValueError``).
    """
    if not isinstance(name, str) or _BRANCH_NAME.fullmatch(name) is None:
        raise InvalidIdentifierError(
            f"branch name {name!r} is not valid: use 1-64 letters, digits, '-' and '_'"
        )
    return name


class Row(NamedTuple):
    """One visible item with its metadata; ``user_turn`` is None for an SDK-written row."""

    id: int
    text: str
    branch_id: str
    item_type: str | None
    tool_name: str | None
    user_turn: int | None
    created_at: str | None


def classify(item: object) -> tuple[str, str | None]:
    """Return an item's type for the turn tables (``user``, ``assistant``, ...) and tool name."""
    if not isinstance(item, dict):
        return "other", None
    role, kind = item.get("role"), item.get("type")
    if role in ("user", "assistant"):
        return str(role), None
    if not isinstance(kind, str) or not kind:
        return "other", None
    name = item.get("name")
    return kind, (str(name) if kind.endswith("_call") and name is not None else None)


def user_text(item: object) -> str:
    """Return the text of a user message: its string content, or its text parts joined."""
    if not isinstance(item, dict):
        return ""
    content: Any = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


class AdvancedStatements:
    """The DDL and queries of the branch tables, formatted once from validated names.

    Args:
        tables: The SDK's table names; the branch tables are named after the messages table.
    """

    def __init__(self, tables: TableNames) -> None:
        m = tables.messages
        bo = validate_identifier(f"{m}_branch_of", "branch table name")
        br = validate_identifier(f"{m}_branches", "branch table name")
        cur = validate_identifier(f"{m}_current", "branch table name")
        us = validate_identifier(f"{m}_usage", "usage table name")
        self.ddl = [
            f"""CREATE TABLE IF NOT EXISTS {bo} (
                message_id INTEGER PRIMARY KEY, session_id TEXT NOT NULL,
                branch_id TEXT NOT NULL, user_turn INTEGER NOT NULL,
                item_type TEXT NOT NULL, tool_name TEXT)""",
            f"CREATE INDEX IF NOT EXISTS idx_{bo} ON {bo} (session_id, branch_id, message_id)",
            f"""CREATE TABLE IF NOT EXISTS {br} (
                session_id TEXT NOT NULL, branch_id TEXT NOT NULL, parent_id TEXT,
                inherit_below INTEGER NOT NULL,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                PRIMARY KEY (session_id, branch_id))""",
            f"""CREATE TABLE IF NOT EXISTS {cur} (
                session_id TEXT PRIMARY KEY, branch_id TEXT NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {us} (
                session_id TEXT NOT NULL, branch_id TEXT NOT NULL, user_turn INTEGER NOT NULL,
                requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL,
                input_tokens_details TEXT, output_tokens_details TEXT,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                PRIMARY KEY (session_id, branch_id, user_turn))""",
        ]
        self.objects = (bo, f"idx_{bo}", br, cur, us)
        """The tables and index the DDL creates, to skip it when they all exist."""
        self.segments = SegmentStatements(tables.messages, bo)
        # The current branch with its own branch row (parent, cutoff, and whether it exists),
        # in one statement: every call starts here. Always exactly one row.
        self.head = (
            "SELECT c.branch_id, b.parent_id, b.inherit_below, b.branch_id IS NOT NULL "
            f"FROM (SELECT ?1 AS session_id) s LEFT JOIN {cur} c ON c.session_id = s.session_id "
            f"LEFT JOIN {br} b ON b.session_id = s.session_id "
            f"AND b.branch_id = coalesce(c.branch_id, '{MAIN}')"
        )
        self.insert_meta = (
            f"INSERT INTO {bo} (message_id, session_id, branch_id, user_turn, item_type, "
            "tool_name) VALUES (?, ?, ?, ?, ?, ?)"
        )
        self.has_row = f"SELECT 1 FROM {m} WHERE id = ?"
        self.delete_meta = f"DELETE FROM {bo} WHERE message_id = ?"
        self.delete_branch_messages = (
            f"DELETE FROM {m} WHERE id IN "
            f"(SELECT message_id FROM {bo} WHERE session_id = ? AND branch_id = ?)"
        )
        self.delete_branch_meta = f"DELETE FROM {bo} WHERE session_id = ? AND branch_id = ?"
        self.delete_session_meta = f"DELETE FROM {bo} WHERE session_id = ?"
        self.branch = (
            f"SELECT parent_id, inherit_below FROM {br} WHERE session_id = ? AND branch_id = ?"
        )
        self.branches = (
            f"SELECT branch_id, parent_id, created_at FROM {br} WHERE session_id = ? "
            "ORDER BY created_at, rowid"
        )
        self.children = (
            f"SELECT branch_id FROM {br} WHERE session_id = ? AND parent_id = ? ORDER BY branch_id"
        )
        self.ensure_main = (
            f"INSERT INTO {br} (session_id, branch_id, parent_id, inherit_below) "
            "VALUES (?, ?, NULL, 0) ON CONFLICT (session_id, branch_id) DO NOTHING"
        )
        self.insert_branch = (
            f"INSERT INTO {br} (session_id, branch_id, parent_id, inherit_below) "
            "VALUES (?, ?, ?, ?)"
        )
        self.set_cutoff = (
            f"UPDATE {br} SET inherit_below = ? WHERE session_id = ? AND branch_id = ?"
        )
        # Undo of a pop that hid an inherited row: only if the pop's cutoff is still in place.
        self.restore_cutoff = f"{self.set_cutoff} AND inherit_below = ?"
        # Branches made from a branch that still see its rows at or above a given id.
        self.forks_seeing = (
            f"SELECT branch_id FROM {br} WHERE session_id = ? AND parent_id = ? "
            "AND inherit_below > ? ORDER BY branch_id"
        )
        self.delete_branch = f"DELETE FROM {br} WHERE session_id = ? AND branch_id = ?"
        self.delete_branches = f"DELETE FROM {br} WHERE session_id = ?"
        self.current = f"SELECT branch_id FROM {cur} WHERE session_id = ?"
        self.set_current = (
            f"INSERT INTO {cur} (session_id, branch_id) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET branch_id = excluded.branch_id"
        )
        self.delete_current = f"DELETE FROM {cur} WHERE session_id = ?"
        self.put_usage = (
            f"INSERT INTO {us} (session_id, branch_id, user_turn, requests, input_tokens, "
            "output_tokens, total_tokens, input_tokens_details, output_tokens_details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (session_id, branch_id, user_turn) DO UPDATE SET "
            "requests = excluded.requests, input_tokens = excluded.input_tokens, "
            "output_tokens = excluded.output_tokens, total_tokens = excluded.total_tokens, "
            "input_tokens_details = excluded.input_tokens_details, "
            "output_tokens_details = excluded.output_tokens_details"
        )
        sums = (
            "SELECT SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(total_tokens), "
            f"COUNT(*) FROM {us} WHERE session_id = ?"
        )
        self.session_usage = sums
        self.branch_usage = f"{sums} AND branch_id = ?"
        self.turn_usage = (
            "SELECT user_turn, requests, input_tokens, output_tokens, total_tokens, "
            f"input_tokens_details, output_tokens_details FROM {us} "
            "WHERE session_id = ? AND branch_id = ? ORDER BY user_turn"
        )
        self.delete_branch_usage = f"DELETE FROM {us} WHERE session_id = ? AND branch_id = ?"
        self.delete_session_usage = f"DELETE FROM {us} WHERE session_id = ?"

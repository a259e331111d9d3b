"""Renumbering a session's turns after a purge deleted rows (see :mod:`.turns`)."""

from __future__ import annotations

from .chain import Chain
from .db import Connection
from .segments import MAIN
from .sql import AdvancedStatements
from .turns import renumber_branch

__all__ = ["renumber"]


def renumber(conn: Connection, sql: AdvancedStatements, chain: Chain, session_id: str) -> None:
    """Give every record of the session its turn again, after a purge deleted rows.

    Each branch renumbers its own records (its ancestors' are theirs, and a prefix of a
    branch's history is its parent's), and its usage rows follow their turns. Runs inside the
    purge's transaction.
    """
    branches = [str(row[0]) for row in conn.execute(sql.branches, {"session": session_id})]
    if MAIN not in branches:
        branches.insert(0, MAIN)

    def is_user(text: str) -> bool:
        return chain.classify_text(text)[0] == "user"

    for branch in branches:
        head = chain.resolve(conn, session_id, branch)
        segments = chain.oldest_first(conn, session_id, head)
        updates, moved = renumber_branch(conn, chain.seg, branch, segments, is_user)
        if updates:
            conn.executemany(sql.set_turn, updates)
        usage = conn.execute(sql.turn_usage, (session_id, branch)).fetchall()
        for row in sorted(usage, key=lambda row: int(row[0])):
            new = moved.get(int(row[0]))
            if new is not None and new != row[0]:  # turns only move down: no collision
                conn.execute(sql.delete_turn_usage, (session_id, branch, row[0]))
                conn.execute(sql.put_usage, (session_id, branch, new, *row[1:]))

"""Turns by their stored number: finding turn ``n`` by index, and renumbering after a purge.

Every structure row stores the turn it belongs to (``user_turn_number``): the number of user
messages in its branch's visible history up to it. Appends, pops, forks, rewinds and branch
deletions keep it equal to that rank; a purge (``rewrite`` deleting rows) would shift it, so
``renumber.renumber`` gives every row of the session its rank again in the purge's transaction.
The SDK's class numbers a branch's rows from the branch's own maximum, which matches where the
branch holds its whole history (as the branches it makes do).

:func:`find_stored` finds turn ``n`` by the ``(session_id, branch_id, user_turn_number)``
index, at a cost that does not grow with the history, and answers only when the stored turns
agree at every segment boundary: the oldest segment's first recorded user message is turn 1,
each further segment's first one follows the previous segment's last, and the turn is stored
on exactly one visible user message. Otherwise (rows a plain session wrote, without a record,
come first; a branch the SDK's class numbered on its own; an old file purged before this
renumbering existed, where the gap shows at a boundary) the caller counts instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .db import Connection
from .segments import SegmentParams, SegmentStatements

__all__ = ["find_stored", "renumber_branch"]


def find_stored(
    conn: Connection,
    seg: SegmentStatements,
    segments: Sequence[tuple[str, SegmentParams]],
    turn: int,
) -> int | None:
    """Return the id of the visible user message stored as ``turn``, if the numbers agree.

    Args:
        conn: The connection, inside the caller's transaction.
        seg: The segment statements.
        segments: The branch's segments oldest first, as ``Chain`` lists them.
        turn: The turn, from 1.

    Returns:
        The message id; None if the stored turns cannot answer (the caller counts).
    """
    last = 0  # the stored turn of the newest recorded user message so far
    for _branch, params in segments:
        first = conn.execute(seg.first_user_turn, params).fetchone()
        if first is None:
            continue  # no recorded user message in this segment
        if first[0] != last + 1:
            return None
        newest = conn.execute(seg.last_user_turn, params).fetchone()
        last = int(newest[0]) if newest is not None and newest[0] is not None else -1
        if last < first[0]:
            return None
        if turn <= last:
            found = conn.execute(seg.user_by_turn, {**params, "turn": turn}).fetchall()
            return int(found[0][0]) if len(found) == 1 else None
    return None


def renumber_branch(
    conn: Connection,
    seg: SegmentStatements,
    branch: str,
    segments: Sequence[tuple[str, SegmentParams]],
    is_user: Callable[[str], bool],
) -> tuple[list[tuple[int, int, int, str]], dict[int, int]]:
    """Return the renumbering of one branch's own rows: what to update, and old to new turns.

    Args:
        conn: The connection, inside the caller's transaction.
        seg: The segment statements.
        branch: The branch whose own rows are renumbered (inherited ones are their holder's).
        segments: The branch's segments oldest first.
        is_user: Whether a row without a record (its text) is a user message.

    Returns:
        ``(turn, turn, message_id, branch)`` per row whose stored turn changes, for
        ``user_turn_number`` and ``branch_turn_number``; and each visible recorded user
        message's stored turn mapped to its rank, for the branch's usage rows.
    """
    turn = 0
    updates: list[tuple[int, int, int, str]] = []
    moved: dict[int, int] = {}
    for holder, params in segments:
        row: Any
        for row in conn.execute(seg.turns.on(holder), params):
            mid, kind, stored, text = row
            user = kind == "user" if kind is not None else is_user(text)
            turn += user
            if kind is None:
                continue  # no record to renumber
            if user and stored is not None:
                moved[int(stored)] = turn
            if holder == branch and stored != turn:
                updates.append((turn, turn, int(mid), branch))
    return updates, moved

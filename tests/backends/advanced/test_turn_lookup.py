"""Finding turn N to branch from: early turns from the oldest end, late ones from the newest."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import AdvancedSQLiteSession, SQLiteSession

TURNS = 70


def exchange(n: int) -> list[dict[str, str]]:
    """Turn ``n``: a user message and the answer."""
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


@pytest.mark.parametrize("turn", [1, 2, 32, 33, 40, 69, 70])
async def test_branch_from_any_turn_of_a_long_history(opener: Any, turn: int) -> None:
    """A branch from turn N holds exactly the turns before it, early or late, across forks."""
    session = opener(uuid.uuid4().hex)
    for n in range(1, 51):
        await session.add_items(exchange(n))
    await session.create_branch_from_turn(45, "fork")  # the fork inherits turns 1-44
    for n in range(45, TURNS + 1):
        await session.add_items(exchange(n))
    await session.create_branch_from_turn(turn, f"at-{turn}")
    expected = [item for n in range(1, turn) for item in exchange(n)]
    assert await session.get_items() == expected
    await session.close()


@pytest.mark.sqlite
@pytest.mark.parametrize("turn", [3, 40, 59])
async def test_late_turns_count_rows_a_plain_session_wrote(tmp_path: Path, turn: int) -> None:
    """Rows with no branch record (a plain session's) are classified and counted too."""
    path = tmp_path / "mixed.db"
    plain = SQLiteSession("s", path)
    for n in range(1, 31):
        await plain.add_items(exchange(n))
    plain.close()
    session = AdvancedSQLiteSession(session_id="s", db_path=path)
    for n in range(31, 61):
        await session.add_items(exchange(n))
    await session.create_branch_from_turn(turn, "b")
    assert await session.get_items() == [item for n in range(1, turn) for item in exchange(n)]
    session.close()

"""Pruning an advanced session: the current branch is trimmed, and forks keep what they showed.

On a store with branches a row of main may be inherited by forks, so a prune swaps the current
branch's visible history for the kept items instead of deleting rows. Run on
AdvancedSQLiteSession (a file) and AdvancedSQLAlchemySession on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.backends.advanced.session import AdvancedSession
from tests.sql_servers import database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("sqlite-file", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def user(text: str) -> Any:
    """A user message."""
    return {"role": "user", "content": text}


def turn(n: int) -> list[Any]:
    """Turn ``n``: a question, a tool call and its output, an answer."""
    call_id = f"c{n}"
    return [
        user(f"q{n}"),
        {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": call_id, "output": "ok"},
        {"role": "assistant", "content": f"a{n}"},
    ]


def turns(first: int, last: int) -> list[Any]:
    """Turns ``first`` to ``last - 1``."""
    return [item for n in range(first, last) for item in turn(n)]


Opener = Callable[[str], AdvancedSession]


@pytest.fixture(name="open_session", params=KINDS)
async def open_session_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    """Opens advanced sessions on one fresh database; closes them and drops the tables after."""
    opened: list[AdvancedSession] = []
    if request.param == "sqlite-file":
        path = tmp_path / "prune.db"

        def open_one(sid: str) -> AdvancedSession:
            return AdvancedSQLiteSession(session_id=sid, db_path=path, create_tables=True)

        url = None
    else:
        url = database_url(request.param, tmp_path)
        sessions, messages = unique_tables()

        def open_one(sid: str) -> AdvancedSession:
            return AdvancedSQLAlchemySession.from_url(
                sid, url=url, create_tables=True, sessions_table=sessions, messages_table=messages
            )

    def opener(sid: str) -> AdvancedSession:
        session = open_one(sid)
        opened.append(session)
        return session

    yield opener
    for session in opened:
        await session.aclose()
    if url is not None:
        engine = create_async_engine(url)
        try:
            await drop_tables(engine, sessions, messages)
        finally:
            await engine.dispose()


def unique_id() -> str:
    """A session id no other test uses (the server database is shared)."""
    return f"prune-{uuid.uuid4().hex[:10]}"


async def test_a_fork_keeps_its_history_after_main_is_pruned(open_session: Opener) -> None:
    """Main keeps its newest turn; a fork inheriting main's old turns still shows them all."""
    session = open_session(unique_id())
    await session.add_items(turns(0, 5))
    fork = await session.fork(turn=4, name="retry")
    await session.add_items(turn(9))
    await session.switch_to_branch("main")
    report = await session.prune(keep_last_turns=1)
    assert (report.removed_items, report.removed_turns, report.kept_items) == (16, 4, 4)
    assert await session.get_items() == turn(4)
    await session.switch_to_branch(fork)
    assert await session.get_items() == [*turns(0, 3), *turn(9)]


async def test_pruning_a_fork_leaves_main_whole(open_session: Opener) -> None:
    """A prune on a fork hides what it inherits there; main still holds every turn."""
    session = open_session(unique_id())
    await session.add_items(turns(0, 4))
    await session.fork(turn=3, name="side")
    await session.add_items(turns(7, 9))
    await session.prune(keep_last_turns=2)
    assert await session.get_items() == turns(7, 9)
    await session.switch_to_branch("main")
    assert await session.get_items() == turns(0, 4)


async def test_a_pruned_branch_numbers_its_turns_afresh(open_session: Opener) -> None:
    """The kept turns are stored again on the branch: they are turns 1..N, and forkable."""
    session = open_session(unique_id())
    await session.add_items(turns(0, 4))
    await session.prune(keep_last_turns=2)
    entries = await session.history()
    assert [(e["turn"], e["preview"]) for e in entries] == [(1, "q2"), (2, "q3")]
    await session.fork(turn=2, name="again")
    assert await session.get_items() == turn(2)


async def test_another_object_sees_the_pruned_branch(open_session: Opener) -> None:
    """The swap is in the database: a second object on the session reads the pruned history."""
    sid = unique_id()
    writer = open_session(sid)
    await writer.add_items(turns(0, 3))
    await writer.prune(keep_last_turns=1)
    reader = open_session(sid)
    assert await reader.get_items() == turn(2)


async def test_a_dry_run_changes_no_branch(open_session: Opener) -> None:
    """dry_run on an advanced session reports and leaves every branch as it was."""
    session = open_session(unique_id())
    await session.add_items(turns(0, 3))
    report = await session.prune(keep_last_turns=1, dry_run=True)
    assert (report.removed_items, report.dry_run) == (8, True)
    assert await session.get_items() == turns(0, 3)

"""Two compactions at once: one wins, nothing is lost (real tasks, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sessions import (
    AdvancedSQLAlchemySession,
    AdvancedSQLiteSession,
    SQLiteSession,
    StorageError,
)
from agent_sessions.compaction import CompactingSession
from agent_sessions.testing import Harness
from tests.sql_servers import sqlalchemy_harness

from .kit import Recorder, contents, msg, turns


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
        pytest.param("advanced-sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("advanced-postgres", marks=pytest.mark.postgres),
        pytest.param("advanced-mariadb", marks=pytest.mark.mariadb),
    ]
)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness whose sessions with one id reach the same stored rows."""
    kind: str = request.param
    if kind == "sqlite":
        path = tmp_path / "chats.db"
        result = Harness(name="sqlite", open=lambda sid: SQLiteSession(sid, path))
    elif kind == "advanced-sqlite":
        path = tmp_path / "advanced.db"
        result = Harness(
            name="advanced-sqlite",
            open=lambda sid: AdvancedSQLiteSession(
                session_id=sid, db_path=path, create_tables=True
            ),
        )
    elif kind.startswith("advanced-"):
        result = sqlalchemy_harness(
            kind.removeprefix("advanced-"), tmp_path, session_class=AdvancedSQLAlchemySession
        )
    else:
        result = sqlalchemy_harness(kind.removeprefix("sqlalchemy-"), tmp_path)
    yield result
    await result.close_all()


async def archived_texts(session: object) -> list[str] | None:
    """The archived items' contents, or None where the session keeps no archive (branches)."""
    try:
        found = await session.archived_items()  # type: ignore[attr-defined]
    except StorageError:
        return None
    return [entry.item["content"] for entry in found]


def fresh_id() -> str:
    """A session id no other test uses (the server database is shared)."""
    return f"compaction-{uuid.uuid4().hex[:12]}"


async def test_two_compactions_at_once_one_wins(harness: Harness) -> None:
    """Both summarise the same history; one swap lands and the other writes nothing."""
    sid = fresh_id()
    first, second = await harness.session(sid), await harness.session(sid)
    await first.add_items(turns(5))
    gate = asyncio.Event()
    a, b = Recorder("first", gate), Recorder("second", gate)
    left = CompactingSession(first, summarizer=a, keep_last_turns=2)
    right = CompactingSession(second, summarizer=b, keep_last_turns=2)
    tasks = [
        asyncio.create_task(left.compact(force=True)),
        asyncio.create_task(right.compact(force=True)),
    ]
    await asyncio.wait_for(asyncio.gather(a.entered.wait(), b.entered.wait()), 30)
    gate.set()  # both have read the history before either writes
    results = await asyncio.gather(*tasks)
    assert sorted(results) == [False, True]
    winner = "first" if results[0] else "second"
    expected = [msg(f"{winner} of 6 items", "system"), *turns(2, 3)]
    assert await first.get_items() == expected
    assert await second.get_items() == expected
    archive = await archived_texts(first)
    if archive is not None:  # the winner's batch alone: the loser archived nothing
        assert archive == contents(turns(3))
        assert {entry.batch for entry in await first.archived_items()} == {1}  # type: ignore[attr-defined]


async def test_items_added_during_a_compaction_are_kept(harness: Harness) -> None:
    """A turn stored while the summariser runs lands after the kept turns."""
    sid = fresh_id()
    reader, writer = await harness.session(sid), await harness.session(sid)
    await writer.add_items(turns(4))
    gate = asyncio.Event()
    summarizer = Recorder(gate=gate)
    task = asyncio.create_task(
        CompactingSession(reader, summarizer=summarizer, keep_last_turns=1).compact(force=True)
    )
    await asyncio.wait_for(summarizer.entered.wait(), 30)
    await writer.add_items(turns(1, 4))
    gate.set()
    assert await task
    assert await reader.get_items() == [msg("summary of 6 items", "system"), *turns(2, 3)]


async def test_many_concurrent_compactions_lose_nothing(harness: Harness) -> None:
    """Eight compactions and a writer racing: every newest turn survives, exactly once."""
    sid = fresh_id()
    writer = await harness.session(sid)
    await writer.add_items(turns(6))
    wrappers = [
        CompactingSession(await harness.session(sid), summarizer=Recorder(f"s{n}"))
        for n in range(8)
    ]

    async def write() -> None:
        for n in range(6, 10):
            await writer.add_items(turns(1, n))
            await asyncio.sleep(0)

    results = await asyncio.gather(write(), *(wrapper.compact(force=True) for wrapper in wrappers))
    assert any(results[1:])
    texts = contents(await writer.get_items())
    questions = [text for text in texts if text.startswith("question")]
    assert questions == sorted(set(questions), key=lambda q: int(q.split()[1]))
    assert "question 9" in questions
    assert texts[-1] == "answer 9"
    archive = await archived_texts(writer)
    if archive is not None:  # every question is in the history or the archive, exactly once
        asked = [t for t in [*archive, *texts] if t.startswith("question")]
        assert sorted(asked, key=lambda q: int(q.split()[1])) == [
            f"question {n}" for n in range(10)
        ]

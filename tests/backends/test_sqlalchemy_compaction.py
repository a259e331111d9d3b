"""The SDK's suffix compaction on SQLAlchemySession, and concurrent table creation on SQLite."""

# ruff: noqa: SLF001 - the compaction hook is private by the SDK's choice; these tests call it

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import pytest
from agents import Agent, Runner
from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel
from openai.types.responses import ResponseOutputMessage
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.core import StoreSession
from tests.sql_servers import KINDS, drop_tables, unique_tables
from tests.unit import test_compaction_hook as hook


def _user(text: str) -> TResponseInputItem:
    return {"role": "user", "content": text}


SUMMARY: Any = {"type": "compaction", "id": "cmp", "encrypted_content": "summary"}


@pytest.fixture
async def engines(url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two engines on one database, as two app processes would have; disposed afterwards."""
    first, second = create_async_engine(url), create_async_engine(url)
    yield first, second
    await first.dispose()
    await second.dispose()


@pytest.fixture
async def tables(engines: tuple[AsyncEngine, AsyncEngine]) -> AsyncIterator[tuple[str, str]]:
    """Fresh table names, dropped afterwards."""
    names = unique_tables()
    yield names
    await drop_tables(engines[0], *names)


def _open(
    engine: AsyncEngine, tables: tuple[str, str], sid: str = "c", **kw: Any
) -> SQLAlchemySession:
    return SQLAlchemySession(
        sid,
        engine=engine,
        sessions_table=tables[0],
        messages_table=tables[1],
        create_tables=True,
        **kw,
    )


@pytest.mark.parametrize("operation", ["append", "pop", "clear"])
@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_write_between_snapshot_and_replace_makes_the_replace_refuse(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str], operation: str
) -> None:
    """A write through another engine after the snapshot makes ``replace_suffix`` refuse."""
    items = [_user(f"item {i}") for i in range(5)]
    async with _open(engines[0], tables) as session, _open(engines[1], tables) as other:
        await session.add_items(items)
        snapshot = await session._get_compaction_snapshot(3)
        assert snapshot is not None
        assert snapshot.items == items[2:]
        if operation == "append":
            await other.add_items([_user("late")])
            expected = [*items, _user("late")]
        elif operation == "pop":
            assert await other.pop_item() == items[-1]
            expected = items[:-1]
        else:
            await other.clear_session()
            expected = []
        assert await snapshot.replace_suffix(0, [SUMMARY]) is False
        assert await session.get_items() == expected


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_replace_swaps_exactly_the_suffix(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A replace deletes only the snapshot's rows from ``start`` on and appends the output."""
    items = [_user(f"item {i}") for i in range(6)]
    async with _open(engines[0], tables) as session, _open(engines[0], tables, "other") as other:
        await session.add_items(items)
        await other.add_items([_user("other session")])
        whole = await session._get_compaction_snapshot(6)
        assert whole is not None
        assert whole.complete
        snapshot = await session._get_compaction_snapshot(4)
        assert snapshot is not None
        assert not snapshot.complete
        assert snapshot.items == items[2:]
        assert await snapshot.replace_suffix(1, [SUMMARY, _user("kept")]) is True
        assert await session.get_items() == [*items[:3], SUMMARY, _user("kept")]
        assert await other.get_items() == [_user("other session")]
        # The swap is done once: the rows it expected are gone.
        assert await snapshot.replace_suffix(1, []) is False
        # A replace with no output leaves the prefix, and the session, in place.
        emptied = await session._get_compaction_snapshot(2)
        assert emptied is not None
        assert await emptied.replace_suffix(0, []) is True
        assert await session.get_items() == items[:3]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_replace_racing_appends_never_reorders_or_loses_items(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """Racing another engine's append, a replace either lands before it whole or refuses."""
    async with _open(engines[0], tables) as session, _open(engines[1], tables) as other:
        for round_ in range(15):
            await session.clear_session()
            prefix = [_user(f"old {i}") for i in range(4)]
            await session.add_items(prefix)
            snapshot = await session._get_compaction_snapshot(2)
            assert snapshot is not None
            late = _user(f"late {round_}")
            swapped, _ = await asyncio.gather(
                snapshot.replace_suffix(0, [SUMMARY]), other.add_items([late])
            )
            stored = await session.get_items()
            if swapped:
                assert stored == [*prefix[:2], SUMMARY, late]
            else:
                assert stored == [*prefix, late]


def _reply(text: str) -> Any:
    return ResponseOutputMessage.model_validate(
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    )


async def _five_turns(backend: StoreSession) -> tuple[int, list[Any], list[TResponseInputItem]]:
    """Five turns under the SDK's wrapper over a history longer than the read limit."""
    hidden = _user("older hidden history")
    await backend.add_items(
        [hidden]
        + [{"role": "assistant" if i % 2 else "user", "content": f"visible {i}"} for i in range(20)]
    )
    client = MagicMock()
    client.responses.compact = AsyncMock(return_value=SimpleNamespace(output=[SUMMARY]))
    session = OpenAIResponsesCompactionSession("c", backend, client=client)
    for turn in range(5):
        agent = Agent(name="worker", model=ScriptedModel(steps=[[_reply("done")]]))
        await Runner.run(agent, f"turn {turn}", session=session)
    calls = [call.kwargs["input"] for call in client.responses.compact.await_args_list]
    return client.responses.compact.await_count, calls, await backend.get_items(limit=100)


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_sdk_compaction_wrapper_compacts_as_over_sqlite_session(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str], tmp_path: Path
) -> None:
    """The SDK's wrapper compacts the visible suffix of SQLAlchemySession as of SQLiteSession."""
    async with SQLiteSession("c", tmp_path / "c.db", session_settings={"limit": 20}) as lite:
        want = await _five_turns(lite)
    async with _open(engines[0], tables, session_settings={"limit": 20}) as session:
        got = await _five_turns(session)
    assert got == want
    count, calls, retained = got
    assert count == 1
    assert len(calls[0]) == 22
    assert "older hidden history" not in str(calls)
    assert retained[0] == _user("older hidden history")
    assert SUMMARY in retained


@pytest.mark.sqlite
async def test_concurrent_first_writes_create_tables_on_one_sqlite_file(tmp_path: Path) -> None:
    """Two engines creating the tables on one SQLite file at once both wait, neither fails."""
    for round_ in range(8):
        url = f"sqlite+aiosqlite:///{tmp_path / f'race{round_}.db'}"
        sessions = [
            SQLAlchemySession.from_url(f"s{i}", url=url, create_tables=True) for i in range(3)
        ]
        try:
            results = await asyncio.gather(
                *(s.add_items([_user(s.session_id)]) for s in sessions), return_exceptions=True
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
            for s in sessions:
                assert await s.get_items() == [_user(s.session_id)]
        finally:
            for s in sessions:
                await s.aclose()


@pytest.mark.sqlite
async def test_table_creation_waits_while_another_writer_holds_a_new_sqlite_file(
    tmp_path: Path,
) -> None:
    """Creating tables waits for a writer holding a new (not yet WAL) file instead of failing."""
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another worker mid-creation, in rollback mode
        holder.execute("CREATE TABLE other_app (x INTEGER)")
        url = f"sqlite+aiosqlite:///{path}"
        async with SQLAlchemySession.from_url("s", url=url, create_tables=True) as session:
            write = asyncio.create_task(session.add_items([_user("waited")]))
            await asyncio.sleep(0.5)
            assert not write.done()
            holder.execute("COMMIT")
            await asyncio.wait_for(write, 30)
            assert await session.get_items() == [_user("waited")]
    finally:
        holder.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_replace_that_fails_midway_leaves_the_history_whole(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A replace whose insert fails after its delete rolls back: every row is still there."""
    items = [_user(f"item {i}") for i in range(4)]
    engine = engines[0]
    failing = False

    def fail_insert(*args: Any) -> None:
        statement = str(args[2])
        if failing and statement.startswith(f"INSERT INTO {tables[1]}"):
            raise RuntimeError("insert refused")

    async with _open(engine, tables) as session:
        await session.add_items(items)
        snapshot = await session._get_compaction_snapshot(3)
        assert snapshot is not None
        event.listen(engine.sync_engine, "before_cursor_execute", fail_insert)
        try:
            failing = True
            with pytest.raises(RuntimeError, match="insert refused"):
                await snapshot.replace_suffix(0, [SUMMARY])
            failing = False
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", fail_insert)
        assert await session.get_items() == items
        assert await snapshot.replace_suffix(0, [SUMMARY]) is True
        assert await session.get_items() == [items[0], SUMMARY]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_cancelled_replace_is_all_or_nothing(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A replace cancelled at any point leaves either the old suffix or the new one, whole."""
    items = [_user(f"item {i}") for i in range(4)]
    async with _open(engines[0], tables) as session, _open(engines[1], tables) as other:
        for steps in range(0, 12, 2):
            await session.clear_session()
            await session.add_items(items)
            snapshot = await session._get_compaction_snapshot(3)
            assert snapshot is not None
            replace = asyncio.create_task(snapshot.replace_suffix(0, [SUMMARY]))
            for _ in range(steps):
                await asyncio.sleep(0)
            replace.cancel()
            late = asyncio.create_task(other.add_items([_user("late")]))
            outcome = (await asyncio.gather(replace, return_exceptions=True))[0]
            await late
            stored = await session.get_items()
            assert outcome is True or isinstance(outcome, asyncio.CancelledError)
            assert stored in ([items[0], SUMMARY, _user("late")], [*items, _user("late")])


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_compaction_replaces_only_the_suffix_the_model_saw(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """The core hook's suffix-only case (tests/unit/test_compaction_hook.py) holds on SQLAlchemy."""
    async with _open(engines[0], tables) as backend:
        await backend.add_items([hook.CALL, hook.OUTPUT])
        compact = await hook._run_compacting(backend)
        compact.assert_awaited_once()
        assert compact.call_args.kwargs["input"][0] == _user("continue")
        assert await backend.get_items() == [hook.CALL, hook.OUTPUT]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_snapshot_limit_beyond_any_row_count_is_the_whole_history(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A snapshot limit of 2**70 reads every row and reports the window complete."""
    items = [_user(f"item {i}") for i in range(3)]
    async with _open(engines[0], tables) as session:
        await session.add_items(items)
        snapshot = await session._get_compaction_snapshot(2**70)
        assert snapshot is not None
        assert snapshot.items == items
        assert snapshot.complete


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_huge_read_limit_works_with_statement_listeners_attached(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """With a statement listener (so no driver fast path), ``get_items(limit=10**20)`` reads all."""
    items = [_user(f"item {i}") for i in range(3)]
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    engine = engines[0]
    async with _open(engine, tables) as session:
        await session.add_items(items)
        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            assert await session.get_items(limit=10**20) == items
            assert await session.pop_item() == items[-1]
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert any("LIMIT" in statement for statement in seen)


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_cancelled_pop_never_restores_into_a_session_cleared_after_it(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A pop cancelled midway does not bring its row back after another engine's clear."""
    async with _open(engines[0], tables) as session, _open(engines[1], tables) as other:
        for round_ in range(24):
            await session.add_items([_user(f"item {round_}")])
            pop = asyncio.create_task(session.pop_item())
            for _ in range(round_ % 8):
                await asyncio.sleep(0)
            pop.cancel()
            await other.clear_session()
            await asyncio.gather(pop, return_exceptions=True)
            assert await other.get_items() == []
            assert await session.get_items() == []


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_cancelled_pop_keeps_its_item_when_nothing_cleared(
    engines: tuple[AsyncEngine, AsyncEngine], tables: tuple[str, str]
) -> None:
    """A cancelled pop leaves its item stored, or returned, when no clear came in between."""
    async with _open(engines[0], tables) as session, _open(engines[1], tables) as other:
        await session.add_items([_user("first")])
        for round_ in range(16):
            await session.add_items([_user(f"item {round_}")])
            pop = asyncio.create_task(session.pop_item())
            for _ in range(round_ % 8):
                await asyncio.sleep(0)
            pop.cancel()
            await other.add_items([_user(f"late {round_}")])
            outcome = (await asyncio.gather(pop, return_exceptions=True))[0]
            stored = await other.get_items()
            if isinstance(outcome, asyncio.CancelledError):
                assert _user(f"item {round_}") in stored
            else:
                assert outcome == _user(f"item {round_}")
            assert stored[0] == _user("first")
            assert stored[-1] == _user(f"late {round_}")

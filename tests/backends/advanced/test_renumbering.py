"""Stored turn numbers: renumbered when a purge deletes rows, trusted to find turn N by index."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSQLiteSession
from agents.usage import Usage

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from tests.sql_servers import database_url, drop_tables, unique_tables

TURNS = 50


def exchange(n: int) -> list[dict[str, str]]:
    """Turn ``n``: a user message and the answer."""
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


def run_result(tokens: int) -> Any:
    """What store_run_usage reads of a run result: its usage."""
    usage = Usage(requests=1, input_tokens=tokens, output_tokens=1, total_tokens=tokens + 1)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


async def purge_turns(session: Any, turns: set[int]) -> None:
    """Delete the rows of the given original turns through the store's rewrite (a purge)."""
    store = session._advanced  # noqa: SLF001 (its rewrite is what a purge calls)
    rows = await store.rows(session.session_id)
    doomed: dict[int, str | None] = {}
    for row_id, text in rows:
        number = int("".join(ch for ch in text.split('"content":')[1] if ch.isdigit()))
        if number in turns:
            doomed[row_id] = None
    assert len(doomed) == 2 * len(turns)
    assert await store.rewrite(session.session_id, doomed) == len(doomed)


def kept(turns: range, gone: set[int]) -> list[dict[str, str]]:
    """The items of the original turns in ``turns`` that were not purged."""
    return [item for n in turns if n not in gone for item in exchange(n)]


async def test_a_purged_prefix_renumbers_the_turns_after_it(opener: Any) -> None:
    """After the oldest turns are purged, turn N is the N-th remaining one, early or late."""
    session = opener(uuid.uuid4().hex)
    for n in range(1, TURNS + 1):
        await session.add_items(exchange(n))
    gone = {1, 2, 3}
    await purge_turns(session, gone)
    turns = await session.get_conversation_turns()
    assert [t["turn"] for t in turns] == list(range(1, TURNS - 2))
    assert [t["content"] for t in turns][:2] == ["q4", "q5"]
    await session.create_branch_from_turn(40, "late")  # original turn 43
    assert await session.get_items() == kept(range(1, 43), gone)
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(2, "early")  # original turn 5
    assert await session.get_items() == kept(range(1, 5), gone)
    await session.close()


async def test_a_purge_in_the_middle_renumbers_forks_and_moves_usage(opener: Any) -> None:
    """A purge inside a fork's inherited part renumbers the fork's own turns and their usage."""
    session = opener(uuid.uuid4().hex)
    for n in range(1, 46):
        await session.add_items(exchange(n))
    await session.create_branch_from_turn(41, "fork")  # inherits turns 1-40
    for n in range(141, 146):
        await session.add_items(exchange(n))
    await session.store_run_usage(run_result(7))  # on the fork's turn 45 (original 145)
    gone = {10}
    await purge_turns(session, gone)
    turns = await session.get_conversation_turns()
    assert [t["turn"] for t in turns] == list(range(1, 45))
    assert turns[-1]["content"] == "q145"
    usage = await session.get_turn_usage()
    assert [(u["user_turn_number"], u["input_tokens"]) for u in usage] == [(44, 7)]
    await session.create_branch_from_turn(42, "again")  # the fork's second own turn
    assert await session.get_items() == kept(range(1, 41), gone) + kept(range(141, 143), gone)
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(44, "main-late")  # original turn 45 of main
    assert await session.get_items() == kept(range(1, 45), gone)
    await session.close()


@pytest.mark.sqlite
async def test_the_sdks_class_finds_the_renumbered_turns(tmp_path: Path) -> None:
    """After our purge, the SDK's class finds turn N where ours does (it trusts the numbers)."""
    path = tmp_path / "shared.db"
    ours = AdvancedSQLiteSession(session_id="s", db_path=path, create_tables=True)
    for n in range(1, 41):
        await ours.add_items(exchange(n))
    gone = {1, 2, 20}
    await purge_turns(ours, gone)
    sdk = SDKAdvancedSQLiteSession(session_id="s", db_path=path)
    await sdk.create_branch_from_turn(35, "sdk-fork")
    await ours.create_branch_from_turn(35, "our-fork")
    expected = kept(range(1, 38), gone)  # the 35th left is the original 38th
    assert await ours.get_items() == expected
    assert await sdk.get_items() == expected
    sdk_turns = await sdk.get_conversation_turns("main")
    assert [t["turn"] for t in sdk_turns] == list(range(1, 38))
    sdk.close()
    ours.close()


def _version_2(path: Path) -> None:
    """Make an up-to-date file look like one the previous version wrote (no turn index)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DROP INDEX idx_structure_turn")
        conn.execute(
            "UPDATE agent_sessions_schema SET version = 2 WHERE name = 'agent_messages.advanced'"
        )
    conn.close()


def _state(path: Path) -> tuple[bool, int]:
    """Whether the file has the turn index, and the version its branch tables record."""
    conn = sqlite3.connect(path)
    try:
        index = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'idx_structure_turn'"
        ).fetchone()
        (version,) = conn.execute(
            "SELECT version FROM agent_sessions_schema WHERE name = 'agent_messages.advanced'"
        ).fetchone()
        return index is not None, int(version)
    finally:
        conn.close()


@pytest.mark.sqlite
async def test_a_file_without_the_turn_index_is_upgraded_once_concurrently(
    tmp_path: Path,
) -> None:
    """Two stores opening a previous-version file at once add the index once; both read it."""
    path = tmp_path / "old.db"
    first = AdvancedSQLiteSession(session_id="s", db_path=path, create_tables=True)
    for n in range(1, 41):
        await first.add_items(exchange(n))
    first.close()
    _version_2(path)
    assert _state(path) == (False, 2)
    a = AdvancedSQLiteSession(session_id="s", db_path=path)
    b = AdvancedSQLiteSession(session_id="s", db_path=path)
    await asyncio.gather(a.add_items(exchange(41)), b.add_items(exchange(42)))
    assert _state(path) == (True, 3)
    await a.create_branch_from_turn(41, "fork")
    assert await a.get_items() == kept(range(1, 41), set())
    sdk = SDKAdvancedSQLiteSession(session_id="s", db_path=path)
    assert len(await sdk.get_items()) == 84  # main, as the SDK reads it
    sdk.close()
    a.close()
    b.close()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
async def test_server_tables_of_the_previous_version_get_the_turn_index(
    kind: str, tmp_path: Path
) -> None:
    """Branch tables a previous version made get the turn index and version 3 with create_tables."""
    from sqlalchemy import inspect, text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url(kind, tmp_path))
    sessions, messages = unique_tables()

    def open_session() -> AdvancedSQLAlchemySession:
        return AdvancedSQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )

    def indexes(sync: Any) -> set[str]:
        return {index["name"] for index in inspect(sync).get_indexes(f"{messages}_structure")}

    version_sql = text("SELECT version FROM agent_sessions_schema WHERE name = :name")
    name = {"name": f"{messages}.advanced"}
    try:
        first = open_session()
        for n in range(1, 41):
            await first.add_items(exchange(n))
        await first.close()
        async with engine.begin() as conn:
            drop = f"DROP INDEX idx_{messages}_structure_turn"
            if kind == "mariadb":
                drop += f" ON {messages}_structure"
            await conn.execute(text(drop))
            await conn.execute(
                text("UPDATE agent_sessions_schema SET version = 2 WHERE name = :name"), name
            )
        await engine.dispose()
        engine = create_async_engine(database_url(kind, tmp_path))  # a new server process
        again = open_session()
        await again.create_branch_from_turn(40, "late")
        assert await again.get_items() == kept(range(1, 40), set())
        await again.close()
        async with engine.connect() as conn:
            assert f"idx_{messages}_structure_turn" in await conn.run_sync(indexes)
            assert (await conn.execute(version_sql, name)).scalar_one() == 3
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()

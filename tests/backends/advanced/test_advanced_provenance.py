"""Provenance on advanced sessions: records of a branch, a run's items stored once per session."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.extensions.memory import AdvancedSQLiteSession as SdkAdvanced
from agents.extensions.memory import SQLAlchemySession as SdkSQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.backends.advanced import AdvancedSQLiteStore
from agent_sessions.core import StoreSession
from agent_sessions.errors import ProvenanceConflictError
from agent_sessions.provenance import as_run
from agent_sessions.store import RowTag, tags_own_rows
from tests.provenance.test_session_layer import desks, message
from tests.provenance.test_sqlite_provenance import run_together
from tests.sql_servers import KINDS, database_url, drop_tables, unique_tables

NO_TRACE = RunConfig(tracing_disabled=True)


@dataclass
class Backend:
    """Opens advanced sessions on one database's fresh tables, through two connections."""

    kind: str
    open: Callable[[str], Any]
    """A new session object on the tables (SQLite file: the file's shared store)."""
    open_apart: Callable[[str], Any]
    """A session object with a store of its own (a second engine on a server)."""
    count_rows: Callable[[str], Any]
    """Awaitable: how many message rows the session has, whatever their branch."""


@pytest.fixture(params=[pytest.param("file", marks=pytest.mark.sqlite), *KINDS])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """AdvancedSQLiteSession on a file, or AdvancedSQLAlchemySession on each database."""
    if request.param == "file":
        path = tmp_path / "adv.db"

        async def count_file(session_id: str) -> int:
            with sqlite3.connect(path) as conn:
                query = "SELECT count(*) FROM agent_messages WHERE session_id = ?"
                return int(conn.execute(query, (session_id,)).fetchone()[0])

        yield Backend(
            "file",
            lambda sid: AdvancedSQLiteSession(session_id=sid, db_path=path),
            lambda sid: StoreSession(sid, AdvancedSQLiteStore(path), owns_store=True),
            count_file,
        )
        return
    url = database_url(request.param, tmp_path)
    engines = [create_async_engine(url), create_async_engine(url)]
    sessions, messages = unique_tables()

    def on(engine: AsyncEngine) -> Callable[[str], Any]:
        return lambda sid: AdvancedSQLAlchemySession(
            sid,
            engine=engine,
            create_tables=True,
            sessions_table=sessions,
            messages_table=messages,
        )

    async def count(session_id: str) -> int:
        async with engines[0].connect() as conn:
            query = text(f"SELECT count(*) FROM {messages} WHERE session_id = :s")
            return int((await conn.execute(query, {"s": session_id})).scalar_one())

    yield Backend(request.param, on(engines[0]), on(engines[1]), count)
    await drop_tables(engines[0], sessions, messages)
    for engine in engines:
        await engine.dispose()


def provenance(records: list[Any]) -> list[tuple[Any, ...]]:
    """Each record's agent, run and position."""
    return [(r.agent_name, r.run_id, r.position) for r in records]


async def test_both_advanced_stores_record_provenance(backend: Backend) -> None:
    """The advanced stores define their own tagged append (not the plain layout's)."""
    async with backend.open("s") as session:
        assert tags_own_rows(session.store)


async def test_records_follow_the_current_branch_and_inherited_items_keep_theirs(
    backend: Backend,
) -> None:
    """A fork's records are its parent's below the fork point, with their tags, then its own."""
    async with backend.open("b") as session:
        with as_run("turn-1", agent_name="desk"):
            await session.add_items([message("q1"), message("a1", "assistant")])
        with as_run("turn-2", agent_name="desk"):
            await session.add_items([message("q2"), message("a2", "assistant")])
        await session.add_items([message("untagged", "assistant")])
        main = await session.get_records()
        assert provenance(main) == [
            ("desk", "turn-1", 0),
            ("desk", "turn-1", 1),
            ("desk", "turn-2", 0),
            ("desk", "turn-2", 1),
            (None, None, None),
        ]
        assert all(r.created_at is not None for r in main)
        await session.create_branch_from_turn(2, "edit")
        with as_run("turn-2b", agent_name="editor"):
            await session.add_items([message("q2 again"), message("a2b", "assistant")])
        fork = await session.get_records()
        assert [r.item for r in fork] == await session.get_items()
        assert provenance(fork) == [
            ("desk", "turn-1", 0),
            ("desk", "turn-1", 1),
            ("editor", "turn-2b", 0),
            ("editor", "turn-2b", 1),
        ]
        assert fork[:2] == main[:2]  # inherited rows: the same records, times included
        for limit in (0, 1, 3, 4, 10):
            got = [r.item for r in await session.get_records(limit)]
            assert got == await session.get_items(limit)
        await session.switch_to_branch("main")
        assert await session.get_records() == main


async def test_a_retried_batch_is_stored_once_and_a_conflict_writes_nothing(
    backend: Backend,
) -> None:
    """The same tags store nothing; another digest at a stored position refuses the batch."""
    async with backend.open("r") as session:
        store = session.store
        texts = [json.dumps(message("a")), json.dumps(message("b", "assistant"))]
        tags = [RowTag("x", "run", 0, "d0"), RowTag("x", "run", 1, "d1")]
        assert await store.append_tagged("r", texts, tags) == 2
        assert await store.append_tagged("r", texts, tags) == 0
        with pytest.raises(ProvenanceConflictError) as caught:
            await store.append_tagged(
                "r", texts, [RowTag("x", "run", 2, "d2"), tags[1]._replace(digest="other")]
            )
        assert (caught.value.position, caught.value.run_end) == (1, 2)
        assert await backend.count_rows("r") == 2
        assert len(await session.get_conversation_turns()) == 1  # no structure row either
        with as_run("job"):
            await session.add_items([message("c")])
        with as_run("job"):
            await session.add_items([message("c")])
        assert await backend.count_rows("r") == 3


async def test_concurrent_retries_through_separate_stores_store_one_copy(
    backend: Backend,
) -> None:
    """Retries of one batch at once, through two stores (two engines on a server): one copy."""
    batch = [message(f"m{i}", "user" if i % 3 == 0 else "assistant") for i in range(9)]

    async def retry(opener: Callable[[str], Any]) -> None:
        async with opener("race") as session:
            with as_run("job-1", agent_name="worker"):
                await session.add_items(batch)

    await asyncio.gather(retry(backend.open), retry(backend.open_apart), retry(backend.open_apart))
    assert await backend.count_rows("race") == len(batch)
    async with backend.open("race") as session:
        assert await session.get_items() == batch
        assert [r.position for r in await session.get_records()] == list(range(len(batch)))
        assert len(await session.get_conversation_turns()) == 3


async def test_a_retry_after_a_branch_switch_stores_its_new_items_on_the_current_branch(
    backend: Backend,
) -> None:
    """Items the run stored on another branch are not stored again; the rest land here.

    The key is the session: a run's position is stored once whichever branch holds it, so a
    retry that went another way is placed after all of the run's items, on every branch.
    """
    first = [message("question"), *(message(f"step {i}", "assistant") for i in range(11))]
    async with backend.open("switch") as session:
        await session.add_items([message("hello")])
        with as_run("job"):
            await session.add_items(first)
        await session.create_branch_from_turn(1, "other")  # before everything: empty
        with as_run("job"):
            await session.add_items([message("question")])
            await session.add_items([message("another answer", "assistant")])
        records = await session.get_records()
        assert provenance(records) == [(None, "job", 12)]
        assert [r.item for r in records] == [message("another answer", "assistant")]
        assert await backend.count_rows("switch") == 1 + len(first) + 1
        await session.switch_to_branch("main")
        assert await session.get_items() == [message("hello"), *first]


async def test_a_handoff_run_on_an_advanced_session_names_each_agent(backend: Backend) -> None:
    """Runner.run records who said what; the turn queries still see the run."""
    triage, _ = desks()
    async with backend.open("ticket") as session:
        await Runner.run(
            triage,
            "I was charged twice, please pass me to billing.",
            session=session,
            run_config=NO_TRACE,
        )
        records = await session.get_records()
        assert [r.agent_name for r in records] == [None, "triage", "triage", "billing"]
        assert [r.position for r in records] == [0, 1, 2, 3]
        assert len({r.run_id for r in records}) == 1
        assert len(await session.get_conversation_turns()) == 1


@pytest.mark.sqlite
async def test_the_sdk_reads_a_tagged_file_and_an_sdk_file_upgrades(tmp_path: Path) -> None:
    """An SDK-made file gains the columns; the SDK's class reads our tagged rows and branches."""
    path = tmp_path / "sdk.db"
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    await sdk.add_items([message("from the SDK")])
    before = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(agent_messages)")}
    assert "run_id" not in before
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        with as_run("r1", agent_name="importer"):
            await ours.add_items([message("from us", "assistant"), message("again")])
        records = await ours.get_records()
        assert provenance(records) == [
            (None, None, None),
            ("importer", "r1", 0),
            ("importer", "r1", 1),
        ]
        assert await sdk.get_items() == await ours.get_items()
        assert [t["turn"] for t in await sdk.get_conversation_turns()] == [1, 2]
        await sdk.add_items([message("SDK again", "assistant")])
        assert (await ours.get_records(1))[0].run_id is None
    sdk.close()


@pytest.mark.parametrize("url", KINDS[:2], indirect=True)  # the SDK's DDL fails on MariaDB
async def test_tables_the_sdk_made_upgrade_for_tagged_advanced_writes(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Tables the SDK's SQLAlchemySession made get the v4 columns, and it reads our rows."""
    sessions, messages = tables
    sdk = SdkSQLAlchemySession(
        "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    )
    await sdk.add_items([message("from the SDK")])
    async with AdvancedSQLAlchemySession(
        "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    ) as ours:
        with as_run("r1", agent_name="importer"):
            await ours.add_items([message("from us", "assistant")])
        assert provenance(await ours.get_records()) == [
            (None, None, None),
            ("importer", "r1", 0),
        ]
        assert await sdk.get_items() == await ours.get_items()


async def test_a_pop_on_a_fork_hides_an_inherited_item_and_its_retry_stays_away(
    backend: Backend,
) -> None:
    """An inherited item popped on a fork stays its parent's; its run's retry stores nothing."""
    answer = message("answer", "assistant")
    async with backend.open("pop") as session:
        with as_run("job"):
            await session.add_items([message("question"), answer])
        await session.add_items([message("later")])
        await session.create_branch_from_turn(2, "fork")  # inherits the job's two items
        assert await session.pop_item() == answer
        with as_run("job"):
            await session.add_items([message("question"), answer])
        assert await session.get_items() == [message("question")]
        await session.switch_to_branch("main")
        assert await session.get_items() == [message("question"), answer, message("later")]
        assert await session.pop_item() == message("later")
        assert await session.pop_item() == answer  # main's own: deleted (the fork hid it)
        with as_run("job"):  # so its retry stores it again
            await session.add_items([message("question"), answer])
        assert provenance(await session.get_records()) == [(None, "job", 0), (None, "job", 1)]


def _retry_job(path: str, start: Any) -> None:
    """One process's attempt at job-9 on the advanced file, once ``start`` is set."""

    async def main() -> None:
        async with AdvancedSQLiteSession(session_id="s", db_path=path, create_tables=True) as s:
            start.wait()
            with as_run("job-9", agent_name="worker"):
                await s.add_items([message("ask"), message("answer", "assistant")])

    asyncio.run(main())


@pytest.mark.sqlite
def test_two_processes_retrying_a_run_on_an_advanced_file_store_one_copy(
    tmp_path: Path,
) -> None:
    """Two processes retrying the same run at the same moment leave each item once."""
    path = str(tmp_path / "race.db")
    run_together(_retry_job, path)

    async def read() -> list[Any]:
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            return await session.get_records()

    records = asyncio.run(read())
    assert [r.item for r in records] == [message("ask"), message("answer", "assistant")]
    assert [(r.run_id, r.position, r.agent_name) for r in records] == [
        ("job-9", 0, "worker"),
        ("job-9", 1, "worker"),
    ]


@pytest.mark.parametrize("url", KINDS[:2], indirect=True)
async def test_tables_without_the_provenance_columns_left_as_they_are_still_serve(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Tables of an older version used with create_tables=False: runs work, untagged."""
    sessions, messages = tables
    first = AdvancedSQLAlchemySession(
        session_id="t",
        engine=engine,
        sessions_table=sessions,
        messages_table=messages,
        create_tables=True,
    )
    await first.add_items([message("before")])
    async with engine.begin() as conn:  # as an earlier version made them
        await conn.execute(text(f"DROP INDEX IF EXISTS {messages}_run"))
        for column in ("agent_name", "run_id", "run_position", "item_digest"):
            await conn.execute(text(f"ALTER TABLE {messages} DROP COLUMN {column}"))
    other = create_async_engine(engine.url)
    try:
        session = AdvancedSQLAlchemySession(
            session_id="t", engine=other, sessions_table=sessions, messages_table=messages
        )
        triage, _ = desks()
        await Runner.run(triage, "Hello there.", session=session, run_config=NO_TRACE)
        records = await session.get_records()
        assert [r.item for r in records] == await session.get_items()
        assert {(r.agent_name, r.run_id) for r in records} == {(None, None)}
        assert await session.pop_item() == records[-1].item
        assert len(await session.get_items()) == len(records) - 1
    finally:
        await other.dispose()

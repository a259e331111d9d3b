"""Provenance through SQLAlchemy: PostgreSQL, MariaDB and aiosqlite, tagged writes and retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_sessions import SQLAlchemySession
from agent_sessions.errors import ProvenanceConflictError
from agent_sessions.provenance import as_run
from agent_sessions.store import RowTag
from tests.provenance.test_session_layer import desks, message
from tests.sql_servers import KINDS


def open_session(session_id: str, engine: AsyncEngine, tables: tuple[str, str]) -> Any:
    """Our session on the test's fresh tables."""
    sessions, messages = tables
    return SQLAlchemySession(
        session_id,
        engine=engine,
        create_tables=True,
        sessions_table=sessions,
        messages_table=messages,
    )


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_handoff_records_its_agents_and_the_sdk_reads_it(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Runner.run records who said what; the SDK's class reads the same items back."""
    triage, _ = desks()
    async with open_session("ticket", engine, tables) as session:
        await Runner.run(
            triage,
            "I was charged twice, please pass me to billing.",
            session=session,
            run_config=RunConfig(tracing_disabled=True),
        )
        records = await session.get_records()
        assert [r.agent_name for r in records] == [None, "triage", "triage", "billing"]
        assert [r.position for r in records] == [0, 1, 2, 3]
        assert all(r.created_at is not None for r in records)
        sdk = SDKSQLAlchemySession(
            "ticket", engine=engine, sessions_table=tables[0], messages_table=tables[1]
        )
        assert await sdk.get_items() == await session.get_items()
        await sdk.add_items([message("from the SDK")])
        assert (await session.get_records(1))[0].run_id is None


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_retries_store_once_and_conflicts_write_nothing(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """The same tags store nothing; another digest at a stored position refuses the batch."""
    async with open_session("s", engine, tables) as session:
        store = session.store
        texts = ['{"role":"user","content":"a"}', '{"role":"user","content":"b"}']
        tags = [RowTag("x", "r", 0, "d0"), RowTag("x", "r", 1, "d1")]
        assert await store.append_tagged("s", texts, tags) == 2
        assert await store.append_tagged("s", texts, tags) == 0
        with pytest.raises(ProvenanceConflictError):
            await store.append_tagged(
                "s", texts, [RowTag("x", "r", 2, "n"), tags[1]._replace(digest="z")]
            )
        assert len(await store.records("s", None)) == 2


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_two_engines_retrying_at_once_store_one_copy(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Concurrent retries of one batch through two session objects leave one copy."""
    batch = [message(f"m{i}") for i in range(10)]

    async def write() -> None:
        async with open_session("race", engine, tables) as session:
            with as_run("job-1"):
                await session.add_items(batch)

    await asyncio.gather(write(), write(), write())
    async with open_session("race", engine, tables) as session:
        assert await session.get_items() == batch


@pytest.mark.parametrize("url", KINDS[:2], indirect=True)
async def test_on_sdk_tables_left_as_they_are_runs_store_without_provenance(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """With create_tables=False on tables the SDK made, a Runner run works, untagged."""
    sdk = SDKSQLAlchemySession(
        "ticket",
        engine=engine,
        create_tables=True,
        sessions_table=tables[0],
        messages_table=tables[1],
    )
    await sdk.add_items([message("from the SDK")])
    triage, _ = desks()
    ours = SQLAlchemySession(
        "ticket", engine=engine, sessions_table=tables[0], messages_table=tables[1]
    )
    async with ours as session:
        await Runner.run(
            triage, "Hello there.", session=session, run_config=RunConfig(tracing_disabled=True)
        )
        records = await session.get_records()
        assert [r.item for r in records] == await sdk.get_items()
        assert len(records) > 1
        assert {(r.agent_name, r.run_id) for r in records} == {(None, None)}
        popped = await session.pop_item()
        assert popped == records[-1].item
        assert await sdk.get_items() == [r.item for r in records[:-1]]

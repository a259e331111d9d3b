"""Compactions in separate processes at once: exactly one lands, nothing else changes."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from tests.sql_servers import POSTGRES_URL, database_url, drop_tables, unique_tables

from .kit import Item, contents, turns

ROOT = Path(__file__).resolve().parents[2]
RACERS = 3

pytestmark = pytest.mark.slow


async def race(url: str, session_id: str, messages_table: str) -> list[str]:
    """Start the racers together and return what each printed."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.compaction.racer",
            url,
            session_id,
            f"racer{n}",
            messages_table,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(RACERS)
    ]
    outputs = []
    for process in processes:
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, err.decode()
        outputs.append(out.decode().strip())
    return outputs


def check(outputs: list[str], items: list[Item], archived: list[Any]) -> None:
    """Exactly one racer compacted; the history is its summary and the two newest turns.

    The archive holds the winner's batch alone: the six compacted items, once.
    """
    assert sorted(outputs) == ["False"] * (RACERS - 1) + ["True"]
    winner = outputs.index("True")
    assert contents(items) == [
        f"racer{winner} of 6 items",
        *contents(turns(2, 3)),
    ]
    assert [entry.item for entry in archived] == turns(3)
    assert {(entry.batch, entry.kind) for entry in archived} == {(1, "compaction")}


@pytest.mark.sqlite
async def test_processes_race_on_a_sqlite_file(tmp_path: Path) -> None:
    """Three processes compact one SQLite session at once; one wins."""
    path = tmp_path / "chats.db"
    async with SQLiteSession("s", path) as session:
        await session.add_items(turns(5))
    outputs = await race(str(path), "s", "m_unused")
    async with SQLiteSession("s", path) as session:
        check(outputs, await session.get_items(), await session.archived_items())


@pytest.fixture
async def postgres_tables(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """Fresh tables on the PostgreSQL server, dropped afterwards."""
    database_url("postgres", tmp_path)  # skips without the server
    sessions, messages = unique_tables()
    yield sessions, messages
    engine = create_async_engine(POSTGRES_URL)
    await drop_tables(engine, sessions, messages)
    await engine.dispose()


@pytest.mark.postgres
async def test_processes_race_on_postgres(postgres_tables: tuple[str, str]) -> None:
    """Three processes compact one PostgreSQL session at once; one wins."""
    sessions, messages = postgres_tables
    assert sessions == f"s{messages[1:]}"
    session_id = f"race-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {
        "create_tables": True,
        "sessions_table": sessions,
        "messages_table": messages,
    }
    async with SQLAlchemySession.from_url(session_id, url=POSTGRES_URL, **options) as session:
        await session.add_items(turns(5))
    outputs = await race(POSTGRES_URL, session_id, messages)
    async with SQLAlchemySession.from_url(session_id, url=POSTGRES_URL, **options) as session:
        check(outputs, await session.get_items(), await session.archived_items())

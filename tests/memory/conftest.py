"""Memory stores on every backend, each on fresh tables that are dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions.memory import IndexConfig, MemoryStore
from agent_sessions.testing import MemoryHarness
from tests.sql_servers import database_url

BACKENDS = [
    pytest.param("sqlite-file", marks=pytest.mark.sqlite),
    pytest.param("sqlite-memory", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def unique_table() -> str:
    """A fresh table name, so tests sharing a server database never meet."""
    return f"mem_{uuid.uuid4().hex[:12]}"


async def drop_table(engine: AsyncEngine, table: str) -> None:
    """Drop a memories table and its schema-version row."""
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    with contextlib.suppress(DBAPIError):  # no version table: nothing was created
        async with engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM agent_sessions_schema WHERE name = :name"), {"name": table}
            )


def make_harness(kind: str, tmp_path: Path) -> MemoryHarness:
    """A harness whose stores all reach one fresh database (or table) of ``kind``."""
    if kind == "sqlite-file":
        path = tmp_path / "memory.db"
        return MemoryHarness(kind, lambda index, clock: MemoryStore(path, index=index, clock=clock))
    if kind == "sqlite-memory":
        return MemoryHarness(
            kind, lambda index, clock: MemoryStore(index=index, clock=clock), persistent=False
        )
    url = database_url(kind.removeprefix("sqlalchemy-"), tmp_path)
    engine = create_async_engine(url)
    table = unique_table()

    def open_store(index: IndexConfig | None, clock: Callable[[], float]) -> MemoryStore:
        return MemoryStore.from_engine(engine, table=table, index=index, clock=clock)

    async def cleanup() -> None:
        await drop_table(engine, table)
        await engine.dispose()

    return MemoryHarness(kind, open_store, cleanup=[cleanup])


@pytest.fixture(params=BACKENDS)
async def memory_harness(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MemoryHarness]:
    """A harness on one backend; its stores are closed and its tables dropped afterwards."""
    harness = make_harness(request.param, tmp_path)
    try:
        yield harness
    finally:
        await harness.close_all()

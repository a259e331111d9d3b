"""What sessions on one engine share (statements, the schema check) and how pools are sized."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from agent_sessions import SQLAlchemySession, SQLAlchemyStore
from tests.sql_servers import KINDS, database_url, drop_tables, unique_tables

ITEM = {"role": "user", "content": "hi"}


@contextmanager
def schema_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect the schema checks run in the block: each reads the schema-version table once.

    The listener also turns off the driver fast path, which is fine here: only the schema
    check is counted, and it always runs through SQLAlchemy.
    """
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("SELECT agent_sessions_schema.version"):
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def sizing(pool: QueuePool) -> tuple[int, int]:
    """A queue pool's ``pool_size`` and ``max_overflow``."""
    return pool.size(), pool._max_overflow  # noqa: SLF001 - no public accessor


def open_session(engine: AsyncEngine, tables: tuple[str, str], sid: str = "s") -> SQLAlchemySession:
    """A session on ``engine`` and the pair of ``tables``, with ``create_tables``."""
    sessions, messages = tables
    return SQLAlchemySession(
        sid, engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    )


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_the_schema_is_checked_once_per_engine_and_tables(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Only the first session of an engine and pair of tables checks the schema."""
    with schema_statements(engine) as seen:
        async with open_session(engine, tables, "a") as first:
            await first.add_items([ITEM])  # type: ignore[list-item]
        checked = len(seen)
        async with open_session(engine, tables, "b") as second:
            await second.add_items([ITEM])  # type: ignore[list-item]
            assert await second.get_items() == [ITEM]
    assert checked == 1
    assert len(seen) == checked


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_concurrent_first_calls_check_the_schema_once(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Twenty sessions making their first call at once run one schema check between them."""
    with schema_statements(engine) as seen:
        sessions = [open_session(engine, tables, f"s{i}") for i in range(20)]
        await asyncio.gather(*(s.add_items([ITEM]) for s in sessions))  # type: ignore[list-item]
        for session in sessions:
            await session.close()
    assert len(seen) == 1


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_new_tables_and_a_new_engine_are_checked_again(
    url: str, engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Another pair of tables on the engine, or the same tables on another engine, is checked."""
    other = unique_tables()
    second_engine = create_async_engine(url)
    try:
        with schema_statements(engine) as seen:
            async with open_session(engine, tables) as session:
                await session.get_items()
            first = len(seen)
            async with open_session(engine, other) as session:
                await session.get_items()
            assert len(seen) > first
        with schema_statements(second_engine) as seen_there:
            async with open_session(second_engine, tables) as session:
                await session.get_items()
        assert seen_there
    finally:
        await second_engine.dispose()
        await drop_tables(engine, *other)


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_tables_dropped_after_the_check_are_created_again(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """With create_tables, a call that finds its tables dropped recreates them and succeeds."""
    async with open_session(engine, tables) as session:
        await session.add_items([ITEM])  # type: ignore[list-item]
        await drop_tables(engine, *tables)
        assert await session.get_items() == []
        await session.add_items([ITEM])  # type: ignore[list-item]
        await drop_tables(engine, *tables)
        await session.add_items([ITEM, ITEM])  # type: ignore[list-item]
        assert await session.get_items() == [ITEM, ITEM]
    async with open_session(engine, tables, "other") as newcomer:
        await drop_tables(engine, *tables)
        await newcomer.add_items([ITEM])  # type: ignore[list-item]
        assert await newcomer.get_items() == [ITEM]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_sessions_of_one_engine_share_their_statements(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Statements are built once per engine and pair of tables, not per session object."""
    first, second = open_session(engine, tables, "a"), open_session(engine, tables, "b")
    other = open_session(engine, unique_tables(), "c")
    try:
        assert isinstance(first.store, SQLAlchemyStore)
        assert isinstance(second.store, SQLAlchemyStore)
        assert isinstance(other.store, SQLAlchemyStore)
        assert first.store.tables is second.store.tables
        assert other.store.tables is not first.store.tables
    finally:
        for session in (first, second, other):
            await session.close()


@pytest.mark.postgres
async def test_from_url_keeps_fifteen_connections_by_default(tmp_path: Path) -> None:
    """A server engine made by from_url keeps up to 15 connections and opens no more."""
    session = SQLAlchemySession.from_url("s", url=database_url("postgres", tmp_path))
    try:
        pool = session.engine.pool
        assert isinstance(pool, QueuePool)
        assert sizing(pool) == (15, 0)
    finally:
        await session.close()


@pytest.mark.parametrize(
    ("kwargs", "size", "overflow"),
    [
        ({"pool_size": 3}, 3, 10),
        ({"max_overflow": 2}, 5, 2),
        ({"pool_size": 4, "max_overflow": 1}, 4, 1),
    ],
)
@pytest.mark.postgres
async def test_engine_kwargs_replace_the_pool_sizing(
    tmp_path: Path, kwargs: dict[str, int], size: int, overflow: int
) -> None:
    """Any of pool_size or max_overflow in engine_kwargs means SQLAlchemy's sizing plus it."""
    session = SQLAlchemySession.from_url(
        "s", url=database_url("postgres", tmp_path), engine_kwargs=kwargs
    )
    try:
        pool = session.engine.pool
        assert isinstance(pool, QueuePool)
        assert sizing(pool) == (size, overflow)
    finally:
        await session.close()


@pytest.mark.postgres
async def test_a_poolclass_in_engine_kwargs_is_used_as_given(tmp_path: Path) -> None:
    """A poolclass in engine_kwargs gets no pool options of ours (NullPool takes none)."""
    sessions, messages = unique_tables()
    url = database_url("postgres", tmp_path)
    session = SQLAlchemySession.from_url(
        "s",
        url=url,
        engine_kwargs={"poolclass": NullPool},
        create_tables=True,
        sessions_table=sessions,
        messages_table=messages,
    )
    try:
        assert isinstance(session.engine.pool, NullPool)
        await session.add_items([ITEM])  # type: ignore[list-item]
        assert await session.get_items() == [ITEM]
    finally:
        await drop_tables(session.engine, sessions, messages)
        await session.close()


@pytest.mark.sqlite
async def test_sqlite_from_url_keeps_sqlalchemys_pool(tmp_path: Path) -> None:
    """A SQLite file's engine made by from_url keeps SQLAlchemy's own pool sizing."""
    session = SQLAlchemySession.from_url("s", url=database_url("sqlite", tmp_path))
    try:
        pool = session.engine.pool
        assert isinstance(pool, QueuePool)
        assert sizing(pool) == (5, 10)
    finally:
        await session.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_an_engine_passed_in_keeps_its_own_pool(url: str, tables: tuple[str, str]) -> None:
    """Sessions never resize the pool of an engine they were given."""
    engine = create_async_engine(url, pool_size=2, max_overflow=1)
    try:
        sessions = [open_session(engine, tables, f"s{i}") for i in range(5)]
        await asyncio.gather(*(s.add_items([ITEM]) for s in sessions))  # type: ignore[list-item]
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert sizing(pool) == (2, 1)
        assert pool.checkedout() == 0
        for session in sessions:
            assert await session.get_items() == [ITEM]
            await session.close()
    finally:
        await drop_tables(engine, *tables)
        await engine.dispose()

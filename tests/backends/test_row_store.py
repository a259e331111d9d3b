"""``RowStore``: every store lists a session's rows with their ids and rewrites them by id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import AdvancedSQLiteSession, RowStore, SQLAlchemyStore, SQLiteStore
from agent_sessions.schema import TableNames
from agent_sessions.testing import DictStore
from tests.sql_servers import database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("memory", marks=pytest.mark.memory),
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("advanced", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
    pytest.param("sqlalchemy-mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RowStore]:
    """A fresh store of each kind, closed (and its tables dropped) afterwards."""
    kind: str = request.param
    if kind == "memory":
        yield DictStore()
        return
    if kind == "sqlite":
        async with SQLiteStore(tmp_path / "rows.db") as sqlite_store:
            yield sqlite_store
        return
    if kind == "advanced":
        async with AdvancedSQLiteSession(session_id="x", db_path=tmp_path / "adv.db") as session:
            yield session.store  # type: ignore[misc]
        return
    engine = create_async_engine(database_url(kind.removeprefix("sqlalchemy-"), tmp_path))
    sessions, messages = unique_tables()
    tables = TableNames(sessions, messages)
    try:
        async with SQLAlchemyStore(engine, tables=tables, create_tables=True) as sa_store:
            yield sa_store
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


async def test_store_is_a_row_store(store: RowStore) -> None:
    """Every store of the package satisfies the ``RowStore`` protocol."""
    assert isinstance(store, RowStore)


async def test_rows_lists_one_sessions_rows_oldest_first_with_ids(store: RowStore) -> None:
    """``rows`` returns only the session's rows, oldest first, with increasing ids."""
    await store.append("a", ['{"n":1}', '{"n":2}'])
    await store.append("b", ['{"n":9}'])
    await store.append("a", ['{"n":3}'])
    rows = await store.rows("a")
    assert [text for _, text in rows] == ['{"n":1}', '{"n":2}', '{"n":3}']
    ids = [row_id for row_id, _ in rows]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert await store.rows("missing") == []


async def test_rewrite_updates_and_deletes_by_id_keeping_order(store: RowStore) -> None:
    """``rewrite`` replaces texts in place, deletes rows mapped to None, and counts both."""
    await store.append("a", ['{"n":1}', '{"n":2}', '{"n":3}'])
    first, second, third = (row_id for row_id, _ in await store.rows("a"))
    changed = await store.rewrite("a", {first: '{"n":10}', second: None})
    assert changed == 2
    assert await store.rows("a") == [(first, '{"n":10}'), (third, '{"n":3}')]
    assert await store.read("a", None) == ['{"n":10}', '{"n":3}']


async def test_rewrite_passes_over_other_sessions_rows(store: RowStore) -> None:
    """``rewrite`` never touches a row of another session, even given its id."""
    await store.append("a", ['{"n":1}'])
    await store.append("b", ['{"n":2}'])
    ((other_id, _),) = await store.rows("b")
    assert await store.rewrite("a", {other_id: None, 10**9: '{"n":0}'}) == 0
    assert await store.read("b", None) == ['{"n":2}']

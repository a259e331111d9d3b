"""Fixtures shared by the advanced-session tests of this folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from tests.sql_servers import database_url, drop_tables, unique_tables


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def opener(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], Any]]:
    """Opens advanced sessions on one database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "turns.db"
        yield lambda sid: AdvancedSQLiteSession(session_id=sid, db_path=path)
        return
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url("postgres", tmp_path))
    sessions, messages = unique_tables()
    yield lambda sid: AdvancedSQLAlchemySession(
        sid, engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    )
    await drop_tables(engine, sessions, messages)
    await engine.dispose()

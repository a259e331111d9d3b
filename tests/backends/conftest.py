"""Fixtures the SQLAlchemy backend tests share: a database of the test's kind, fresh tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.sql_servers import database_url, drop_tables, unique_tables


@pytest.fixture
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the database kind named by the test's parameter."""
    return database_url(request.param, tmp_path)


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on that database, disposed afterwards."""
    made = create_async_engine(url)
    yield made
    await made.dispose()


@pytest.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[tuple[str, str]]:
    """Fresh table names, dropped afterwards."""
    names = unique_tables()
    yield names
    await drop_tables(engine, *names)

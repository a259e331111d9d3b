"""What only the SQLAlchemy memory backend does: URLs, engines it owns, and its table."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions.errors import InvalidIdentifierError, StorageUnavailableError
from agent_sessions.memory import MemoryStore


async def test_from_url_creates_the_table_and_disposes_on_close(tmp_path: Path) -> None:
    """Creates the table on first use, and a store reopened on the URL sees the memory."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'url.db'}"
    async with MemoryStore.from_url(url) as store:
        await store.put(("users", "ada"), "k", {"v": 1})
    async with MemoryStore.from_url(url, create_tables=False) as store:
        item = await store.get(("users", "ada"), "k")
    assert item is not None
    assert item.value == {"v": 1}


async def test_from_engine_leaves_the_engine_open(tmp_path: Path) -> None:
    """Never disposes of an engine it was given: the engine still works after aclose."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    async with MemoryStore.from_engine(engine) as store:
        await store.put(("u",), "k", {"v": 1})
    async with MemoryStore.from_engine(engine) as store:
        assert await store.get(("u",), "k") is not None
    await engine.dispose()


def test_unsafe_table_name_is_refused(tmp_path: Path) -> None:
    """Raises InvalidIdentifierError before any SQL runs."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(InvalidIdentifierError):
        MemoryStore.from_engine(engine, table="x y")


async def test_unreachable_server_is_storage_unavailable() -> None:
    """Raises StorageUnavailableError, with the driver error as its cause."""
    async with MemoryStore.from_url("postgresql+asyncpg://postgres@127.0.0.1:9/none") as store:
        with pytest.raises(StorageUnavailableError) as caught:
            await store.get(("u",), "k")
    assert caught.value.__cause__ is not None


def test_unclosed_url_store_warns(tmp_path: Path) -> None:
    """Emits a ResourceWarning when a store made by from_url is collected without aclose."""

    def leak() -> None:
        MemoryStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'leak.db'}")
        gc.collect()

    with pytest.warns(ResourceWarning, match="never closed"):
        leak()

"""What only the SQLite memory backend does: its file, its table, its vector cache."""

from __future__ import annotations

import gc
import logging
import sqlite3
from pathlib import Path

import pytest

from agent_sessions import SQLiteSession
from agent_sessions.errors import CorruptMemoryError, InvalidIdentifierError
from agent_sessions.memory import HashingEmbedder, IndexConfig, MemoryStore
from agent_sessions.memory.sqlite import CACHE_MIN_ROWS
from agent_sessions.testing import ManualClock


def index(dims: int = 32) -> IndexConfig:
    """A small hashing index on the ``text`` field."""
    return IndexConfig(dims=dims, embed=HashingEmbedder(dims), fields=["text"])


async def test_memories_share_a_file_with_sessions(tmp_path: Path) -> None:
    """Keeps memories in their own table of the sessions' file, both readable afterwards."""
    path = tmp_path / "app.db"
    async with SQLiteSession("chat-1", path) as session, MemoryStore(path) as store:
        await session.add_items([{"role": "user", "content": "hi"}])
        await store.put(("users", "ada"), "k", {"text": "likes trains"})
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    assert {"agent_messages", "agent_memories"} <= tables
    assert mode == "wal"
    async with SQLiteSession("chat-1", path) as session, MemoryStore(path) as store:
        assert len(await session.get_items()) == 1
        assert await store.get(("users", "ada"), "k") is not None


def test_unsafe_table_name_is_refused_before_any_file_is_made(tmp_path: Path) -> None:
    """Raises InvalidIdentifierError for a table name that is not a plain identifier."""
    with pytest.raises(InvalidIdentifierError):
        MemoryStore(tmp_path / "x.db", table="memories; DROP TABLE x")
    assert not (tmp_path / "x.db").exists()


async def plant_corrupt_row(path: Path) -> None:
    """Store one good memory, then overwrite its value with text that is not JSON."""
    async with MemoryStore(path) as store:
        await store.put(("u",), "bad", {"v": 1})
        await store.put(("u",), "good", {"v": 2})
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agent_memories SET value = '{not json' WHERE key = 'bad'")
    conn.close()


async def test_corrupt_value_is_skipped_with_a_warning_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Skips an undecodable value on reads, logs it, and leaves its row stored."""
    path = tmp_path / "corrupt.db"
    await plant_corrupt_row(path)
    async with MemoryStore(path) as store:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await store.get(("u",), "bad") is None
            assert [i.key for i in await store.search(("u",))] == ["good"]
    assert "undecodable memory" in caplog.text
    with sqlite3.connect(path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM agent_memories").fetchone()
    conn.close()
    assert count == 2


async def test_filtered_search_passes_over_a_corrupt_value(tmp_path: Path) -> None:
    """Answers a filtered search despite a row SQLite's JSON functions refuse to read."""
    path = tmp_path / "corrupt-filter.db"
    await plant_corrupt_row(path)
    async with MemoryStore(path) as store:
        found = await store.search(("u",), filter={"v": 2})
    assert [i.key for i in found] == ["good"]


async def test_strict_store_raises_on_a_corrupt_value(tmp_path: Path) -> None:
    """Raises CorruptMemoryError naming the memory when the store is strict."""
    path = tmp_path / "strict.db"
    await plant_corrupt_row(path)
    async with MemoryStore(path, strict=True) as store:
        with pytest.raises(CorruptMemoryError, match="'bad'"):
            await store.get(("u",), "bad")


async def fill(store: MemoryStore, count: int) -> None:
    """Store ``count`` memories across 10 namespaces."""
    for n in range(count):
        await store.put(("bulk", str(n % 10)), f"k{n}", {"text": f"note number {n} topic {n % 7}"})


async def test_large_scope_search_sees_another_connections_writes(tmp_path: Path) -> None:
    """Drops the cached vectors when another connection commits, so its writes are found."""
    path = tmp_path / "cache.db"
    async with MemoryStore(path, index=index()) as store, MemoryStore(path, index=index()) as other:
        await fill(store, CACHE_MIN_ROWS + 10)
        await store.search(("bulk",), query="note topic")  # builds the cache
        await other.put(("bulk", "x"), "new", {"text": "zebra crossing"})
        found = await store.search(("bulk",), query="zebra crossing", limit=1)
        assert [i.key for i in found] == ["new"]
        await other.delete(("bulk", "x"), "new")
        found = await store.search(("bulk",), query="zebra crossing", limit=1)
        assert [i.key for i in found] != ["new"]


async def test_large_scope_search_follows_own_writes_and_expiry(tmp_path: Path) -> None:
    """Patches the cached vectors on its own puts, deletes, expiry and TTL refreshes."""
    clock = ManualClock()
    async with MemoryStore(tmp_path / "own.db", index=index(), clock=clock) as store:
        await fill(store, CACHE_MIN_ROWS + 10)
        await store.search(("bulk",), query="note topic")
        await store.put(("bulk", "1"), "zebra", {"text": "zebra crossing"}, ttl=10)
        assert [i.key for i in await store.search(("bulk",), query="zebra", limit=1)] == ["zebra"]
        clock.advance(8)
        await store.get(("bulk", "1"), "zebra", refresh_ttl=True)
        clock.advance(8)
        assert [i.key for i in await store.search(("bulk",), query="zebra", limit=1)] == ["zebra"]
        clock.advance(11)
        assert [i.key for i in await store.search(("bulk",), query="zebra", limit=1)] != ["zebra"]
        await store.put(("bulk", "1"), "k1", {"text": "zebra stripes"})
        assert [i.key for i in await store.search(("bulk",), query="zebra", limit=1)] == ["k1"]
        await store.delete(("bulk", "1"), "k1")
        assert [i.key for i in await store.search(("bulk",), query="zebra", limit=1)] != ["k1"]


async def test_search_pages_past_the_first_results(tmp_path: Path) -> None:
    """Gives consecutive, non-overlapping pages of a semantic search."""
    async with MemoryStore(tmp_path / "pages.db", index=index()) as store:
        await fill(store, 30)
        everything = await store.search(("bulk",), query="note topic 3", limit=30)
        first = await store.search(("bulk",), query="note topic 3", limit=10)
        second = await store.search(("bulk",), query="note topic 3", limit=10, offset=10)
        assert [i.key for i in first + second] == [i.key for i in everything[:20]]


def test_unclosed_store_warns(tmp_path: Path) -> None:
    """Emits a ResourceWarning when a store is garbage-collected without being closed."""

    def leak() -> None:
        MemoryStore(tmp_path / "leak.db")
        gc.collect()

    with pytest.warns(ResourceWarning, match="never closed"):
        leak()

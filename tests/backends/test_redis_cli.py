"""``agent-sessions`` on a Redis URL: ls, show, export, import, migrate to and from SQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent_sessions import RedisSession, SQLiteSession
from agent_sessions.cli import main
from tests.redis_server import drop_prefix, redis_url, unique_prefix

pytestmark = pytest.mark.redis


def msg(text: str) -> Any:
    """A user message."""
    return {"role": "user", "content": text}


async def _fill(prefix: str, sessions: dict[str, list[Any]]) -> None:
    client = aioredis.from_url(redis_url())
    for sid, items in sessions.items():
        async with RedisSession(sid, redis_client=client, key_prefix=prefix) as session:
            await session.add_items(items)
    await client.aclose()


async def _items(prefix: str, sid: str) -> list[Any]:
    async with RedisSession.from_url(sid, url=redis_url(), key_prefix=prefix) as session:
        return await session.get_items()


async def _drop(prefix: str) -> None:
    client = aioredis.from_url(redis_url())
    await drop_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh prefix holding two sessions; dropped afterwards."""
    name = unique_prefix()
    asyncio.run(_fill(name, {"alice": [msg("hi"), msg("there")], "bob": [msg("yo")]}))
    yield name
    asyncio.run(_drop(name))


def url(prefix: str) -> str:
    """The test server's URL naming ``prefix``."""
    return f"{redis_url()}?key_prefix={prefix}"


def test_ls_lists_the_prefixes_sessions(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``ls`` on a Redis URL lists each session with its item count."""
    assert main(["ls", url(prefix), "--sort", "id", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["session_id"], s["items"]) for s in listed["sessions"]] == [("alice", 2), ("bob", 1)]
    assert listed["total"] == 2


def test_show_prints_the_conversation(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``show`` on a Redis URL prints each stored item."""
    assert main(["show", url(prefix), "alice"]) == 0
    out = capsys.readouterr().out
    assert "session 'alice': 2 items" in out
    assert "hi" in out
    assert "there" in out


def test_migrate_to_sqlite_and_back(prefix: str, tmp_path: Path) -> None:
    """``migrate`` copies every session from Redis to a SQLite file, and from it to Redis."""
    path = tmp_path / "copy.db"
    assert main(["migrate", url(prefix), str(path)]) == 0

    async def read_back() -> list[Any]:
        async with SQLiteSession("alice", path) as session:
            return await session.get_items()

    assert asyncio.run(read_back()) == [msg("hi"), msg("there")]
    other = unique_prefix()
    try:
        assert main(["migrate", str(path), url(other)]) == 0
        assert asyncio.run(_items(other, "bob")) == [msg("yo")]
    finally:
        asyncio.run(_drop(other))


def test_export_then_import(prefix: str, tmp_path: Path) -> None:
    """``export -o`` then ``import`` into another prefix gives the same sessions."""
    out = tmp_path / "dump.jsonl"
    assert main(["export", url(prefix), "-o", str(out)]) == 0
    other = unique_prefix()
    try:
        assert main(["import", url(other), str(out)]) == 0
        assert asyncio.run(_items(other, "alice")) == [msg("hi"), msg("there")]
        assert main(["import", url(other), str(out)]) == 1  # exists: refused
        assert main(["import", url(other), str(out), "--skip-existing"]) == 0
    finally:
        asyncio.run(_drop(other))


def test_other_commands_say_they_do_not_work_on_redis(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stats`` on a Redis URL fails with one line naming Redis."""
    assert main(["stats", url(prefix)]) == 1
    assert "does not work on Redis" in capsys.readouterr().err

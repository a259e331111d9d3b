"""``agent-sessions ls --where KEY=VALUE`` and the metadata in ``ls --json`` and ``show``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agent_sessions import RedisSession, SQLiteSession, as_run
from agent_sessions.cli import main
from tests.redis_server import REDIS_URL, drop_prefix, redis_url, unique_prefix


@pytest.fixture
async def db(tmp_path: Path) -> str:
    """A SQLite file with three sessions, two with metadata."""
    path = tmp_path / "ls.db"
    for sid, fields in (("a", {"plan": "pro", "n": 1}), ("b", {"plan": "free"}), ("c", {})):
        session = SQLiteSession(sid, path)
        await session.add_items([{"role": "user", "content": "hi"}])
        if fields:
            await session.update_metadata(**fields)
        session.close()
    return str(path)


def _ls_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["ls", *args, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_where_filters_and_json_shows_metadata(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--where keeps matching sessions (value as JSON, else text) and --json carries metadata."""
    document = _ls_json(capsys, db, "--where", "plan=pro")
    assert document["total"] == 1
    (entry,) = document["sessions"]  # type: ignore[misc]
    assert entry["session_id"] == "a"
    assert entry["metadata"] == {"plan": "pro", "n": 1}
    assert _ls_json(capsys, db, "--where", "n=1", "--where", "plan=free")["total"] == 0
    assert _ls_json(capsys, db, "--where", 'n="1"')["total"] == 0  # the string "1" is not 1


def test_show_prints_metadata(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The show command prints a session's metadata line."""
    assert main(["show", db, "b"]) == 0
    assert 'metadata: {"plan":"free"}' in capsys.readouterr().out


def test_bad_where_is_a_usage_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --where without KEY=VALUE is refused by the parser with a clear message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["ls", db, "--where", "plan"])
    assert exit_info.value.code == 2
    assert "use KEY=VALUE" in capsys.readouterr().err


async def _redis_sessions(prefix: str) -> None:
    """Sessions a (pro, triage), b (free, triage) and c (pro, no agent) under ``prefix``."""
    client = aioredis.from_url(redis_url())
    try:
        sessions = (("a", "pro", "triage"), ("b", "free", "triage"), ("c", "pro", None))
        for sid, plan, agent in sessions:
            session = RedisSession(sid, redis_client=client, key_prefix=prefix)
            if agent is None:
                await session.add_items([{"role": "user", "content": "hi"}])
            else:
                with as_run(f"run-{sid}", agent_name=agent):
                    await session.add_items([{"role": "user", "content": "hi"}])
            await session.update_metadata(plan=plan)
    finally:
        await client.aclose()


async def _drop(prefix: str) -> None:
    client = aioredis.from_url(redis_url())
    await drop_prefix(client, prefix)
    await client.aclose()


def test_where_and_agent_on_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """On a Redis URL --where and --agent filter the listing, alone and together."""
    prefix = unique_prefix()
    asyncio.run(_redis_sessions(prefix))
    url = f"{REDIS_URL}?key_prefix={prefix}"

    def listed(*args: str) -> list[str]:
        assert main(["ls", url, *args, "--json", "--sort", "id"]) == 0
        document = json.loads(capsys.readouterr().out)
        return [entry["session_id"] for entry in document["sessions"]]

    try:
        assert listed("--where", "plan=pro") == ["a", "c"]
        assert listed("--agent", "triage") == ["a", "b"]
        assert listed("--agent", "triage", "--where", "plan=pro") == ["a"]
        assert listed("--agent", "nobody") == []
    finally:
        asyncio.run(_drop(prefix))

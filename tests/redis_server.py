"""The Redis server the Redis backend is tested on, and a conformance harness over it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from agent_sessions import RedisSession
from agent_sessions.testing import Harness
from tests.conftest import require_server

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def redis_url() -> str:
    """The test server's URL, skipping (or failing, when servers are required) if it is down."""
    require_server("Redis", REDIS_HOST, REDIS_PORT)
    return REDIS_URL


def unique_prefix() -> str:
    """A fresh key prefix, so tests sharing one server never see each other's keys."""
    return f"test:{uuid.uuid4().hex[:12]}"


async def drop_prefix(client: aioredis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix``."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)


def redis_harness(
    tmp_path: Path,
    session_class: Callable[..., Any] = RedisSession,
    name: str = "redis",
    **client_kwargs: Any,
) -> Harness:
    """Sessions of ``session_class`` over one client and a fresh prefix; cleanup drops the keys."""
    del tmp_path
    client = aioredis.from_url(redis_url(), **client_kwargs)
    prefix = unique_prefix()

    async def write_raw(session_id: str, text: str) -> None:
        await client.rpush(f"{prefix}:{session_id}:messages", text)

    async def count_rows(session_id: str) -> int:
        return int(await client.llen(f"{prefix}:{session_id}:messages"))

    async def cleanup() -> None:
        await drop_prefix(client, prefix)
        await client.aclose()

    return Harness(
        name=name,
        open=lambda sid: session_class(sid, redis_client=client, key_prefix=prefix),
        write_raw=write_raw,
        count_rows=count_rows,
        cleanup=[cleanup],
    )

"""The Redis suite: our ``RedisSession`` vs the SDK's, with the raw client as the floor.

Every run is one contender on one workload under a fresh key prefix (deleted afterwards), on
its own client (``redis.asyncio.from_url``, bytes replies) shared by the run's sessions.
Contenders:

- ``ours``: ``agent_sessions.RedisSession(id, redis_client=client, key_prefix=prefix)``.
- ``sdk``: ``agents.extensions.memory.RedisSession`` with the same arguments.
- ``raw``: the same client running our store's commands with no session layer (``raw_redis.py``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import platform
import uuid
from importlib.metadata import version
from typing import Any

import redis.asyncio as aioredis
from agents.extensions.memory import RedisSession as SdkRedisSession
from raw_redis import RawRedisSession
from workloads import WORKLOADS, Result, history

import agent_sessions
from agent_sessions import RedisSession

__all__ = ["COLUMNS", "CONTENDERS", "RATIOS", "header", "run_workload"]

CONTENDERS = ("ours", "sdk", "raw")
COLUMNS = {"ours": "ours", "sdk": "SDK", "raw": "raw redis client"}
RATIOS = [("ours/SDK", "ours", "sdk"), ("ours/raw", "ours", "raw")]


class Run:
    """One contender's sessions on one client and a fresh prefix."""

    def __init__(self, contender: str, url: str) -> None:
        self.contender = contender
        self.client = aioredis.from_url(url)
        self.prefix = f"bench:{uuid.uuid4().hex[:10]}"
        self.opened: list[Any] = []

    def make(self, session_id: str, db_path: str) -> Any:
        """The workloads' factory; ``db_path`` is unused."""
        del db_path
        where = {"redis_client": self.client, "key_prefix": self.prefix}
        if self.contender == "ours":
            session: Any = RedisSession(session_id, **where)
        elif self.contender == "sdk":
            session = SdkRedisSession(session_id, **where)
        else:
            session = RawRedisSession(session_id, self.client, self.prefix)
        self.opened.append(session)
        return session

    async def fill(self, db_path: str, session_id: str, first: int, count: int) -> None:
        """Append ``count`` values in bulk (growth setup, not timed)."""
        del db_path
        key = f"{self.prefix}:{session_id}:messages"
        values = [json.dumps(item, separators=(",", ":")) for item in history(count, first // 4)]
        for start in range(0, len(values), 5_000):
            await self.client.rpush(key, *values[start : start + 5_000])

    async def close(self) -> None:
        for session in self.opened:
            if isinstance(session, RedisSession | SdkRedisSession):
                await session.close()
        keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()


async def _run_once(workload: str, contender: str, url: str, params: dict[str, Any]) -> Result:
    run = Run(contender, url)
    try:
        await RawRedisSession.load(run.client)
        extra = {"fill": run.fill} if workload == "growth" else {}
        return await WORKLOADS[workload](run.make, "", **params, **extra)
    finally:
        await run.close()


def run_workload(
    workload: str, repeat: int, params: dict[str, Any], url: str
) -> tuple[dict[str, list[Result]], dict[str, list[str]]]:
    """All repeats of one workload, interleaved across contenders; failed runs are recorded."""
    runs: dict[str, list[Result]] = {name: [] for name in CONTENDERS}
    errors: dict[str, list[str]] = {name: [] for name in CONTENDERS}
    for _ in range(repeat):
        for name in CONTENDERS:
            gc.collect()
            try:
                runs[name].append(asyncio.run(_run_once(workload, name, url, params)))
            except Exception as exc:  # noqa: BLE001 - reported in the output, the suite goes on
                errors[name].append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return runs, errors


async def _server(url: str) -> str:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        return str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()


def header(url: str, repeat: int, quick: bool) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        server = asyncio.run(_server(url))
    except (OSError, aioredis.RedisError) as exc:
        raise ValueError(f"cannot use {url}: {exc}") from exc
    return {
        "backend": "redis",
        "url": url,
        "server": server,
        "python": platform.python_version(),
        "redis-py": version("redis"),
        "agent_sessions": agent_sessions.__version__,
        "openai_agents": version("openai-agents"),
        "platform": platform.platform(),
        "repeat": repeat,
        "quick": quick,
    }

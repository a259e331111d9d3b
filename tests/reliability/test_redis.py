"""RedisSession under stress: processes sharing a session, and connections killed mid-use.

``CLIENT KILL`` is aimed only at this test's own connections (found by their client name), so
other users of the server are left alone.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent_sessions import RedisSession, StorageUnavailableError
from tests.redis_server import drop_prefix, redis_url, unique_prefix
from tests.reliability.redis_children import redis_writer

pytestmark = [pytest.mark.reliability, pytest.mark.redis]

WRITERS = 6
BATCHES = 50


@pytest.fixture
async def admin() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A client of our own for raw reads and kills, and a fresh prefix dropped afterwards."""
    client = aioredis.from_url(redis_url(), decode_responses=True)
    prefix = unique_prefix()
    yield client, prefix
    await drop_prefix(client, prefix)
    await client.aclose()


async def _contents(client: aioredis.Redis, prefix: str, session_id: str) -> list[str]:
    values = await client.lrange(f"{prefix}:{session_id}:messages", 0, -1)
    return [json.loads(value)["content"] for value in values]


@pytest.mark.slow
async def test_processes_sharing_a_session_lose_nothing(
    forkserver: ForkServerContext, tmp_path: Path, admin: tuple[aioredis.Redis, str]
) -> None:
    """Six processes adding and popping one session: each item stored or popped, exactly once."""
    client, prefix = admin
    start = forkserver.Event()
    reports = [tmp_path / f"w{w}.json" for w in range(WRITERS)]
    procs = [
        forkserver.Process(
            target=redis_writer,
            args=(redis_url(), prefix, w),
            kwargs={"batches": BATCHES, "report": str(reports[w]), "start": start},
        )
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    popped = [x for report in reports for x in json.loads(report.read_text())]
    stored = await _contents(client, prefix, "shared")
    written = [f"{w}-{b}-{k}" for w in range(WRITERS) for b in range(BATCHES) for k in range(3)]
    assert len(popped) == len(set(popped)), "an item was popped twice"
    assert sorted(popped + stored) == sorted(written)
    for w in range(WRITERS):
        mine = [tuple(map(int, x.split("-")[1:])) for x in stored if x.startswith(f"{w}-")]
        assert mine == sorted(mine), f"writer {w}'s items are out of order"


async def _kill_ours(client: aioredis.Redis, name: str, stop: asyncio.Event) -> int:
    """Kill every connection named ``name`` again and again until ``stop``; return the count."""
    killed = 0
    while not stop.is_set():
        for entry in await client.client_list():
            if entry.get("name") == name:
                killed += await client.execute_command("CLIENT KILL ID", entry["id"]) or 0
        await asyncio.sleep(0.002)
    return killed


async def test_killed_connections_lose_nothing_acknowledged(
    admin: tuple[aioredis.Redis, str],
) -> None:
    """Killed connections: every acknowledged batch stays stored whole; the session recovers."""
    client, prefix = admin
    name = f"as-kill-{uuid.uuid4().hex[:8]}"
    session = RedisSession.from_url(
        "kill", url=redis_url(), key_prefix=prefix, redis_kwargs={"client_name": name}
    )
    acknowledged: list[str] = []
    failures: dict[str, int] = defaultdict(int)

    async def write(w: int) -> None:
        for b in range(80):
            tag = f"{w}-{b}"
            try:
                await session.add_items(
                    [{"role": "user", "content": f"{tag}-{k}"} for k in range(3)]
                )
            except StorageUnavailableError:
                failures["write"] += 1
            else:
                acknowledged.append(tag)
            try:
                await session.get_items(5)
            except StorageUnavailableError:
                failures["read"] += 1

    stop = asyncio.Event()
    killer = asyncio.create_task(_kill_ours(client, name, stop))
    await asyncio.gather(*(write(w) for w in range(4)))
    stop.set()
    killed = await killer
    assert killed > 0, "no connection was killed: the test proved nothing"
    stored = await _contents(client, prefix, "kill")
    tags = [x.rsplit("-", 1)[0] for x in stored]
    runs = [tags[i : i + 3] for i in range(0, len(tags), 3)]
    assert all(len(set(run)) == 1 and len(run) == 3 for run in runs), "a batch was split"
    batches = [run[0] for run in runs]
    assert len(batches) == len(set(batches)), "a batch was stored twice"
    assert set(acknowledged) <= set(batches), "an acknowledged batch is missing"
    await session.add_items([{"role": "user", "content": "after"}])
    assert (await session.get_items(1))[0]["content"] == "after"
    assert await session.pop_item() == {"role": "user", "content": "after"}
    await session.aclose()
    print_summary(killed, failures, len(acknowledged))


def print_summary(killed: int, failures: dict[str, Any], acknowledged: int) -> None:
    """Leave the figures in the test's captured output."""
    summary = {"killed": killed, "acknowledged": acknowledged, **failures}
    print(json.dumps(summary))  # noqa: T201

"""Provenance and idempotent tagged writes on the Redis store (issue 19)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from agents.extensions.memory import RedisSession as SDKRedisSession

from agent_sessions import RedisStore
from agent_sessions.errors import ProvenanceConflictError
from agent_sessions.store import RowTag
from tests.redis_server import drop_prefix, redis_url, unique_prefix

pytestmark = pytest.mark.redis


def item(text: str) -> str:
    """A user message as stored text."""
    return json.dumps({"role": "user", "content": text})


def tags(run: str, texts: list[str], first: int = 0) -> list[RowTag]:
    """One tag per text, positions from ``first``, digest = the text."""
    return [RowTag("bot", run, first + i, f"d:{t}") for i, t in enumerate(texts)]


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    """A client on the test server."""
    made = aioredis.from_url(redis_url())
    yield made
    await made.aclose()


@pytest.fixture
async def store(client: aioredis.Redis) -> AsyncIterator[RedisStore]:
    """A store under a fresh prefix, whose keys are dropped afterwards."""
    prefix = unique_prefix()
    made = RedisStore(client, key_prefix=prefix)
    yield made
    await drop_prefix(client, prefix)


async def test_tagged_append_records_and_repeat(store: RedisStore) -> None:
    """Tagged rows read back with their tags; a repeat stores nothing; untagged rows are None."""
    await store.append("s", [item("plain")])
    texts = [item("a"), item("b")]
    assert await store.append_tagged("s", texts, tags("r1", texts)) == 2
    assert await store.append_tagged("s", texts, tags("r1", texts)) == 0
    assert await store.read("s", None) == [item("plain"), *texts]
    records = await store.records("s", None)
    assert [r.run_id for r in records] == [None, "r1", "r1"]
    assert [r.position for r in records] == [None, 0, 1]
    assert records[1].agent_name == "bot"
    assert records[0].created_at is None
    assert records[1].created_at is not None
    assert "." in records[1].created_at
    assert [r.text for r in await store.records("s", 1)] == [item("b")]
    assert await store.records("s", 0) == []


async def test_conflict_writes_nothing(store: RedisStore) -> None:
    """A stored (run, position) with another digest raises and the batch is not stored."""
    await store.append_tagged("s", [item("a")], tags("r1", [item("a")]))
    batch = [item("new"), item("x")]
    bad = [RowTag("bot", "r1", 5, "d5"), RowTag("bot", "r1", 0, "other")]
    with pytest.raises(ProvenanceConflictError) as caught:
        await store.append_tagged("s", batch, bad)
    assert caught.value.position == 0
    assert await store.read("s", None) == [item("a")]


async def test_concurrent_same_tags_store_one_copy(client: aioredis.Redis) -> None:
    """Two clients appending the same tagged batch at once store it once."""
    prefix = unique_prefix()
    other = aioredis.from_url(redis_url())
    try:
        one, two = RedisStore(client, key_prefix=prefix), RedisStore(other, key_prefix=prefix)
        texts = [item(str(i)) for i in range(20)]
        counts = await asyncio.gather(
            one.append_tagged("s", texts, tags("r", texts)),
            two.append_tagged("s", texts, tags("r", texts)),
        )
        assert sorted(counts) == [0, 20]
        assert await one.read("s", None) == texts
    finally:
        await drop_prefix(client, prefix)
        await other.aclose()


async def test_pop_restore_clear_keep_provenance(store: RedisStore) -> None:
    """A popped row is gone (a retry stores it again), a restored one keeps its tag."""
    texts = [item("a"), item("b")]
    await store.append_tagged("s", texts, tags("r", texts))
    popped = await store.pop("s", lambda text: text)
    assert popped is not None
    assert [r.run_id for r in await store.records("s", None)] == ["r"]
    await store.restore("s", [popped])
    assert [(r.run_id, r.position) for r in await store.records("s", None)] == [("r", 0), ("r", 1)]
    await store.pop("s", lambda text: text)
    assert await store.append_tagged("s", texts, tags("r", texts)) == 1
    await store.clear("s")
    assert await store.records("s", None) == []
    assert await store.append_tagged("s", texts, tags("r", texts)) == 2


async def test_sdk_reads_tagged_and_sdk_rows_are_untagged(
    client: aioredis.Redis, store: RedisStore
) -> None:
    """The SDK's RedisSession reads tagged rows; rows it writes have no provenance."""
    texts = [item("a")]
    await store.append_tagged("s", texts, tags("r", texts))
    sdk = SDKRedisSession("s", redis_client=client, key_prefix=store.key_prefix)
    assert await sdk.get_items() == [{"role": "user", "content": "a"}]
    await sdk.add_items([{"role": "user", "content": "from sdk"}])
    records = await store.records("s", None)
    assert [r.run_id for r in records] == ["r", None]


async def test_ttl_expires_provenance_keys(client: aioredis.Redis) -> None:
    """With a TTL, the provenance keys expire with the session."""
    prefix = unique_prefix()
    try:
        store = RedisStore(client, key_prefix=prefix, ttl=60)
        await store.append_tagged("s", [item("a")], tags("r", [item("a")]))
        keys = store.keys("s")
        assert 0 < await client.pttl(keys.provenance) <= 60_000
        assert 0 < await client.pttl(keys.runs) <= 60_000
    finally:
        await drop_prefix(client, prefix)


async def test_a_rewritten_row_keeps_its_provenance_and_its_run_still_dedups(
    store: RedisStore,
) -> None:
    """Rewriting a tagged row (re-encryption) moves its tag to the new bytes, and the run's key."""
    texts = [item("a"), item("b")]
    await store.append_tagged("s", texts, tags("r1", texts))
    rows = await store.rows("s")
    assert await store.rewrite("s", {rows[0][0]: item("a, sealed anew")}) == 1
    records = await store.records("s", None)
    assert [r.text for r in records] == [item("a, sealed anew"), item("b")]
    assert [(r.agent_name, r.run_id, r.position) for r in records] == [
        ("bot", "r1", 0),
        ("bot", "r1", 1),
    ]
    assert await store.append_tagged("s", texts, tags("r1", texts)) == 0  # the retry: stored
    assert len(await store.records("s", None)) == 2

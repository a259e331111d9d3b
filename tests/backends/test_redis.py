"""What only the Redis backend has: the SDK's key layout both ways, TTLs, clients, row ids."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest.mock import ANY

import pytest
import redis.asyncio as aioredis
from agents.extensions.memory import RedisSession as SDKRedisSession
from agents.memory import Session

from agent_sessions import (
    CorruptItemError,
    RedisSession,
    RedisStore,
    SessionClosedError,
    StorageError,
)
from agent_sessions.backends.redis.store import row_position
from tests.redis_server import drop_prefix, redis_url, unique_prefix

pytestmark = pytest.mark.redis

TURN: list[Any] = [
    {"role": "user", "content": "What's the weather in Paris? ünïcødé 🙂"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "id": "fc_1",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
    },
]


def msg(text: str) -> Any:
    """A user message."""
    return {"role": "user", "content": text}


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    """A client on the test server (bytes replies), closed afterwards."""
    made = aioredis.from_url(redis_url())
    yield made
    await made.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    """A fresh key prefix; its keys are deleted afterwards."""
    name = unique_prefix()
    yield name
    await drop_prefix(client, name)


async def test_reads_what_the_sdk_wrote_and_the_sdk_reads_ours(
    client: aioredis.Redis, prefix: str
) -> None:
    """Items written by the SDK's RedisSession read back intact, and the SDK reads ours."""
    sdk = SDKRedisSession("chat", redis_client=client, key_prefix=prefix)
    await sdk.add_items(TURN)
    ours = RedisSession("chat", redis_client=client, key_prefix=prefix)
    assert isinstance(ours, Session)
    assert await ours.get_items() == TURN
    await ours.add_items([msg("and tomorrow?")])
    assert await sdk.get_items(2) == [TURN[-1], msg("and tomorrow?")]
    assert await sdk.pop_item() == msg("and tomorrow?")
    assert await ours.pop_item() == TURN[-1]
    await ours.clear_session()
    assert await sdk.get_items() == []
    await ours.aclose()


async def test_keys_and_values_are_the_sdks(client: aioredis.Redis, prefix: str) -> None:
    """Our writes leave the SDK's three keys, its hash fields and its exact value bytes."""
    async with RedisSession("layout", redis_client=client, key_prefix=prefix) as ours:
        await ours.add_items(TURN)
    sdk = SDKRedisSession("layout-sdk", redis_client=client, key_prefix=prefix)
    await sdk.add_items(TURN)
    ours_values = await client.lrange(f"{prefix}:layout:messages", 0, -1)
    sdk_values = await client.lrange(f"{prefix}:layout-sdk:messages", 0, -1)
    assert ours_values == sdk_values
    assert ours_values[0] == json.dumps(TURN[0], separators=(",", ":")).encode()
    record = await client.hgetall(f"{prefix}:layout")
    assert sorted(record) == [b"created_at", b"session_id", b"updated_at"]
    assert record[b"session_id"] == b"layout"
    assert int(record[b"created_at"]) <= int(record[b"updated_at"])
    assert await client.type(f"{prefix}:layout") == b"hash"


async def test_ttl_expires_every_key_like_the_sdk(client: aioredis.Redis, prefix: str) -> None:
    """With a ttl, an append sets the same expiry on the hash and the list as the SDK's."""
    ours = RedisSession("ttl", redis_client=client, key_prefix=prefix, ttl=120)
    await ours.add_items([msg("a")])
    for key in (f"{prefix}:ttl", f"{prefix}:ttl:messages"):
        assert 115_000 < await client.pttl(key) <= 120_000
    sdk = SDKRedisSession("ttl", redis_client=client, key_prefix=prefix, ttl=500)
    await sdk.add_items([msg("b")])
    assert await client.pttl(f"{prefix}:ttl:messages") > 400_000
    await ours.add_items([msg("c")])
    assert await client.pttl(f"{prefix}:ttl:messages") <= 120_000
    await ours.aclose()


async def test_a_pop_keeps_the_lists_expiry(client: aioredis.Redis, prefix: str) -> None:
    """A pop that rewrites the list's tail leaves its expiry as it was."""
    ours = RedisSession("ttl-pop", redis_client=client, key_prefix=prefix, ttl=300)
    await ours.add_items([msg("a"), msg("b")])
    await client.rpush(f"{prefix}:ttl-pop:messages", b"{corrupt")
    with _quiet():
        assert await ours.pop_item() == msg("b")
        assert await ours.pop_item() == msg("a")
    assert 290_000 < await client.pttl(f"{prefix}:ttl-pop:messages") <= 300_000
    await ours.aclose()


@pytest.mark.parametrize("ttl", [0, -5, 2**43])
def test_out_of_range_ttl_is_refused(client: aioredis.Redis, ttl: int) -> None:
    """A ttl that is not a positive number of seconds Redis can expire at is a ValueError."""
    with pytest.raises(ValueError, match="ttl"):
        RedisSession("bad-ttl", redis_client=client, ttl=ttl)


@pytest.mark.parametrize("ttl", ["60", 1.5, True])
def test_non_int_ttl_is_refused(client: aioredis.Redis, ttl: object) -> None:
    """A ttl that is not an int is a TypeError, raised by the constructor."""
    with pytest.raises(TypeError, match="ttl"):
        RedisSession("bad-ttl", redis_client=client, ttl=ttl)  # type: ignore[arg-type]


def test_a_cluster_client_is_refused() -> None:
    """A RedisCluster client is refused at once: the scripts need one server."""
    from redis.asyncio.cluster import RedisCluster

    cluster = RedisCluster(host="127.0.0.1", port=6379)
    with pytest.raises(TypeError, match="standalone"):
        RedisSession("c", redis_client=cluster)


async def test_from_url_owns_and_closes_its_client(prefix: str) -> None:
    """A session from from_url answers ping, and closing it closes its client for good."""
    session = RedisSession.from_url("owned", url=redis_url(), key_prefix=prefix)
    assert session.key_prefix == prefix
    assert await session.ping() is True
    await session.add_items([msg("a")])
    await session.close()
    with pytest.raises(SessionClosedError, match="ping"):
        await session.ping()
    with pytest.raises(SessionClosedError, match="get_items"):
        await session.get_items()


async def test_an_injected_client_stays_open(client: aioredis.Redis, prefix: str) -> None:
    """Closing a session leaves the client it was given open for the application."""
    session = RedisSession("injected", redis_client=client, key_prefix=prefix)
    await session.close()
    assert await client.ping() is True


async def test_ping_is_false_when_the_server_is_unreachable() -> None:
    """ping() answers False, rather than raising, when nothing listens at the URL."""
    session = RedisSession.from_url(
        "nowhere", url="redis://127.0.0.1:1/0", redis_kwargs={"socket_connect_timeout": 1}
    )
    assert await session.ping() is False
    await session.aclose()


async def test_a_key_of_another_type_refuses_the_write(client: aioredis.Redis, prefix: str) -> None:
    """A messages key holding a string fails add_items with StorageError and writes nothing."""
    await client.set(f"{prefix}:clash:messages", "not a list")
    session = RedisSession("clash", redis_client=client, key_prefix=prefix)
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await session.add_items([msg("a")])
    assert await client.exists(f"{prefix}:clash") == 0
    await session.aclose()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the expected warnings about undecodable values."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


async def test_invalid_utf8_is_skipped_and_kept(client: aioredis.Redis, prefix: str) -> None:
    """A value that is not UTF-8 is never returned, survives pops, and raises when strict."""
    session = RedisSession("bytes", redis_client=client, key_prefix=prefix)
    await session.add_items([msg("a")])
    await client.rpush(f"{prefix}:bytes:messages", b'{"role":"user","content":"\xff"}')
    with _quiet():
        assert await session.get_items() == [msg("a")]
        assert await session.pop_item() == msg("a")
        assert await session.pop_item() is None
    assert await client.llen(f"{prefix}:bytes:messages") == 1
    strict = RedisSession("bytes", redis_client=client, key_prefix=prefix, strict=True)
    with pytest.raises(CorruptItemError):
        await strict.get_items()
    await session.aclose()
    await strict.aclose()


async def test_a_large_batch_is_stored_whole(client: aioredis.Redis, prefix: str) -> None:
    """A batch of 5,000 items (pushed in chunks inside one script) is stored in order."""
    session = RedisSession("big", redis_client=client, key_prefix=prefix)
    batch = [msg(f"m{i}") for i in range(5000)]
    await session.add_items(batch)
    assert await session.get_items() == batch
    assert await session.get_items(3) == batch[-3:]
    await session.aclose()


async def test_pops_on_separate_connections_never_share_an_item(prefix: str) -> None:
    """Four clients popping one session at once each get distinct items, and all of them."""
    clients = [aioredis.from_url(redis_url()) for _ in range(4)]
    sessions = [RedisSession("race", redis_client=c, key_prefix=prefix) for c in clients]
    await sessions[0].add_items([msg(f"m{i}") for i in range(200)])

    async def drain(session: RedisSession) -> list[Any]:
        taken = []
        while (item := await session.pop_item()) is not None:
            taken.append(item["content"])
        return taken

    results = await asyncio.gather(*(drain(s) for s in sessions))
    popped = [x for r in results for x in r]
    assert sorted(popped) == sorted(f"m{i}" for i in range(200))
    assert all(results)  # every client got some: they really raced
    for session, made in zip(sessions, clients, strict=True):
        await session.aclose()
        await made.aclose()


async def test_rewrite_passes_over_rows_that_moved(client: aioredis.Redis, prefix: str) -> None:
    """A rewrite naming rows that changed since they were read leaves them alone."""
    store = RedisStore(client, key_prefix=prefix)
    await store.append("rw", ["a", "b", "c"])
    rows = await store.rows("rw")
    assert [row_position(row) for row, _ in rows] == [1, 2, 3]
    assert await store.rewrite("rw", {rows[1][0]: '"B"'}) == 1
    assert await store.read("rw", None) == ["a", '"B"', "c"]
    assert await store.rewrite("rw", {rows[1][0]: None}) == 0  # row 2 is no longer "b"
    await store.clear("rw")
    await store.append("rw", ["x", "y", "z"])
    assert await store.rewrite("rw", {row: None for row, _ in rows}) == 0
    assert await store.read("rw", None) == ["x", "y", "z"]
    await store.aclose()


async def test_replace_tail_refuses_a_tail_that_grew(client: aioredis.Redis, prefix: str) -> None:
    """A swap of the newest rows fails if a row was appended after they were read."""
    store = RedisStore(client, key_prefix=prefix)
    await store.append("tail", ["a", "b"])
    rows, complete = await store.tail("tail", 10)
    assert complete
    await store.append("tail", ["b"])
    assert await store.replace_tail("tail", rows, ["s"]) is False
    rows, _ = await store.tail("tail", 10)
    assert await store.replace_tail("tail", rows[1:], ["s"]) is True
    assert await store.read("tail", None) == ["a", "s"]
    await store.aclose()


async def test_restore_never_revives_a_cleared_session(client: aioredis.Redis, prefix: str) -> None:
    """Rows popped before another client cleared the session are not put back into it."""
    store = RedisStore(client, key_prefix=prefix)
    other = RedisStore(client, key_prefix=prefix)
    await store.append("gone", ['{"a":1}', '{"a":2}'])
    popped = await store.pop("gone", json.loads)
    assert popped is not None
    await other.clear("gone")
    await store.restore("gone", [popped])
    assert await store.read("gone", None) == []
    await store.append("kept", ['{"a":1}', '{"a":2}'])
    popped = await store.pop("kept", json.loads)
    assert popped is not None
    await store.append("kept", ['{"a":3}'])
    await store.restore("kept", [popped])
    assert await store.read("kept", None) == ['{"a":1}', '{"a":2}', '{"a":3}']
    await store.aclose()
    await other.aclose()


async def test_a_decode_responses_client_reads_bytes_the_same(prefix: str) -> None:
    """A client built with decode_responses=True reads and pops exactly the same items."""
    made = aioredis.from_url(redis_url(), decode_responses=True)
    session = RedisSession("decoded", redis_client=made, key_prefix=prefix)
    await session.add_items(TURN)
    assert await session.get_items() == TURN
    assert await session.pop_item() == TURN[-1]
    await session.aclose()
    await made.aclose()


async def test_a_pop_after_another_clients_append_pops_the_newest(prefix: str) -> None:
    """A pop never takes the row its store saw last if another client appended after it."""
    first, second = aioredis.from_url(redis_url()), aioredis.from_url(redis_url())
    ours = RedisSession("stale", redis_client=first, key_prefix=prefix)
    other = RedisSession("stale", redis_client=second, key_prefix=prefix)
    await ours.add_items([msg("a"), msg("b")])
    await other.add_items([msg("c")])
    assert await ours.pop_item() == msg("c")
    assert await other.pop_item() == msg("b")
    await other.add_items([msg("d")])
    assert await ours.pop_item() == msg("d")
    assert await ours.pop_item() == msg("a")
    assert await ours.pop_item() is None
    for session, made in ((ours, first), (other, second)):
        await session.aclose()
        await made.aclose()


async def test_state_updates_on_separate_connections_are_never_lost(prefix: str) -> None:
    """Forty increments of one state value from four clients at once all count."""
    clients = [aioredis.from_url(redis_url()) for _ in range(4)]
    sessions = [RedisSession("st", redis_client=c, key_prefix=prefix) for c in clients]

    async def bump(session: RedisSession) -> None:
        for _ in range(10):
            await session._update_state("n", lambda v: (v or 0) + 1)  # type: ignore[operator]  # noqa: SLF001

    await asyncio.gather(*(bump(s) for s in sessions))
    assert await sessions[0]._read_state("n") == 40  # noqa: SLF001
    for session, made in zip(sessions, clients, strict=True):
        await session.aclose()
        await made.aclose()


async def test_state_lives_and_dies_with_the_history(client: aioredis.Redis, prefix: str) -> None:
    """State sits in its own hash, expires with the session's keys, and goes with a clear."""
    session = RedisSession("st2", redis_client=client, key_prefix=prefix, ttl=200)
    await session.add_items([msg("a")])
    await session._write_state("draft", {"text": "half"})  # noqa: SLF001
    assert await client.hget(f"{prefix}:st2\x00state", "draft") == b'{"text":"half"}'
    assert 190_000 < await client.pttl(f"{prefix}:st2\x00state") <= 200_000
    sdk = SDKRedisSession("st2", redis_client=client, key_prefix=prefix)
    assert await sdk.get_items() == [msg("a")]
    await session.clear_session()
    assert await client.exists(f"{prefix}:st2\x00state") == 0
    assert await session._read_state("draft") is None  # noqa: SLF001
    await session.aclose()


NEW_KEY = "kU9Zq3m1X0dT2eWbP7vR8sYcA5gH4jL6nO1pQ2rS3tU="
OLD_KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="


async def test_encrypted_session_reencrypts_and_purges_on_redis(
    client: aioredis.Redis, prefix: str
) -> None:
    """EncryptedSession over RedisSession re-encrypts under a new key and purges expired rows."""
    from agent_sessions import EncryptedSession

    inner = RedisSession("sealed", redis_client=client, key_prefix=prefix)
    async with EncryptedSession("sealed", inner, OLD_KEY) as old:
        await old.add_items([msg("a"), msg("b")])
    before = await client.lrange(f"{prefix}:sealed:messages", 0, -1)
    inner = RedisSession("sealed", redis_client=client, key_prefix=prefix)
    rotated = EncryptedSession("sealed", inner, [NEW_KEY, OLD_KEY])
    assert await rotated.reencrypt() == 2
    after = await client.lrange(f"{prefix}:sealed:messages", 0, -1)
    assert len(after) == 2
    assert set(after).isdisjoint(before)
    await rotated.aclose()
    inner = RedisSession("sealed", redis_client=client, key_prefix=prefix)
    async with EncryptedSession("sealed", inner, NEW_KEY, ttl=1) as fresh:
        assert await fresh.get_items() == [msg("a"), msg("b")]
        await asyncio.sleep(1.1)
        assert await fresh.purge_expired() == 2
    assert await client.llen(f"{prefix}:sealed:messages") == 0


async def test_a_session_named_like_a_state_key_stays_apart(
    client: aioredis.Redis, prefix: str
) -> None:
    """Session "x:state" and session x's state never share a key."""
    x = RedisSession("x", redis_client=client, key_prefix=prefix)
    named = RedisSession("x:state", redis_client=client, key_prefix=prefix)
    await x._write_state("k", 1)  # noqa: SLF001
    await named.add_items([msg("a")])
    assert await x._read_state("k") == 1  # noqa: SLF001
    await x.clear_session()
    assert await client.hgetall(f"{prefix}:x:state") == {
        b"session_id": b"x:state",
        b"created_at": ANY,
        b"updated_at": ANY,
    }
    assert await named.get_items() == [msg("a")]
    await x.aclose()
    await named.aclose()


async def test_a_session_named_like_a_counter_key_stays_apart(
    client: aioredis.Redis, prefix: str
) -> None:
    """Session "y:counter" neither blocks session y nor loses its record when y is cleared."""
    named = RedisSession("y:counter", redis_client=client, key_prefix=prefix, ttl=300)
    await named.add_items([msg("n")])
    y = RedisSession("y", redis_client=client, key_prefix=prefix, ttl=100)
    await y.add_items([msg("y")])
    await y.clear_session()
    assert await client.hget(f"{prefix}:y:counter", "session_id") == b"y:counter"
    assert await client.pttl(f"{prefix}:y:counter") > 200_000
    assert await named.get_items() == [msg("n")]
    await y.aclose()
    await named.aclose()


def test_without_the_client_the_error_names_the_extra() -> None:
    """With the redis package missing, agent_sessions.RedisSession names the extra to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import agent_sessions\n"
        "try:\n"
        "    agent_sessions.RedisSession\n"
        "except agent_sessions.MissingDependencyError as exc:\n"
        "    assert isinstance(exc, ImportError)\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'agent-sessions[redis]'" in result.stdout

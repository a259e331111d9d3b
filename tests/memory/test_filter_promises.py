"""Filters and pages that a SQL driver cannot bind as they are behave the same on every backend."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions.memory import MemoryStore
from agent_sessions.testing import MemoryHarness
from agent_sessions.testing.memory.harness import semantic_index as make_index
from tests.conftest import require_server
from tests.memory.conftest import drop_table, unique_table
from tests.sql_servers import POSTGRES_URL

VALUE = {"n": 5, "big": 2**64, "nul": "a\x00b", "lone": "\ud800", "t": "note", "text": "note"}

FILTERS = [
    ({"big": 2**64}, 1),
    ({"big": {"$gte": 2**64}}, 1),
    ({"n": 2**64}, 0),
    ({"n": -(2**70)}, 0),
    ({"n": {"$in": [2**64, 5]}}, 1),
    ({"nul": "a\x00b"}, 1),
    ({"nul": "a"}, 0),
    ({"lone": "\ud800"}, 1),
    ({"t": "\ud800"}, 0),
    ({"t": "note\x00"}, 0),
]


@pytest.mark.parametrize(("spec", "hits"), FILTERS, ids=[repr(f[0]) for f in FILTERS])
async def test_filters_beyond_what_sql_binds_match_as_json_compares(
    memory_harness: MemoryHarness, spec: dict[str, object], hits: int
) -> None:
    """Huge ints, NUL and lone surrogates in a filter match by JSON equality on every backend."""
    store = await memory_harness.store()
    await store.put(("u",), "k", VALUE)
    await store.put(("u",), "other", {"n": 6, "t": "other"})
    assert len(await store.search(("u",), filter=spec)) == hits
    assert len(await store.search(("u",), filter=spec, query="note")) == hits


@pytest.mark.parametrize(
    ("limit", "offset", "hits"),
    [(2**63, 0, 2), (2**64, 0, 2), (10, 2**63, 0), (2**100, 2**100, 0), (1, 2**63 - 1, 0)],
)
async def test_limits_and_offsets_past_64_bits_are_counts(
    memory_harness: MemoryHarness, limit: int, offset: int, hits: int
) -> None:
    """A limit or offset of 2**63 or more is a count like any other, on every backend."""
    store = await memory_harness.store()
    await store.put(("u",), "a", {"text": "note one"})
    await store.put(("u",), "b", {"text": "note two"})
    assert len(await store.search(("u",), limit=limit, offset=offset)) == hits
    assert len(await store.search(("u",), query="note", limit=limit, offset=offset)) == hits
    assert len(await store.list_namespaces(limit=limit, offset=offset)) == min(hits, 1)


async def test_semantic_search_with_a_huge_limit_returns_all(
    memory_harness: MemoryHarness,
) -> None:
    """A semantic search with a limit of 2**64 returns every match, on every backend."""
    store = await memory_harness.store(index=make_index())
    await store.put(("u",), "a", {"text": "note one"})
    await store.put(("u",), "b", {"text": "note two"})
    assert len(await store.search(("u",), query="note", limit=2**64)) == 2
    assert await store.search(("u",), query="note", limit=5, offset=2**64) == []


@pytest.mark.sqlite
@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"])
async def test_an_in_memory_url_store_keeps_every_concurrent_put(url: str) -> None:
    """20 puts at once on an in-memory (and driverless) URL all land in one database."""
    async with MemoryStore.from_url(url) as store:
        await asyncio.gather(*(store.put(("u",), f"k{i}", {"i": i}) for i in range(20)))
        found = await store.search(("u",), limit=100)
        assert sorted(item.value["i"] for item in found) == list(range(20))


@pytest.mark.postgres
async def test_a_driverless_postgres_url_opens_a_store() -> None:
    """MemoryStore.from_url("postgresql://...") uses the asyncpg driver we ship."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    table = unique_table()
    store = MemoryStore.from_url("postgresql://postgres@127.0.0.1:5432/test", table=table)
    try:
        await store.put(("u",), "k", {"i": 1})
        assert (await store.get(("u",), "k")) is not None
    finally:
        await store.aclose()
        engine = create_async_engine(POSTGRES_URL)
        await drop_table(engine, table)
        await engine.dispose()

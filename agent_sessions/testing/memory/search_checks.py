"""Conformance checks of finding: isolation, listing, filters, keywords, vectors, namespaces."""

from __future__ import annotations

import asyncio
from typing import Any

from ...errors import EmbeddingError
from ...memory.embed import HashingEmbedder
from ...memory.types import IndexConfig
from .harness import ManualClock, MemoryHarness, expect, raises, semantic_index

__all__ = [
    "check_async_embedder",
    "check_embedder_errors",
    "check_filter_paging",
    "check_filters",
    "check_keyword_query",
    "check_keyword_words_not_keys",
    "check_list_namespaces",
    "check_listing_order_and_paging",
    "check_namespace_isolation",
    "check_semantic_search",
]


async def check_namespace_isolation(h: MemoryHarness) -> None:
    """A search under ("alice",) finds alice's memories and her sub-namespaces, never alice2's."""
    store = await h.store()
    root = "isolation"
    await store.put((root, "alice"), "a", {"text": "alice secret", "kind": "x"})
    await store.put((root, "alice", "work"), "w", {"text": "alice work secret", "kind": "x"})
    await store.put((root, "alice2"), "b", {"text": "alice2 secret", "kind": "x"})
    await store.put((root, "Alice"), "c", {"text": "Alice secret", "kind": "x"})
    await store.put((root, "alice bob"), "d", {"text": "alice bob secret", "kind": "x"})
    for found in (
        await store.search((root, "alice")),
        await store.search((root, "alice"), query="secret"),
        await store.search((root, "alice"), filter={"kind": "x"}),
    ):
        keys = sorted(item.key for item in found)
        expect(keys == ["a", "w"], f"search under ('alice',) returned {keys}")
    expect(await store.get((root, "alice2"), "a") is None, "get crossed namespaces")
    keys = sorted(i.key for i in await store.search((root, "alice", "work")))
    expect(keys == ["w"], f"a sub-namespace search returned {keys}")


async def check_listing_order_and_paging(h: MemoryHarness) -> None:
    """Without a query, search returns newest first, and limit/offset page through it."""
    clock = ManualClock()
    store = await h.store(clock=clock)
    for n in range(5):
        await store.put(("paging",), f"k{n}", {"n": n})
        clock.advance(1)
    keys = [item.key for item in await store.search(("paging",))]
    expect(keys == ["k4", "k3", "k2", "k1", "k0"], f"not newest first: {keys}")
    page = [item.key for item in await store.search(("paging",), limit=2, offset=1)]
    expect(page == ["k3", "k2"], f"limit=2, offset=1 gave {page}")
    expect(await store.search(("paging",), limit=0) == [], "limit=0 returned items")
    await raises(store.search(("paging",), limit=-1), ValueError, "limit=-1")


async def check_filters(h: MemoryHarness) -> None:
    """Filters compare JSON values: equality, operators, nested paths, and true is not 1."""
    store = await h.store()
    rows = [
        ("a", {"kind": "pref", "stars": 5, "flag": True, "meta": {"lang": "fr"}}),
        ("b", {"kind": "pref", "stars": 2, "flag": 1}),
        ("c", {"kind": "fact", "stars": 4.5}),
    ]
    for key, value in rows:
        await store.put(("filters",), key, value)

    async def keys(spec: dict[str, Any]) -> list[str]:
        return sorted(item.key for item in await store.search(("filters",), filter=spec))

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"kind": "pref"}, ["a", "b"]),
        ({"kind": {"$ne": "pref"}}, ["c"]),
        ({"stars": {"$gte": 4}}, ["a", "c"]),
        ({"stars": {"$gt": 2, "$lt": 5}}, ["c"]),
        ({"kind": {"$in": ["fact", "other"]}}, ["c"]),
        ({"meta.lang": "fr"}, ["a"]),
        ({"flag": True}, ["a"]),
        ({"flag": 1}, ["b"]),
        ({"kind": "pref", "stars": 2}, ["b"]),
    ]
    for spec, expected in cases:
        found = await keys(spec)
        expect(found == expected, f"filter {spec} gave {found}, expected {expected}")
    await raises(store.search(("filters",), filter={"x": {"$regex": "."}}), ValueError, "$regex")


async def check_filter_paging(h: MemoryHarness) -> None:
    """A filtered search pages through the matches only, newest first, however many there are."""
    clock = ManualClock()
    store = await h.store(clock=clock)
    for n in range(60):
        await store.put(("filter-paging",), f"k{n:02}", {"kind": "a" if n % 3 else "b", "n": n})
        clock.advance(1)
    matches = [f"k{n:02}" for n in reversed(range(60)) if n % 3]
    page = await store.search(("filter-paging",), filter={"kind": "a"}, limit=7, offset=20)
    expect([i.key for i in page] == matches[20:27], f"filtered page {[i.key for i in page]}")
    tail = await store.search(("filter-paging",), filter={"kind": "a"}, limit=50, offset=30)
    expect([i.key for i in tail] == matches[30:], "the last filtered page is wrong")


async def check_keyword_query(h: MemoryHarness) -> None:
    """Without an index, a query returns the memories sharing its words, best match first."""
    store = await h.store()
    await store.put(("keywords",), "both", {"text": "pytest fixtures are handy"})
    await store.put(("keywords",), "one", {"text": "fixtures in the kitchen"})
    await store.put(("keywords",), "none", {"text": "dark mode"})
    found = await store.search(("keywords",), query="pytest fixtures")
    expect([i.key for i in found] == ["both", "one"], f"keyword ranking {[i.key for i in found]}")
    scores = [i.score for i in found]
    expect(scores[0] is not None and scores[1] is not None, "scores missing")


async def check_keyword_words_not_keys(h: MemoryHarness) -> None:
    """A keyword query skips common words, matches words that start like its own, never keys."""
    store = await h.store()
    await store.put(("words",), "style", {"text": "prefers detailed explanations"})
    await store.put(("words",), "tea", {"note": {"text": "green tea"}})
    found = await store.search(("words",), query="how should I explain?")
    expect([i.key for i in found] == ["style"], f"'explain' found {[i.key for i in found]}")
    keys = [i.key for i in await store.search(("words",), query="note")]
    expect(keys == [], f"a JSON key matched as a word: {keys}")
    nested = [i.key for i in await store.search(("words",), query="tea")]
    expect(nested == ["tea"], f"a nested string was not searched: {nested}")


async def check_list_namespaces(h: MemoryHarness) -> None:
    """list_namespaces honours prefix, suffix, max_depth, limit and offset, sorted."""
    store = await h.store()
    for namespace in [("ns", "a", "prefs"), ("ns", "a", "facts"), ("ns", "b", "prefs"), ("ns2",)]:
        await store.put(namespace, "k", {"v": 1})
    listed = await store.list_namespaces(prefix=("ns",))
    expected = [("ns", "a", "facts"), ("ns", "a", "prefs"), ("ns", "b", "prefs")]
    expect(listed == expected, f"prefix listing {listed}")
    suffixed = await store.list_namespaces(prefix=("ns",), suffix=("prefs",))
    expect(suffixed == [("ns", "a", "prefs"), ("ns", "b", "prefs")], f"suffix gave {suffixed}")
    shallow = await store.list_namespaces(prefix=("ns",), max_depth=2)
    expect(shallow == [("ns", "a"), ("ns", "b")], f"max_depth gave {shallow}")
    paged = await store.list_namespaces(prefix=("ns",), limit=1, offset=1)
    expect(paged == [("ns", "a", "prefs")], f"paging gave {paged}")


async def check_semantic_search(h: MemoryHarness) -> None:
    """With an index, a query ranks one user's memories by similarity and never leaves them."""
    store = await h.store(index=semantic_index())
    alice, bob = ("semantic", "alice"), ("semantic", "bob")
    await store.put(alice, "tests", {"text": "Alice runs her test suite with pytest"})
    await store.put(alice, "editor", {"text": "Alice prefers dark mode in her editor"})
    await store.put(alice, "home", {"text": "Alice lives in Lyon"})
    await store.put(alice, "hidden", {"text": "Alice testing framework pytest"}, index=False)
    await store.put(bob, "tests", {"text": "What testing framework does Bob use? unittest"})
    found = await store.search(alice, query="What testing framework does Alice use?")
    keys = [item.key for item in found]
    expect(keys[:1] == ["tests"], f"the pytest memory is not first: {keys}")
    expect("hidden" not in keys, "a memory put with index=False was found by a query")
    expect(all(item.namespace == alice for item in found), "a query left the namespace")
    scores = [item.score for item in found]
    expect(all(s is not None for s in scores), "semantic results lack a score")
    expect(scores == sorted(scores, reverse=True), f"scores not descending: {scores}")  # type: ignore[type-var]
    filtered = await store.search(alice, query="testing", filter={"text": {"$ne": "x"}}, limit=1)
    expect([i.key for i in filtered] == ["tests"], "query with a filter lost the best match")


async def check_embedder_errors(h: MemoryHarness) -> None:
    """An embedder returning the wrong number or size of vectors fails the put, storing nothing."""
    wrong_count = IndexConfig(dims=4, embed=lambda texts: [], fields=["text"])
    store = await h.store(index=wrong_count)
    await raises(store.put(("embed-errors",), "k", {"text": "x"}), EmbeddingError, "0 vectors")
    wrong_size = IndexConfig(dims=4, embed=lambda texts: [[1.0]] * len(texts), fields=["text"])
    store = await h.store(index=wrong_size)
    await raises(store.put(("embed-errors",), "k", {"text": "x"}), EmbeddingError, "1 number")
    expect(await store.get(("embed-errors",), "k") is None, "a failed put stored the memory")


async def check_async_embedder(h: MemoryHarness) -> None:
    """An async embedder is awaited, for puts and queries alike."""
    hashing = HashingEmbedder(32)

    async def embed(texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        return hashing(texts)

    store = await h.store(index=IndexConfig(dims=32, embed=embed))
    await store.put(("async-embed",), "k", {"text": "green tea"})
    found = await store.search(("async-embed",), query="green tea")
    expect([i.key for i in found] == ["k"], "the async embedder's vectors were not used")

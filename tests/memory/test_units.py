"""The memory store's pure helpers: names, filters, keyword scores, field paths and ranking."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent_sessions.errors import EmbeddingError, InvalidFilterError, InvalidNamespaceError
from agent_sessions.memory import vectors
from agent_sessions.memory.embed import HashingEmbedder, embed_texts, texts_at
from agent_sessions.memory.filter import compile_filter
from agent_sessions.memory.fulltext import query_terms, term_score
from agent_sessions.memory.keys import (
    decode_namespace,
    encode_namespace,
    encode_prefix,
    prefix_bounds,
    shape_namespaces,
)
from agent_sessions.memory.vectors import pack, rank, unit


def test_namespace_round_trips_through_its_stored_form() -> None:
    """Decodes the stored form of a namespace back to the same tuple."""
    namespace = ("users", "alice@example.com", "prefs.v2", "a/b")
    assert decode_namespace(encode_namespace(namespace)) == namespace


@pytest.mark.parametrize(
    "namespace", [(), ("",), ("a\x1f",), ("\x00",), "alice", (1,), ("\ud800",), ("x" * 500,)]
)
def test_malformed_namespace_is_refused(namespace: object) -> None:
    """Raises InvalidNamespaceError (a ValueError) for a namespace that cannot be stored."""
    with pytest.raises(InvalidNamespaceError):
        encode_namespace(namespace)


def test_prefix_range_holds_descendants_and_excludes_siblings() -> None:
    """Puts ("a",) and ("a", "b") inside the range of ("a",), and ("a2",), ("a b",) outside."""
    low, high = prefix_bounds(encode_prefix(("a",)))  # type: ignore[misc]
    inside = [encode_namespace(("a",)), encode_namespace(("a", "b")), encode_namespace(("a", "~"))]
    outside = [encode_namespace(("a2",)), encode_namespace(("a b",)), encode_namespace(("A",))]
    assert all(low <= n < high for n in inside)
    assert not any(low <= n < high for n in outside)
    assert prefix_bounds(encode_prefix(())) is None


def test_shape_namespaces_cuts_merges_and_sorts() -> None:
    """Cuts to max_depth, merges the duplicates that makes, and returns them sorted."""
    stored = [encode_namespace(n) for n in [("b", "x"), ("a", "y", "z"), ("a", "y")]]
    shaped = shape_namespaces(stored, suffix=(), max_depth=2, limit=10, offset=0)
    assert shaped == [("a", "y"), ("b", "x")]


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}, True),
        ({"a": {"$gt": 1}}, {"a": "2"}, False),
        ({"a": {"$lt": "b"}}, {"a": "a"}, True),
        ({"a": {"$ne": 1}}, {}, True),
        ({"a": {"$nin": [1]}}, {"a": 2}, True),
        ({"a.b": 1}, {"a": {"b": 1}}, True),
        ({"a.b": 1}, {"a": [1]}, False),
    ],
)
def test_filter_matches_as_json_compares(
    spec: dict[str, object], value: dict[str, object], expected: bool
) -> None:
    """Matches by JSON equality and type-safe ordering."""
    match = compile_filter(spec)
    assert match is not None
    assert match(value) is expected


@pytest.mark.parametrize(
    "spec",
    [
        {"a": {"$where": 1}},
        {"a": {"$in": 1}},
        {"a": {"$gt": None}},
        {"": 1},
        "a=1",
        {"a": float("nan")},
    ],
)
def test_bad_filter_is_refused(spec: object) -> None:
    """Raises InvalidFilterError (a ValueError) for a filter that cannot be applied."""
    with pytest.raises(InvalidFilterError):
        compile_filter(spec)


def test_keyword_score_counts_meaningful_words() -> None:
    """Scores the share of the query's non-trivial words found in the value's strings."""
    terms = query_terms("What tests does Alice use?")
    assert [term.word for term in terms] == ["tests", "alice"]
    assert term_score(terms, {"text": "Alice writes tests", "n": 3}) == 1.0
    assert term_score(terms, {"notes": ["alice"]}) == 0.5
    assert term_score(terms, {"text": "nothing"}) == 0.0
    assert term_score(terms, {"tests": "keys are not words"}) == 0.0


def test_texts_at_follows_paths() -> None:
    """Collects text at keys, dotted paths, every list element and indexes; skips the missing."""
    value = {"text": "a", "n": 2, "notes": [{"t": "b"}, {"t": "c"}, {}], "meta": {"k": "d"}}
    assert texts_at(value, ["text", "notes[*].t", "meta.k", "notes[-2].t", "missing", "n"]) == [
        "a", "b", "c", "d", "c", "2"
    ]  # fmt: skip
    assert texts_at({"b": 1, "a": "x"}, ["$"]) == ['{"a":"x","b":1}']
    with pytest.raises(ValueError, match="cannot parse"):
        texts_at({}, ["a..[x]"])


async def test_sync_embedder_runs_off_the_event_loop() -> None:
    """Calls a plain embedder in a worker thread, so a slow model never blocks the loop."""
    threads: list[threading.Thread] = []

    def embed(texts: list[str]) -> list[list[float]]:
        threads.append(threading.current_thread())
        return [[1.0] for _ in texts]

    assert await embed_texts(embed, ["x"]) == [[1.0]]
    assert threads
    assert threads[0] is not threading.main_thread()


async def test_embedder_with_wrong_count_is_an_error() -> None:
    """Raises EmbeddingError when the embedder returns fewer vectors than texts."""

    async def embed(texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        return []

    with pytest.raises(EmbeddingError):
        await embed_texts(embed, ["x"])


def test_unit_refuses_non_finite_vectors() -> None:
    """Raises EmbeddingError for a vector holding NaN, and leaves a zero vector at zero."""
    with pytest.raises(EmbeddingError):
        unit([float("nan"), 1.0], 2)
    assert unit([0.0, 0.0], 2) == [0.0, 0.0]


def test_hashing_embedder_is_deterministic_and_unit_length() -> None:
    """Gives the same unit vector for the same text, and nearer vectors for shared words."""
    embed = HashingEmbedder(64)
    first, again, near, far = embed(["pytest tests", "pytest tests", "tests", "dark mode"])
    assert first == again
    assert abs(sum(x * x for x in first) - 1) < 1e-9
    assert sum(map(float.__mul__, first, near)) > sum(map(float.__mul__, first, far))


def candidates() -> list[tuple[int, bytes | None]]:
    """Four memories in 2-D; memory 3 has two vectors, memory 4 none."""
    return [
        (1, pack([unit([1, 0], 2)])),
        (2, pack([unit([0, 1], 2)])),
        (3, pack([unit([-1, 0], 2), unit([1, 1], 2)])),
        (4, None),
    ]


def test_rank_scores_a_memory_by_its_best_vector() -> None:
    """Ranks by cosine similarity, a memory with several vectors by its best one."""
    ranked = rank(unit([1, 0.9], 2), candidates(), 3, 2)
    assert [row_id for row_id, _ in ranked] == [3, 1, 2]
    assert ranked[0][1] == pytest.approx(0.9986, abs=1e-3)


def test_rank_without_numpy_agrees_with_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gives the same order and scores in pure Python as with numpy."""
    pytest.importorskip("numpy")
    query = unit([0.3, -1], 2)
    with_numpy = rank(query, candidates(), 4, 2)
    monkeypatch.setattr(vectors, "_np", None)
    without = rank(query, candidates(), 4, 2)
    assert [i for i, _ in without] == [i for i, _ in with_numpy]
    assert [s for _, s in without] == pytest.approx([s for _, s in with_numpy], abs=1e-6)


def test_vector_cache_follows_writes_and_expiry() -> None:
    """Finds added vectors, forgets removed ones, and honours expiry times."""
    pytest.importorskip("numpy")
    cache = vectors.VectorCache("", 2)
    for row_id in range(200):  # past the first capacity, so it grows
        cache.add(row_id, pack([unit([1, row_id / 100], 2)]), None)
    cache.add(500, pack([unit([0, 1], 2)]), expires_at=10.0)
    assert cache.nearest(unit([0, 1], 2), now=5.0, k=1)[0][0] == 500
    assert cache.nearest(unit([0, 1], 2), now=11.0, k=1)[0][0] == 199
    cache.remove(199)
    assert cache.nearest(unit([0, 1], 2), now=11.0, k=1)[0][0] == 198
    cache.add(7, None, None)
    assert 7 not in [i for i, _ in cache.nearest(unit([1, 0], 2), now=0.0, k=300)]


def test_vector_cache_bulk_load_ranks_like_rank() -> None:
    """Ranks a bulk-loaded scope exactly as the uncached ranking does, expired rows aside."""
    pytest.importorskip("numpy")
    rows = [(row_id, blob, None) for row_id, blob in candidates()]
    rows.append((9, pack([unit([1, 0.9], 2)]), 5.0))  # expired by the time of the search
    cache = vectors.VectorCache("", 2)
    cache.load(rows)
    query = unit([1, 0.9], 2)
    cached, fresh = cache.nearest(query, now=10.0, k=4), rank(query, candidates(), 4, 2)
    assert [i for i, _ in cached] == [i for i, _ in fresh]
    assert [s for _, s in cached] == pytest.approx([s for _, s in fresh])
    assert cache.nearest(query, now=1.0, k=1)[0][0] == 9


async def test_inline_embedder_runs_on_the_loop() -> None:
    """Calls an embedder that declares runs_inline directly, on the event loop's thread."""
    threads: list[threading.Thread] = []

    class Cheap:
        runs_inline = True

        def __call__(self, texts: list[str]) -> list[list[float]]:
            threads.append(threading.current_thread())
            return [[1.0] for _ in texts]

    await embed_texts(Cheap(), ["x"])
    assert threads == [threading.current_thread()]

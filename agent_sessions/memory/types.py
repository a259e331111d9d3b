"""The shapes the memory store hands out and the few primitives one memory backend implements.

A backend stores rows of text and numbers: the namespace already joined into one string (see
``keys``), the value already encoded by ``serialization``, vectors already packed. All
validation, encoding, embedding and ranking happen once, in ``store.py``, above this line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Required, Union

from typing_extensions import TypedDict

if TYPE_CHECKING:
    from .fulltext import Term

__all__ = [
    "AdminBackend",
    "EmbedFunction",
    "Entry",
    "FullTextBackend",
    "Hint",
    "IndexConfig",
    "MemoryBackend",
    "MemoryItem",
    "Record",
    "Row",
    "SearchItem",
    "Tally",
]

Vectors = Sequence[Sequence[float]]
EmbedFunction = Callable[[list[str]], Union[Vectors, Awaitable[Vectors]]]  # noqa: UP007 - a runtime alias on 3.10
"""Turns a batch of texts into one vector each; plain or ``async``."""


class IndexConfig(TypedDict, total=False):
    """How a store embeds values for semantic search (the keys LangGraph's stores take).

    Attributes:
        dims: Length of every vector ``embed`` returns.
        embed: ``embed(texts) -> vectors``, sync or async, called with a whole batch at once.
            A sync function runs in a worker thread, so a slow model never blocks the loop.
        fields: What to embed from each value: ``"$"`` (the whole value as JSON, the default),
            a top-level key, or a dotted path with ``[*]`` for every element of a list
            (``"notes[*].text"``). Each text found is one vector; an item scores as its best.
    """

    dims: Required[int]
    embed: Required[EmbedFunction]
    fields: Sequence[str]


@dataclass
class MemoryItem:
    """One stored memory: a fresh object on every read, so changing it changes nothing stored.

    Attributes:
        namespace: Where it lives, e.g. ``("users", "alice")``.
        key: Its name, unique within the namespace.
        value: The JSON object stored (a fresh copy on every read).
        created_at: When it was first stored (UTC).
        updated_at: When it was last written (UTC).
    """

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class SearchItem(MemoryItem):
    """A memory found by ``search``, with how well it matched the query.

    Attributes:
        score: With a semantic index, the cosine similarity of its best-matching field (-1 to 1);
            with keyword search, the share of the query's words it contains (0 to 1); ``None``
            when the search had no ``query``.
    """

    score: float | None = None


class Hint(NamedTuple):
    """An equality a search filter requires: the value at ``path`` (plain keys) is ``scalar``."""

    path: tuple[str, ...]
    scalar: str | int | float | bool


class Record(NamedTuple):
    """A memory ready to be written: every field validated and encoded.

    ``words`` is what keyword search finds it by (its string values), or None to keep it out
    of the full-text index (an encrypted value whose words must not be stored).
    """

    namespace: str
    key: str
    value: str
    now: float
    expires_at: float | None
    ttl: float | None
    embedding: bytes | None
    words: str | None = None


class Row(NamedTuple):
    """A memory as read back; ``embedding`` is filled only by scans that ask for it."""

    id: int
    namespace: str
    key: str
    value: str
    created_at: float
    updated_at: float
    embedding: bytes | None = None


class Entry(NamedTuple):
    """A stored memory with its expiry, live or expired, as the admin view reads it."""

    namespace: str
    key: str
    value: str
    created_at: float
    updated_at: float
    expires_at: float | None
    ttl: float | None


class Tally(NamedTuple):
    """One namespace's memories: ``live`` and ``expired`` counts, and its latest write."""

    namespace: str
    live: int
    expired: int
    last_updated: float


class AdminBackend(Protocol):
    """What the admin view (``agent-sessions memory``) reads beyond :class:`MemoryBackend`."""

    async def tallies(self, prefix: str, now: float) -> list[Tally]:
        """Count the memories of every namespace under ``prefix``, sorted by namespace."""
        ...

    async def entries(self, prefix: str, key: str | None = None) -> list[Entry]:
        """Every stored memory under ``prefix`` (or the one ``key`` of that namespace), sorted."""
        ...


class FullTextBackend(Protocol):
    """A backend that can answer keyword queries from its database's full-text index.

    Optional: the store calls ``fulltext`` when a backend has it, and otherwise (or when it
    returns None) ranks a scan of the scope itself.
    """

    async def fulltext(self, prefix: str, terms: Sequence[Term], now: float) -> list[Row] | None:
        """Return the live memories under ``prefix`` whose ``words`` match any term, best first.

        None means this query cannot be answered from the index (the store scans instead).
        """
        ...


class MemoryBackend(Protocol):
    """The primitives of one database. ``prefix`` is an encoded namespace prefix (``""`` = all).

    Reads never return a row whose ``expires_at`` is at or before ``now``.
    """

    async def put(self, record: Record) -> None:
        """Insert or replace one memory in one transaction (``created_at`` kept on replace)."""
        ...

    async def get(self, namespace: str, key: str, now: float) -> Row | None:
        """Return one live memory, or None."""
        ...

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete one memory; True if it existed (live or expired)."""
        ...

    async def scan(
        self,
        prefix: str,
        now: float,
        *,
        limit: int | None,
        offset: int,
        vectors: bool,
        hints: Sequence[Hint] = (),
    ) -> list[Row]:
        """Return the live memories under ``prefix``, most recently updated first.

        A backend may use ``hints`` to leave out rows that cannot match the search filter: it
        must keep every row whose value has ``value[path] == scalar`` in JSON terms, and may
        keep more (the store checks every row it gets).
        """
        ...

    async def fetch(self, ids: Sequence[int], now: float) -> list[Row]:
        """Return the live memories with these row ids, in any order."""
        ...

    async def nearest(
        self, prefix: str, query: Sequence[float], now: float, k: int, dims: int
    ) -> list[tuple[int, float]]:
        """Return the ``k`` best ``(row id, score)`` under ``prefix``, nearest to ``query`` first.

        ``query`` is a unit vector; a memory scores as its best vector.
        """
        ...

    async def refresh(self, ids: Sequence[int], now: float) -> None:
        """Restart the TTL of these memories (those stored with one) from ``now``."""
        ...

    async def namespaces(self, prefix: str, now: float) -> list[str]:
        """Return the distinct encoded namespaces holding live memories under ``prefix``."""
        ...

    async def sweep(self, now: float) -> int:
        """Delete every expired memory; return how many."""
        ...

    async def aclose(self) -> None:
        """Release the database; idempotent."""
        ...

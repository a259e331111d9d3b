"""What the ``recall`` tool answers: a search of one namespace, or its newest notes instead.

Shared by :func:`~agent_sessions.memory.memory_tools` and the admin view, so that
``agent-sessions memory search`` shows exactly what an agent's ``recall`` would see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .types import SearchItem

if TYPE_CHECKING:
    from .store import MemoryStore

__all__ = ["Recall", "recall"]


class Recall(NamedTuple):
    """A recall's answer: whether the query matched, and the notes (best or newest first)."""

    matched: bool
    items: list[SearchItem]


async def recall(
    store: MemoryStore, namespace: tuple[str, ...], query: str, *, limit: int
) -> Recall:
    """Search ``namespace`` for ``query``; when nothing matches, return its newest notes.

    Raises:
        InvalidNamespaceError: the namespace is malformed.
        InvalidLimitError: ``limit`` is not a non-negative int.
    """
    found = await store.search(namespace, query=query, limit=limit)
    if found:
        return Recall(True, found)
    return Recall(False, await store.search(namespace, limit=limit))

"""Long-term memory shared across conversations: a namespaced store with search, TTL and tools.

A session remembers one conversation; a :class:`MemoryStore` remembers a *user* across all of
them. Memories are JSON objects under a key, in a namespace such as ``("users", "alice")``; a
search under a namespace prefix never returns memories outside it. With an ``index`` config
the values are embedded and ``search(query=...)`` ranks by meaning; without one it ranks by the
words of the query. :func:`memory_tools` gives an agent ``remember``, ``recall`` and ``forget``
tools bound to one user's namespace.

Backends: SQLite (the default; it can share a file with the sessions, in its own table) and any
async SQLAlchemy engine (PostgreSQL, MariaDB/MySQL, aiosqlite) through :meth:`MemoryStore.from_url`.

Example:
    >>> from agent_sessions.memory import MemoryStore
    >>> async def demo() -> None:
    ...     async with MemoryStore("app.db") as store:
    ...         await store.put(("users", "alice"), "style", {"text": "likes detailed answers"})
    ...         found = await store.search(("users", "alice"), query="answers")
"""

from __future__ import annotations

from .embed import HashingEmbedder, local_embedder
from .store import MemoryStore, MemoryStoreState
from .tools import memory_instructions, memory_tools
from .types import IndexConfig, MemoryItem, SearchItem

__all__ = [
    "HashingEmbedder",
    "IndexConfig",
    "MemoryItem",
    "MemoryStore",
    "MemoryStoreState",
    "SearchItem",
    "local_embedder",
    "memory_instructions",
    "memory_tools",
]

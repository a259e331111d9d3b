"""MemoryStore keyword search: the full-text index path against the scope scan it replaced.

One SQLite file, 200 namespaces of 100 memories (five words each from a 16-word vocabulary, so a
word is in about a third of all memories). Each row is the mean of 200 searches, each in one
namespace, our scoring included; "scan" is the same store told not to use its index (the path a
store without one, or an encrypted one, takes). Usage: ``python benchmarks/memory_keywords.py``.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from agent_sessions.memory import MemoryStore

WORDS = [
    "tea",
    "coffee",
    "python",
    "rust",
    "tests",
    "fixtures",
    "dark",
    "mode",
    "editor",
    "neovim",
    "lyon",
    "paris",
    "cycling",
    "detailed",
    "explanations",
    "examples",
]
USERS, PER_USER, SEARCHES = 200, 100, 200


async def main() -> None:
    """Fill the store once, then time each query on both paths."""
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        async with MemoryStore(Path(tmp) / "m.db", index=None, durable=False) as store:
            for user in range(USERS):
                for key in range(PER_USER):
                    note = {"text": " ".join(rnd.sample(WORDS, 5))}
                    await store.put(("users", f"u{user}"), f"k{key}", note)
            for label, indexed in (("fulltext", True), ("scan", False)):
                store._words = indexed  # noqa: SLF001 - the one switch between the two paths
                for query in ("tea", "how should I explain?", "zebra"):
                    start = time.perf_counter()
                    for n in range(SEARCHES):
                        await store.search(("users", f"u{n % USERS}"), query=query)
                    took = (time.perf_counter() - start) / SEARCHES * 1e3
                    print(f"{label:9} {query!r:26} {took:7.2f} ms per search")


if __name__ == "__main__":
    asyncio.run(main())

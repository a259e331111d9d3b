"""What the memory conformance checks stand on: the harness, a manual clock, and assertions."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ...memory.embed import HashingEmbedder
from ...memory.store import MemoryStore
from ...memory.types import IndexConfig
from ..checks import ConformanceError

__all__ = [
    "TOLERANCE",
    "ManualClock",
    "MemoryCheck",
    "MemoryHarness",
    "expect",
    "raises",
    "semantic_index",
]

MemoryCheck = Callable[["MemoryHarness"], Awaitable[None]]
TOLERANCE = 0.01  # seconds: timestamps travel as floats
Opener = Callable[[IndexConfig | None, Callable[[], float]], "MemoryStore | Awaitable[MemoryStore]"]


class ManualClock:
    """A clock that stands still until it is moved: ``clock()`` returns ``clock.now``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        """Return the clock's current time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@dataclass
class MemoryHarness:
    """How the checks reach one memory backend.

    Attributes:
        name: Shown in reports.
        open: ``open(index, clock)`` returns a new store (sync or async) on the one database
            under test, with that index config (or None) and clock.
        persistent: Whether a new store sees what a closed one wrote.
        cleanup: Called by :meth:`close_all` after the stores are closed, last first.
    """

    name: str
    open: Opener
    persistent: bool = True
    cleanup: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    _opened: list[MemoryStore] = field(default_factory=list, repr=False)

    async def store(
        self, *, index: IndexConfig | None = None, clock: Callable[[], float] | None = None
    ) -> MemoryStore:
        """Open a store that :meth:`close_all` will close."""
        opened = self.open(index, clock or time.time)
        store = await opened if inspect.isawaitable(opened) else opened
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        """Close every store still open, then run the cleanup callables."""
        while self._opened:
            await self._opened.pop().aclose()
        while self.cleanup:
            done = self.cleanup.pop()()
            if inspect.isawaitable(done):
                await done


def expect(condition: bool, message: str) -> None:
    """Raise :class:`~agent_sessions.testing.ConformanceError` with ``message`` unless true."""
    if not condition:
        raise ConformanceError(message)


async def raises(call: Awaitable[object], error: type[BaseException], what: str) -> None:
    """Await ``call`` and fail unless it raises ``error``."""
    try:
        await call
    except error:
        return
    expect(False, f"{what} did not raise {error.__name__}")


def semantic_index(dims: int = 256) -> IndexConfig:
    """The index the semantic checks use: the deterministic hashing embedder on ``text``."""
    return IndexConfig(dims=dims, embed=HashingEmbedder(dims), fields=["text"])

"""What a restore of popped rows checks, shared by the stores: the clears since, and the pop's mark.

A pop whose caller was cancelled puts its rows back; it must never bring back rows that a later
``clear`` removed. Each store notes its clears in a :class:`ClearLog` and attaches to every
popped row a mark of what the pop saw; the restore compares the two.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

from ..store import Popped

__all__ = ["ClearLog", "with_mark"]

T = TypeVar("T")


class _Marked(Popped[T]):
    """A popped row with what its pop saw (a store-specific mark)."""

    mark: Any


def with_mark(taken: list[Popped[T]], mark: object) -> list[Popped[T]]:
    """Return the popped rows, each carrying ``mark`` (plain rows become marked copies)."""
    marked: list[Popped[T]] = []
    for row in taken:
        copy = _Marked(*row) if type(row) is Popped else row
        copy.mark = mark  # type: ignore[attr-defined]
        marked.append(copy)
    return marked


class ClearLog:
    """The clears a store made, by key, so a restore can tell whether one came after its pop.

    Used only on the store's worker thread. It remembers the last ``keep`` keys cleared; a
    restore older than what it forgot relies on the session record alone.
    """

    def __init__(self, keep: int = 4096) -> None:
        self._keep = keep
        self._count = 0
        self._last: dict[Hashable, int] = {}

    @property
    def count(self) -> int:
        """How many clears were noted so far."""
        return self._count

    def note(self, key: Hashable) -> None:
        """Record that ``key`` (a session, or a session's branch) was cleared just now."""
        self._count += 1
        self._last.pop(key, None)
        self._last[key] = self._count
        if len(self._last) > self._keep:
            del self._last[next(iter(self._last))]

    def cleared_since(self, key: Hashable, clears: int) -> bool:
        """Whether ``key`` was cleared after the store had made ``clears`` clears."""
        return self._last.get(key, 0) > clears

"""What a restore of popped rows checks, shared by the stores: the clears since, and the pop's mark.

A pop whose caller was cancelled puts its rows back; it must never bring back rows that a later
``clear`` removed. Each store notes its clears in a :class:`ClearLog` and attaches to every
popped row a mark of what the pop saw; the restore compares the two.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple, TypeVar

from ..store import Popped

__all__ = [
    "ClearLog",
    "Provenance",
    "RestoreMark",
    "provenance_of",
    "with_mark",
    "with_provenance",
]

T = TypeVar("T")


class RestoreMark(NamedTuple):
    """What a restore checks, so that it never brings back rows a later clear removed."""

    key: Hashable
    """What a clear that voids the restore is noted under: the session, or its branch."""
    clears: int
    """How many clears the store had made when the rows were popped."""
    record: Any
    """What identified the session record then (``None`` if there was none): a clear deletes it."""


class _Marked(Popped[T]):
    """A popped row with the :class:`RestoreMark` of its pop, and its provenance if tagged."""

    mark: RestoreMark
    provenance: Provenance | None = None


Provenance = tuple[Any, ...]
"""A tagged row's schema v4 values, as a pop read them: agent, run, position, digest, time."""


def with_provenance(taken: list[Popped[T]], found: dict[int, Provenance]) -> list[Popped[T]]:
    """Attach to marked popped rows the provenance a pop read (by row id), so a restore keeps it."""
    for row in taken:
        if row.row_id in found:
            row.provenance = found[row.row_id]  # type: ignore[attr-defined]
    return taken


def provenance_of(popped: Popped[Any]) -> Provenance | None:
    """The provenance a popped row was stored with (None: untagged, or not read by its pop)."""
    return getattr(popped, "provenance", None)


def with_mark(taken: list[Popped[T]], mark: RestoreMark) -> list[Popped[T]]:
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

    def mark(self, key: Hashable, record: Any) -> RestoreMark:
        """The mark of a pop made now, of ``key``, while the session record was ``record``."""
        return RestoreMark(key, self._count, record)

    def may_restore(self, popped: Popped[Any], record: Any) -> bool:
        """Whether ``popped`` may go back, the session record now being ``record`` (or None).

        A row popped by this store carries its mark: a clear of its key by this store since, or
        a session record deleted or made anew since (a clear by anyone), means no. An unmarked
        row goes back only into a session that still exists.
        """
        mark: RestoreMark | None = getattr(popped, "mark", None)
        if mark is None:
            return record is not None
        if self.cleared_since(mark.key, mark.clears):
            return False
        return mark.record is None or (record is not None and record == mark.record)

"""Pruning in place: a session keeps its newest turns, the older ones go in one transaction.

To be written (issue 18): ``prune_session`` and ``PruneReport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PruneReport", "prune_session"]


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, dry, would remove)."""

    removed_items: int
    removed_turns: int
    kept_items: int


async def prune_session(
    session: Any, *, keep_last_turns: int, keep_system: bool, dry_run: bool
) -> PruneReport:
    """Remove a session's turns older than its newest ``keep_last_turns``.

    ``session`` is a ``StoreSession`` (not imported here: core imports this module).
    """
    raise NotImplementedError

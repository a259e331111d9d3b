"""A drop-in for the SDK's ``AdvancedSQLiteSession``, with branches that copy nothing.

Items stay in the SDK's ``agent_messages`` rows (same codec, same row format). A branch is one
row saying which branch it forks from and below which item id it inherits that branch's
history, so creating a branch costs the same on a ten-item and a ten-thousand-item history, and
reads walk the chain of branches with bounded index range queries. The current branch is kept in
the database per session, so every session object on the file sees switches and new branches.
Turn queries count in SQL over the recorded item types; turn ``n`` is the ``n``-th user message
of the branch's visible history, the same number ``create_branch_from_turn`` takes.

Every item also has the SDK's ``message_structure`` row on the branch it was added to, and usage
lives in the SDK's ``turn_usage`` table, so the SDK's class reads a file of ours and ours reads
the SDK's (see ``docs/schema.md`` for what the SDK's class cannot see of a branch made here).

Because forks share their parent's rows, a pop, ``pop_turn``, branch clear or branch deletion
that would change what a fork inherits first gives the fork its own records of the rows it sees
from there on (a copy of the part between the change and the fork point), so every fork keeps
its history. ``clear_session()`` on ``main`` deletes the whole session, every branch included,
as the SDK does; branch ids are never reused in a session, as in the SDK.

The package loads lazily: its statements, tables and branch logic (what the admin tools read) import
neither the SDK nor SQLAlchemy's asyncio extension; the session classes load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .types import (
    BranchInfo,
    ConversationTurn,
    HistoryEntry,
    ItemKind,
    NoTurnUsage,
    SessionUsage,
    ToolUsage,
    TurnUsage,
)

if TYPE_CHECKING:
    from .sqlite_session import AdvancedSQLiteSession
    from .store import AdvancedSQLiteStore

__all__ = [
    "AdvancedSQLiteSession",
    "AdvancedSQLiteStore",
    "BranchInfo",
    "ConversationTurn",
    "HistoryEntry",
    "ItemKind",
    "NoTurnUsage",
    "SessionUsage",
    "ToolUsage",
    "TurnUsage",
]

_LAZY = {
    "AdvancedSQLiteSession": "agent_sessions.backends.advanced.sqlite_session",
    "AdvancedSQLiteStore": "agent_sessions.backends.advanced.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

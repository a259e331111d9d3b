"""The advanced sessions' typed results and time travel, type-checked by ``mypy --strict``.

Never run: each line assigns a result to the type the docs promise, with no ``reveal_type``,
so a signature that drifts (or falls back to ``Any``-typed dicts) fails the type check.
"""

from __future__ import annotations

from typing import assert_type

from agent_sessions import AdvancedSQLiteSession
from agent_sessions.backends.advanced import (
    BranchInfo,
    ConversationTurn,
    HistoryEntry,
    ItemKind,
    NoTurnUsage,
    SessionUsage,
    ToolUsage,
    TurnUsage,
)
from agent_sessions.backends.advanced.sqlalchemy import AdvancedSQLAlchemySession


async def typed_results(session: AdvancedSQLiteSession) -> None:
    """Every query returns its documented type, field by field."""
    branches: list[BranchInfo] = await session.list_branches()
    branch: BranchInfo = branches[0]
    name: str = branch["branch_id"]
    counts: tuple[int, int] = (branch["message_count"], branch["user_turns"])
    created: str | None = branch["created_at"]
    current: bool = branch["is_current"]

    turns: list[ConversationTurn] = await session.get_conversation_turns(name)
    found: list[ConversationTurn] = await session.find_turns_by_content("weather")
    number: int = turns[0]["turn"]
    preview: str = found[0]["content"]
    when: str | None = turns[0]["timestamp"]

    grouped: dict[int, list[ItemKind]] = await session.get_conversation_by_turns()
    kind: str = grouped[1][0]["type"]
    tool: str | None = grouped[1][0]["tool_name"]

    tools: list[ToolUsage] = await session.get_tool_usage()
    tool_name, call_count, turn_number = tools[0]
    assert_type(tools[0].call_count, int)

    totals: SessionUsage | None = await session.get_session_usage()
    if totals is not None:
        tokens: int = totals["total_tokens"] + totals["total_turns"]
        del tokens

    per_turn: list[TurnUsage] = await session.get_turn_usage()
    one = await session.get_turn_usage(1, branch_id=name)
    assert_type(one, TurnUsage | NoTurnUsage)
    if "requests" in one:
        assert_type(one, TurnUsage)
        requests: int = one["requests"]
        details: dict[str, object] | None = one["input_tokens_details"]
        del requests, details
    del counts, created, current, number, preview, when, kind, tool, per_turn
    del tool_name, call_count, turn_number


async def time_travel(session: AdvancedSQLAlchemySession) -> None:
    """history(), fork() and rewind() on the SQLAlchemy class, by keyword."""
    history: list[HistoryEntry] = await session.history()
    entry: HistoryEntry = history[-1]
    turn: int = entry["turn"]
    holder: str = entry["branch_id"]
    items: int = entry["items"]
    usage: TurnUsage | None = entry["usage"]
    if usage is not None:
        spent: int = usage["total_tokens"]
        del spent
    kept: str = await session.rewind(turn=turn, keep_as="before-retry")
    retry: str = await session.fork(turn=turn, name="retry")
    again: list[HistoryEntry] = await session.history(kept)
    del holder, items, retry, again

"""The advanced queries' typed results carry the documented keys, the SDK's, on every database."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession as SdkAdvanced

from agent_sessions.backends import advanced
from agent_sessions.backends.advanced import (
    AdvancedSQLiteSession,
    BranchInfo,
    ConversationTurn,
    HistoryEntry,
    ItemKind,
    NoTurnUsage,
    SessionUsage,
    ToolUsage,
    TurnUsage,
    types,
)
from agent_sessions.backends.advanced.session import AdvancedSession
from tests.backends.advanced.test_time_travel import (
    Opener,
    assistant,
    call,
    opener_fixture,  # noqa: F401 (the `opener` fixture, on every database)
    run_result,
    unique_id,
    user,
)


def keys(shape: Any) -> set[str]:
    """Every key a TypedDict declares."""
    return set(shape.__required_keys__ | shape.__optional_keys__)


async def filled(session: AdvancedSession) -> AdvancedSession:
    """Store two turns (the first with a tool call) with usage on the first, and a fork."""
    await session.add_items([user("What is the weather?"), call("weather"), assistant("Sunny")])
    await session.store_run_usage(run_result(10))
    await session.add_items([user("And tomorrow?"), assistant("Rain")])
    await session.create_branch_from_turn(2, "alt")  # the SDK's class has no fork()
    await session.switch_to_branch("main")
    return session


async def test_list_branches_gives_branch_info(opener: Opener) -> None:
    """list_branches() entries have exactly BranchInfo's keys, with their types."""
    session = await filled(opener(unique_id()))
    listed = await session.list_branches()
    assert [b["branch_id"] for b in listed] == ["main", "alt"]
    for branch in listed:
        assert set(branch) == keys(BranchInfo)
        assert isinstance(branch["message_count"], int)
        assert isinstance(branch["user_turns"], int)
        assert isinstance(branch["is_current"], bool)
        assert isinstance(branch["created_at"], str)
    assert [b["is_current"] for b in listed] == [True, False]


async def test_turn_queries_give_conversation_turns(opener: Opener) -> None:
    """get_conversation_turns() and find_turns_by_content() give ConversationTurn's keys."""
    session = await filled(opener(unique_id()))
    for turn in [
        *await session.get_conversation_turns(),
        *await session.find_turns_by_content("tomorrow"),
    ]:
        assert set(turn) == keys(ConversationTurn)
        assert isinstance(turn["turn"], int)
        assert isinstance(turn["content"], str)
        assert isinstance(turn["timestamp"], str)
        assert turn["can_branch"] is True


async def test_items_by_turn_give_item_kinds(opener: Opener) -> None:
    """get_conversation_by_turns() lists ItemKind dicts: the type and the tool name."""
    session = await filled(opener(unique_id()))
    grouped = await session.get_conversation_by_turns()
    assert grouped[1] == [
        {"type": "user", "tool_name": None},
        {"type": "function_call", "tool_name": "weather"},
        {"type": "assistant", "tool_name": None},
    ]
    assert all(set(kind) == keys(ItemKind) for kinds in grouped.values() for kind in kinds)


async def test_tool_usage_gives_named_tuples_equal_to_the_sdks(opener: Opener) -> None:
    """get_tool_usage() gives ToolUsage tuples, equal to the SDK's plain tuples."""
    session = await filled(opener(unique_id()))
    (usage,) = await session.get_tool_usage()
    assert isinstance(usage, ToolUsage)
    assert usage == ("weather", 1, 1)
    assert (usage.tool_name, usage.call_count, usage.turn_number) == ("weather", 1, 1)


async def test_usage_queries_give_session_and_turn_usage(opener: Opener) -> None:
    """get_session_usage() and get_turn_usage() give their types' keys; a turn without is {}."""
    session = await filled(opener(unique_id()))
    totals = await session.get_session_usage()
    assert totals is not None
    assert set(totals) == keys(SessionUsage)
    assert totals == {
        "requests": 1,
        "input_tokens": 10,
        "output_tokens": 2,
        "total_tokens": 12,
        "total_turns": 1,
    }
    (listed,) = await session.get_turn_usage()
    assert set(listed) == keys(TurnUsage)
    one = await session.get_turn_usage(1)
    assert set(one) == keys(TurnUsage) - {"user_turn_number"}
    assert "user_turn_number" in TurnUsage.__optional_keys__
    assert await session.get_turn_usage(2) == {}
    assert keys(NoTurnUsage) == set()


async def test_history_gives_history_entries(opener: Opener) -> None:
    """history() entries have HistoryEntry's keys; recorded usage has TurnUsage's."""
    session = await filled(opener(unique_id()))
    history = await session.history()
    assert [set(entry) for entry in history] == [keys(HistoryEntry)] * 2
    recorded = history[0]["usage"]
    assert recorded is not None
    assert set(recorded) == keys(TurnUsage)
    assert history[1]["usage"] is None


@pytest.mark.sqlite
async def test_keys_are_the_sdks(tmp_path: Path) -> None:
    """Every query's dicts have the keys the SDK's AdvancedSQLiteSession returns."""

    async def shapes(session: Any) -> list[Any]:
        await filled(session)
        turn_usage = await session.get_turn_usage()
        return [
            [sorted(b) for b in await session.list_branches()],
            [sorted(t) for t in await session.get_conversation_turns()],
            [sorted(t) for t in await session.find_turns_by_content("weather")],
            [[sorted(k) for k in v] for v in (await session.get_conversation_by_turns()).values()],
            [len(u) for u in await session.get_tool_usage()],
            sorted(await session.get_session_usage()),
            [sorted(u) for u in turn_usage],
            sorted(await session.get_turn_usage(1)),
            await session.get_turn_usage(2),
        ]

    sdk = SdkAdvanced(session_id="s", db_path=tmp_path / "sdk.db", create_tables=True)
    try:
        expected = await shapes(sdk)
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=tmp_path / "ours.db") as ours:
        assert await shapes(ours) == expected


def test_the_types_are_exported() -> None:
    """The result types are importable from agent_sessions.backends.advanced."""
    for name in types.__all__:
        assert getattr(advanced, name) is getattr(types, name)
        assert name in advanced.__all__


def test_every_field_is_documented() -> None:
    """Each result type has a docstring and each of its fields a docstring of its own."""
    for name in types.__all__:
        assert getattr(types, name).__doc__, name
    tree = ast.parse(inspect.getsource(types))
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for index, statement in enumerate(body):
            if isinstance(statement, ast.AnnAssign):
                after = body[index + 1] if index + 1 < len(body) else None
                documented = (
                    isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)
                )
                assert documented, f"{node.name}.{ast.unparse(statement.target)}"


def test_methods_are_typed_with_the_result_types() -> None:
    """The public query methods name the result types in their signatures, never Any."""
    expected = {
        "list_branches": "list[BranchInfo]",
        "get_conversation_turns": "list[ConversationTurn]",
        "find_turns_by_content": "list[ConversationTurn]",
        "get_conversation_by_turns": "dict[int, list[ItemKind]]",
        "get_tool_usage": "list[ToolUsage]",
        "get_session_usage": "SessionUsage | None",
        "get_turn_usage": "list[TurnUsage] | TurnUsage | NoTurnUsage",
        "history": "list[HistoryEntry]",
        "fork": "str",
        "rewind": "str",
    }
    for method, annotation in expected.items():
        assert getattr(AdvancedSession, method).__annotations__["return"] == annotation
    hints = typing.get_type_hints(AdvancedSession.history)
    assert hints["return"] == list[HistoryEntry]

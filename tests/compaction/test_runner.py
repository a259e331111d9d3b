"""Runner compacts a CompactingSession after each turn it stores, with any model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.memory.session import OpenAIResponsesCompactionArgs

from agent_sessions import SQLiteSession
from agent_sessions.compaction import SUMMARY_PREFIX, CompactingSession
from agent_sessions.offline import OfflineModel

from .kit import Item, contents

pytestmark = pytest.mark.sqlite

NO_TRACING = RunConfig(tracing_disabled=True)


class Counting(CompactingSession):
    """A CompactingSession that records every call Runner makes to run_compaction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[OpenAIResponsesCompactionArgs | None] = []

    async def run_compaction(self, args: OpenAIResponsesCompactionArgs | None = None) -> None:
        """Record the call, then compact."""
        self.calls.append(args)
        await super().run_compaction(args)


def user_messages(items: list[Item]) -> list[Any]:
    """Return the contents of the user messages, oldest first."""
    return [
        cast(dict[str, Any], item)["content"]
        for item in items
        if cast(dict[str, Any], item).get("role") == "user"
    ]


async def test_a_runner_loop_compacts_with_an_offline_summariser(tmp_path: Path) -> None:
    """Each stored turn triggers run_compaction; the history stays a summary + the last turns."""
    async with SQLiteSession("chat", tmp_path / "chats.db") as inner:
        session = Counting(
            inner,
            summarizer=Agent(name="summariser", model=OfflineModel()),
            should_compact=lambda items: len(user_messages(items)) > 3,
            keep_last_turns=2,
            run_config=NO_TRACING,
        )
        agent = Agent(name="support", model=OfflineModel())
        for n in range(6):
            await Runner.run(agent, f"question {n}", session=session, run_config=NO_TRACING)
        assert len(session.calls) == 6
        items = await inner.get_items()
        first = cast(dict[str, Any], items[0])
        assert first["role"] == "system"
        assert first["content"].startswith(SUMMARY_PREFIX)
        assert user_messages(items) == ["question 4", "question 5"]


async def test_the_default_budget_compacts_a_long_conversation(tmp_path: Path) -> None:
    """With a small token budget the stored history never grows far past it."""
    async with SQLiteSession("chat", tmp_path / "chats.db") as inner:
        session = CompactingSession(
            inner,
            summarizer=Agent(name="summariser", model=OfflineModel()),
            keep_last_turns=1,
            token_budget=60,
            run_config=NO_TRACING,
        )
        agent = Agent(name="support", model=OfflineModel())
        for n in range(8):
            text = f"question {n}: " + "please tell me about my order " * 3
            await Runner.run(agent, text, session=session, run_config=NO_TRACING)
        items = await inner.get_items()
        assert len(user_messages(items)) == 1
        assert user_messages(items)[0].startswith("question 7")


async def test_tool_turns_keep_their_pairs_through_compaction(tmp_path: Path) -> None:
    """Turns with tool calls, compacted by Runner and by force, never orphan an output."""

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order's status."""
        return f"order {order_id} shipped"

    async with SQLiteSession("chat", tmp_path / "chats.db") as inner:
        session = CompactingSession(
            inner,
            summarizer=Agent(name="summariser", model=OfflineModel()),
            should_compact=lambda items: len(user_messages(items)) > 2,
            keep_last_turns=2,
            run_config=NO_TRACING,
        )
        agent = Agent(name="support", model=OfflineModel(), tools=[lookup_order])
        for n in range(5):
            await Runner.run(
                agent, f"lookup_order for order {n}", session=session, run_config=NO_TRACING
            )
        await session.compact(force=True)
        items = [cast(dict[str, Any], item) for item in await inner.get_items()]
        calls = {item["call_id"] for item in items if item.get("type") == "function_call"}
        outputs = {item["call_id"] for item in items if item.get("type") == "function_call_output"}
        assert outputs
        assert calls == outputs
        assert contents(cast(list[Item], items))[0].startswith(SUMMARY_PREFIX)
        assert user_messages(cast(list[Item], items))[-1] == "lookup_order for order 4"

"""run_durably: checkpoints at tool boundaries, a journal of finished tools, real approvals kept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from agents import RunHooks

from agent_sessions import PendingRunError, SQLiteSession
from agent_sessions.durable import TOOL_JOURNAL_STATE, run_durably
from agent_sessions.testing import Harness

from .child import TWO_TOOLS
from .kit import (
    RUN_CONFIG,
    assert_no_duplicates,
    escalate,
    executions,
    issue_refund,
    kinds,
    lookup_order,
    stored,
    support_agent,
)

TWO_TURN = [
    "user",
    "function_call",
    "function_call_output",
    "function_call",
    "function_call_output",
    "assistant",
]
"""The history of a whole two-tool turn."""


class Crash(Exception):
    """Stands for the process dying at a chosen point."""


class CrashAfterEscalation(RunHooks[Any]):
    """Dies at the model call that follows the escalate tool, once."""

    def __init__(self) -> None:
        self.armed = True

    async def on_llm_start(self, context: Any, agent: Any, *args: Any) -> None:
        """Raise Crash at the first model call after escalate finished."""
        if self.armed and executions(Path(os.environ["PENDING_RUNS_LOG"]), "escalate") == 1:
            self.armed = False
            raise Crash


@pytest.fixture(autouse=True)
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the tools append to, one line per execution."""
    path = tmp_path / "tools.log"
    monkeypatch.setenv("PENDING_RUNS_LOG", str(path))
    return path


async def test_a_durable_turn_completes_and_leaves_nothing_behind(
    harness: Harness, log: Path
) -> None:
    """Two checkpointed tools run once each; the checkpoint and the journal are gone afterwards."""
    session: Any = await harness.session("c")
    agent = support_agent(lookup_order, escalate)
    result = await run_durably(agent, TWO_TOOLS, session=session, run_config=RUN_CONFIG)
    assert "ticket T-7" in str(result.final_output)
    items = await session.get_items()
    assert kinds(items) == TWO_TURN
    assert_no_duplicates(items)
    assert executions(log, "lookup_order") == executions(log, "escalate") == 1
    assert await session.pending_run_info() is None
    assert await stored(session, TOOL_JOURNAL_STATE) is None


async def test_a_finished_tool_is_answered_from_the_journal_after_a_crash(
    harness: Harness, log: Path
) -> None:
    """Crashing after the last tool returned, the resumed turn does not run that tool again."""
    session: Any = await harness.session("c")
    agent = support_agent(lookup_order, escalate)
    with pytest.raises(Crash):
        await run_durably(
            agent, TWO_TOOLS, session=session, run_config=RUN_CONFIG, hooks=CrashAfterEscalation()
        )
    assert executions(log, "escalate") == 1
    result = await run_durably(agent, None, session=session, run_config=RUN_CONFIG)
    assert "ticket T-7" in str(result.final_output)
    assert executions(log, "lookup_order") == executions(log, "escalate") == 1
    items = await session.get_items()
    assert kinds(items) == TWO_TURN
    assert_no_duplicates(items)


async def test_a_tool_that_needs_a_human_still_stops_the_run(tmp_path: Path, log: Path) -> None:
    """needs_approval tools stop a durable run; approved on the stored run, it finishes once."""
    async with SQLiteSession("c", tmp_path / "d.db") as session:
        agent = support_agent(issue_refund)
        result = await run_durably(
            agent, "Please refund order 7", session=session, run_config=RUN_CONFIG
        )
        assert [i.tool_name for i in result.interruptions] == ["issue_refund"]
        assert executions(log, "issue_refund") == 0
        state = await session.load_pending_run(agent)
        assert state is not None
        for item in state.get_interruptions():
            state.approve(item)
        done = await run_durably(agent, state, session=session, run_config=RUN_CONFIG)
        assert "refund issued" in str(done.final_output)
        assert executions(log, "issue_refund") == 1
        assert kinds(await session.get_items()) == [
            "user",
            "function_call",
            "function_call_output",
            "assistant",
        ]
        assert await session.pending_run_info() is None


async def test_resuming_nothing_or_starting_over_a_stopped_run_is_refused(tmp_path: Path) -> None:
    """input=None needs a stored run; a new turn over a stored run raises instead of losing it."""
    async with SQLiteSession("c", tmp_path / "d.db") as session:
        agent = support_agent(issue_refund)
        with pytest.raises(PendingRunError, match="no run to resume"):
            await run_durably(agent, None, session=session, run_config=RUN_CONFIG)
        await run_durably(agent, "Please refund order 7", session=session, run_config=RUN_CONFIG)
        with pytest.raises(PendingRunError, match="holds a stopped run"):
            await run_durably(agent, "Hello", session=session, run_config=RUN_CONFIG)
        assert await session.pending_run_info() is not None

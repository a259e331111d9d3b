"""save_pending_run / load_pending_run / clear_pending_run on every backend of ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agents import Runner

from agent_sessions.pending_runs import PendingRuns
from agent_sessions.testing import Harness

from .kit import REFUND_REQUEST, RUN_CONFIG, assert_no_duplicates, executions, kinds, support_agent


async def _paused(h: Harness, session_id: str) -> Any:
    """Run the refund request until it stops for approval, and store the paused run."""
    session: Any = await h.session(session_id)
    assert isinstance(session, PendingRuns)
    result = await Runner.run(
        support_agent(), REFUND_REQUEST, session=session, run_config=RUN_CONFIG
    )
    assert [i.tool_name for i in result.interruptions] == ["issue_refund"]
    await session.save_pending_run(result.to_state())
    return session


async def test_approved_run_resumes_from_a_new_session_object(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run saved while paused is loaded by another object, approved, and completes once."""
    log = tmp_path / "tools.log"
    monkeypatch.setenv("PENDING_RUNS_LOG", str(log))
    await _paused(harness, "c1")
    session: Any = await harness.session("c1")
    info = await session.pending_run_info()
    assert info is not None
    assert info["agent"] == "Support"
    assert [a["tool_name"] for a in info["approvals"]] == ["issue_refund"]
    agent = support_agent()
    state = await session.load_pending_run(agent)
    assert state is not None
    for item in state.get_interruptions():
        state.approve(item)
    result = await Runner.run(agent, state, session=session, run_config=RUN_CONFIG)
    await session.clear_pending_run()
    assert "refund issued" in str(result.final_output)
    items = await session.get_items()
    assert kinds(items) == ["user", "function_call", "function_call_output", "assistant"]
    assert_no_duplicates(items)
    assert executions(log, "issue_refund") == 1
    assert await session.load_pending_run(agent) is None
    assert await session.pending_run_info() is None


async def test_rejected_run_completes_without_running_the_tool(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected call never runs; the model gets the rejection message as the call's output."""
    log = tmp_path / "tools.log"
    monkeypatch.setenv("PENDING_RUNS_LOG", str(log))
    session = await _paused(harness, "c2")
    agent = support_agent()
    state = await session.load_pending_run(agent)
    for item in state.get_interruptions():
        state.reject(item, rejection_message="Refund refused by a supervisor.")
    result = await Runner.run(agent, state, session=session, run_config=RUN_CONFIG)
    assert "Refund refused by a supervisor." in str(result.final_output)
    items = await session.get_items()
    assert kinds(items) == ["user", "function_call", "function_call_output", "assistant"]
    assert_no_duplicates(items)
    assert executions(log, "issue_refund") == 0


async def test_pending_runs_are_per_session(harness: Harness) -> None:
    """A paused run stored for one session is invisible to another session of the database."""
    await _paused(harness, "alice")
    other: Any = await harness.session("bob")
    assert await other.load_pending_run(support_agent()) is None
    alice: Any = await harness.session("alice")
    assert await alice.pending_run_info() is not None


async def test_clear_session_forgets_the_pending_run(harness: Harness) -> None:
    """Starting the conversation over removes its paused run too."""
    session = await _paused(harness, "c3")
    await session.clear_session()
    assert await session.load_pending_run(support_agent()) is None

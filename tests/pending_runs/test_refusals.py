"""What a stored paused run refuses to be: resumed by another agent, a newer format, a forgery."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, handoff

from agent_sessions import (
    CorruptItemError,
    DecryptionError,
    EncryptedSession,
    PendingRunError,
    SQLiteSession,
)
from agent_sessions.pending_runs import PENDING_RUN_STATE, agent_graph_names

from .kit import REFUND_REQUEST, RUN_CONFIG, store, stored, support_agent

KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="


async def _saved(session: Any) -> None:
    result = await Runner.run(
        support_agent(), REFUND_REQUEST, session=session, run_config=RUN_CONFIG
    )
    await session.save_pending_run(result.to_state())


async def test_another_agent_graph_is_refused_and_the_run_kept(tmp_path: Path) -> None:
    """Loading with an agent graph that lacks the paused agent raises, and keeps the run stored."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await _saved(session)
        with pytest.raises(PendingRunError, match=r"paused in agent 'Support'.*'Billing'"):
            await session.load_pending_run(support_agent(name="Billing"))
        assert await session.load_pending_run(support_agent()) is not None


async def test_a_graph_reaching_the_paused_agent_by_handoff_is_accepted(tmp_path: Path) -> None:
    """A triage agent that hands off to the paused agent may resume it."""
    support = support_agent()
    triage = Agent(name="Triage", handoffs=[handoff(support)])
    assert agent_graph_names(triage) == {"Triage", "Support"}
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await _saved(session)
        assert await session.load_pending_run(Agent(name="Triage", handoffs=[support])) is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "saved in format 2 by a newer agent_sessions"),
        ({"sdk_schema": "9.0"}, "run state schema is '9.0'.*Upgrade openai-agents"),
    ],
)
async def test_a_newer_format_or_sdk_schema_is_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """A run saved by a newer package or SDK raises a clear error instead of a half resume."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await _saved(session)
        envelope = await stored(session, PENDING_RUN_STATE)
        await store(session, PENDING_RUN_STATE, {**envelope, **change})
        with pytest.raises(PendingRunError, match=message):
            await session.load_pending_run(support_agent())
        with pytest.raises(PendingRunError):
            await session.pending_run_info()


@pytest.mark.parametrize("value", [["not", "an", "envelope"], {"format": 1, "run": {}}])
async def test_a_foreign_value_is_corrupt_and_stays_stored(tmp_path: Path, value: Any) -> None:
    """A value that is not our envelope raises CorruptItemError and is not deleted."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await store(session, PENDING_RUN_STATE, value)
        with pytest.raises(CorruptItemError, match="pending run"):
            await session.load_pending_run(support_agent())
        assert await stored(session, PENDING_RUN_STATE) == value


async def test_a_state_the_sdk_refuses_is_a_pending_run_error(tmp_path: Path) -> None:
    """A broken SDK state in our envelope raises PendingRunError, the SDK's error as cause."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await _saved(session)
        envelope = await stored(session, PENDING_RUN_STATE)
        await store(session, PENDING_RUN_STATE, {**envelope, "run": {"$schemaVersion": "1.21"}})
        with pytest.raises(PendingRunError, match="cannot be rebuilt") as caught:
            await session.load_pending_run(support_agent())
        assert caught.value.__cause__ is not None


async def test_saving_something_else_writes_nothing(tmp_path: Path) -> None:
    """save_pending_run refuses a non-RunState (a RunResult, say) before anything is written."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        result = await Runner.run(
            support_agent(), REFUND_REQUEST, session=session, run_config=RUN_CONFIG
        )
        with pytest.raises(TypeError, match=r"result\.to_state\(\)"):
            await session.save_pending_run(result)
        assert await session.pending_run_info() is None


async def test_saving_again_replaces_the_stored_run(tmp_path: Path) -> None:
    """Only the latest paused run of a session is kept."""
    async with SQLiteSession("c", tmp_path / "a.db") as session:
        await _saved(session)
        first = await session.pending_run_info()
        await _saved(session)
        second = await session.pending_run_info()
        assert first is not None
        assert second is not None
        assert second["saved_at"] >= first["saved_at"]
        assert second["approvals"][0]["call_id"] != first["approvals"][0]["call_id"]


def _state_text(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute(
            "SELECT value FROM agent_messages_state WHERE name = ?", (PENDING_RUN_STATE,)
        ).fetchone()
    conn.close()
    return str(text)


def _tamper(path: Path) -> None:
    text = _state_text(path)
    middle = len(text) // 2
    flipped = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agent_messages_state SET value = ?", (flipped,))
    conn.close()


async def test_encrypted_pending_run_is_sealed_at_rest(tmp_path: Path) -> None:
    """Under EncryptedSession the stored run names neither the tool nor the customer's words."""
    path = tmp_path / "e.db"
    async with EncryptedSession("c", SQLiteSession("c", path), KEY) as session:
        await _saved(session)
        text = _state_text(path)
        assert "issue_refund" not in text
        assert "refund" not in text.lower()
        state = await session.load_pending_run(support_agent())
        assert state is not None
        assert len(state.get_interruptions()) == 1


async def test_a_tampered_encrypted_run_is_never_returned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sealed run altered at rest raises in strict mode, is skipped with a warning otherwise."""
    path = tmp_path / "e.db"
    async with EncryptedSession("c", SQLiteSession("c", path), KEY) as session:
        await _saved(session)
    _tamper(path)
    async with EncryptedSession("c", SQLiteSession("c", path), KEY, strict=True) as strict:
        with pytest.raises(DecryptionError):
            await strict.load_pending_run(support_agent())
    async with EncryptedSession("c", SQLiteSession("c", path), KEY) as lenient:
        with caplog.at_level(logging.WARNING):
            assert await lenient.load_pending_run(support_agent()) is None
        assert caplog.records
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agent_messages_state").fetchone() == (1,)
    conn.close()


async def test_a_run_copied_to_another_session_does_not_open(tmp_path: Path) -> None:
    """A sealed run copied into another session's row is refused: the session id is bound in."""
    path = tmp_path / "e.db"
    async with EncryptedSession("a", SQLiteSession("a", path), KEY) as session:
        await _saved(session)
    async with EncryptedSession("b", SQLiteSession("b", path), KEY) as other:
        await store(other, "x", 1)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE agent_messages_state SET value = (SELECT value FROM agent_messages_state "
            "WHERE session_id = 'a'), name = ? WHERE session_id = 'b'",
            (PENDING_RUN_STATE,),
        )
    conn.close()
    async with EncryptedSession("b", SQLiteSession("b", path), KEY, strict=True) as other:
        with pytest.raises(DecryptionError):
            await other.load_pending_run(support_agent())

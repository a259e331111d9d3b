"""A child process for the crash tests: ``python -m tests.pending_runs.child PHASE DB SESSION``.

Phases: ``pause`` runs the refund request until it waits for approval, saves it, prints
WAITING and sleeps (the parent kills it); ``approve`` / ``reject`` load the stored run, decide,
finish it and print the history as JSON; ``durable`` runs a two-tool turn with ``run_durably``
(the parent kills it inside the slow second tool); ``resume`` resumes it after the crash;
``plain`` runs the same turn with ``Runner.run`` only (to measure what the SDK keeps).
DB is a SQLite file path or a SQLAlchemy URL (tables from $PENDING_RUNS_TABLES, "s,m").
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from agents import Runner

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.durable import run_durably

from .kit import REFUND_REQUEST, RUN_CONFIG, escalate, lookup_order, support_agent

TWO_TOOLS = "Please lookup order 42, then escalate it"
"""A turn the offline model answers with lookup_order, then escalate, then a message."""


def _open(db: str, session_id: str) -> Any:
    if "://" not in db:
        return SQLiteSession(session_id, db)
    sessions, messages = os.environ["PENDING_RUNS_TABLES"].split(",")
    return SQLAlchemySession.from_url(
        session_id, url=db, create_tables=True, sessions_table=sessions, messages_table=messages
    )


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(phase: str, db: str, session_id: str) -> None:
    """Run one phase against the session ``session_id`` of ``db``."""
    session = _open(db, session_id)
    refund = support_agent()
    two = support_agent(lookup_order, escalate)
    if phase == "pause":
        result = await Runner.run(refund, REFUND_REQUEST, session=session, run_config=RUN_CONFIG)
        await session.save_pending_run(result.to_state())
        _say("WAITING")
        await asyncio.sleep(600)
    elif phase in ("approve", "reject"):
        state = await session.load_pending_run(refund)
        for item in state.get_interruptions():
            if phase == "approve":
                state.approve(item)
            else:
                state.reject(item, rejection_message="Refund refused by a supervisor.")
        result = await Runner.run(refund, state, session=session, run_config=RUN_CONFIG)
        await session.clear_pending_run()
    elif phase == "durable":
        result = await run_durably(two, TWO_TOOLS, session=session, run_config=RUN_CONFIG)
    elif phase == "resume":
        result = await run_durably(two, None, session=session, run_config=RUN_CONFIG)
    elif phase == "plain":
        result = await Runner.run(two, TWO_TOOLS, session=session, run_config=RUN_CONFIG)
    else:
        raise SystemExit(f"unknown phase {phase}")
    items = await session.get_items()
    _say(json.dumps({"final": str(result.final_output), "items": items}))
    await session.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

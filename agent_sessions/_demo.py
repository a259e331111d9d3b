"""The ``agent-sessions demo`` conversation: remembered across a restart, offline by default."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agents import Agent, RunConfig, Runner, function_tool

from .backends.sqlite import SQLiteSession
from .offline import resolve_model

__all__ = ["run_demo"]

SESSION_ID = "demo"


@function_tool
def get_weather(city: str) -> str:
    """Return today's weather for a city (a fixed answer, so the demo is repeatable)."""
    return f"Sunny and 21 °C in {city}."


def _agent() -> Agent[None]:
    return Agent(
        name="assistant",
        instructions="You are a helpful assistant. Answer briefly.",
        model=resolve_model(),
        tools=[get_weather],
    )


async def _turn(
    session: SQLiteSession, agent: Agent[None], text: str, out: Callable[[str], None]
) -> None:
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    out(f"  you   > {text}")
    out(f"  agent > {result.final_output}")


async def run_demo(db_path: Path, out: Callable[[str], None] = print) -> int:
    """Hold a short conversation, reopen the database in a new session object, and continue.

    Args:
        db_path: The SQLite file to use; the demo's session in it is cleared first.
        out: Where to print each line.

    Returns:
        The number of items stored at the end.
    """
    model = "OpenAI (OPENAI_API_KEY is set)" if os.environ.get("OPENAI_API_KEY") else "offline"
    out(f"agent-sessions demo: {model} model, SQLite file {db_path}")
    agent = _agent()
    out("\n1. First conversation, in one SQLiteSession object")
    async with SQLiteSession(SESSION_ID, db_path) as session:
        await session.clear_session()
        await _turn(session, agent, "Hi! My name is Ada.", out)
        await _turn(session, agent, "What is the weather in Paris?", out)
        stored = len(await session.get_items())
    out(f"   ...session closed with {stored} items stored.")

    out("\n2. A brand-new SQLiteSession object on the same file (as after a restart)")
    async with SQLiteSession(SESSION_ID, db_path) as session:
        await _turn(session, agent, "What is my name?", out)
        await _turn(session, agent, "How many messages have I sent?", out)
        items = await session.get_items()
    kinds = ", ".join(sorted({str(i.get("role") or i.get("type")) for i in items}))
    out(f"\nThe agent remembered. {len(items)} items are stored in {db_path} ({kinds}).")
    out("Use the same class in your code: `from agent_sessions import SQLiteSession`.")
    return len(items)

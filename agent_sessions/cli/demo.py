"""The ``agent-sessions demo`` conversation: remembered across a restart, offline by default."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import openai
from agents import Agent, RunConfig, Runner, function_tool, set_trace_processors

from ..admin.text import printable
from ..backends.sqlite import SQLiteSession
from ..offline import OfflineModel, resolve_model

__all__ = ["is_online", "make_agent", "model_failure", "quiet_sdk_logs", "run_demo"]

SESSION_ID = "demo"


@function_tool
def get_weather(city: str) -> str:
    """Return today's weather for a city (a fixed answer, so the demo is repeatable)."""
    return f"Sunny and 21 °C in {city}."


def is_online(offline: bool = False) -> bool:
    """Whether the agent talks to OpenAI: a key is set and ``--offline`` was not given."""
    return not offline and bool(os.environ.get("OPENAI_API_KEY"))


def make_agent(offline: bool = False) -> Agent[None]:
    """The demo's assistant, on OpenAI or (offline, or without a key) the local model."""
    return Agent(
        name="assistant",
        instructions="You are a helpful assistant. Answer briefly.",
        model=resolve_model() if is_online(offline) else OfflineModel(),
        tools=[get_weather],
    )


def quiet_sdk_logs() -> None:
    """Keep the SDK's own log lines off the terminal: the CLI reports failures itself."""
    logging.getLogger("openai.agents").addHandler(logging.NullHandler())


def model_failure(exc: BaseException) -> str | None:
    """The one-line report of a failed call to OpenAI, or None if ``exc`` is not one.

    The traces of the failed run are dropped, so exiting does not retry sending them.
    """
    if not isinstance(exc, openai.APIError):
        return None
    set_trace_processors([])
    what = "reach" if isinstance(exc, openai.APIConnectionError) else "use"
    reason = " ".join(str(exc).split())[:200]
    return (
        f"cannot {what} the OpenAI model ({type(exc).__name__}: {reason}); "
        "--offline forces the local model"
    )


async def _turn(
    session: SQLiteSession, agent: Agent[None], text: str, out: Callable[[str], None]
) -> None:
    online = not isinstance(agent.model, OfflineModel)
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    out(f"  you   > {text}")
    out(f"  agent > {printable(str(result.final_output))}")


async def run_demo(
    db_path: Path, out: Callable[[str], None] = print, *, offline: bool = False
) -> int:
    """Hold a short conversation, reopen the database in a new session object, and continue.

    Args:
        db_path: The SQLite file to use; the demo's session in it is cleared first.
        out: Where to print each line.
        offline: Use the local model even when ``OPENAI_API_KEY`` is set.

    Returns:
        The number of items stored at the end.

    Raises:
        openai.APIError: the OpenAI model could not be reached or refused the request.
    """
    model = "OpenAI (OPENAI_API_KEY is set)" if is_online(offline) else "offline"
    out(f"agent-sessions demo: {model} model, SQLite file {db_path}")
    agent = make_agent(offline)
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

"""A branch tree with everything an advanced session can record, and what it reads back.

:func:`grow_tree` drives one advanced session (either class) through real runs of the offline
model: usage stored from each ``RunResult``, branches of branches, pops on a branch that reach
into what it inherits (while a fork inherits from it), a rewind, a deleted branch with a fork of
its own. :func:`observe` reads back everything the session reports, branch by branch, so two
databases holding the same tree compare equal.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents import Agent, RunConfig, Runner, function_tool
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.offline import OfflineModel
from tests.conftest import require_server
from tests.sql_servers import SERVERS, drop_tables, unique_tables

AdvancedSession = AdvancedSQLiteSession | AdvancedSQLAlchemySession
RUN = RunConfig(tracing_disabled=True)


@function_tool
def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"Sunny and 21 C in {city}."


AGENT = Agent(name="assistant", model=OfflineModel(), tools=[get_weather])


async def ask(session: AdvancedSession, text: str) -> None:
    """One real run on the session, its usage stored."""
    result = await Runner.run(AGENT, text, session=session, run_config=RUN)
    await session.store_run_usage(result)


async def grow_tree(session: AdvancedSession) -> None:
    """Branches of branches, pops into inherited items, a rewind, a deleted branch, usage."""
    for text in ("My name is Ada.", "What is the weather in Paris?", "What is my name?"):
        await ask(session, text)
    await session.create_branch_from_turn(2, "retry")  # main's turn 1 inherited
    await ask(session, "What is the weather in Köln?")  # a tool call on the branch
    await ask(session, "How many messages have I sent?")
    await session.create_branch_from_turn(3, "deeper")  # a branch of a branch
    await ask(session, "Say hello")
    await session.switch_to_branch("retry")
    for _ in range(7):  # retry's own six items, then one it inherits from main
        assert await session.pop_item() is not None
    await ask(session, "Tell me a joke")
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(1, "doomed")
    await ask(session, "Start over")
    await session.create_branch_from_turn(1, "orphan")  # a fork of the branch deleted below
    await ask(session, "Another start")
    await session.switch_to_branch("main")
    await session.delete_branch("doomed")
    await session.rewind(turn=3, keep_as="kept")  # main drops its turn 3; "kept" holds it
    await session.switch_to_branch("deeper")


async def observe(session: AdvancedSession) -> dict[str, Any]:
    """Everything the session reports, for each branch and for the whole session."""
    branches = await session.list_branches()
    seen: dict[str, Any] = {
        "branches": branches,
        "current": await session.current_branch(),
        "usage": await session.get_session_usage(),
        "items": await session.get_items(),
    }
    for branch in (b["branch_id"] for b in branches):
        seen[f"branch {branch}"] = {
            "items": await session.get_items(branch_id=branch),
            "turns": await session.get_conversation_turns(branch),
            "by_turns": await session.get_conversation_by_turns(branch),
            "tools": await session.get_tool_usage(branch),
            "turn_usage": await session.get_turn_usage(branch_id=branch),
            "usage": await session.get_session_usage(branch_id=branch),
        }
    return seen


def to_seconds(value: Any) -> Any:
    """``value`` with every timestamp text cut to whole seconds.

    ``AdvancedSQLAlchemySession`` shows times to the second on every database; a SQLite file
    shows what is stored, and times copied from PostgreSQL carry microseconds.
    """
    if isinstance(value, dict):
        return {key: to_seconds(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_seconds(item) for item in value]
    if isinstance(value, str) and len(value) == 26 and value[19] == "." and value[4] == "-":
        return value[:19]
    return value


class ServerTables:
    """Fresh tables on a database server, dropped at the end."""

    def __init__(self, kind: str) -> None:
        name, port, url = SERVERS[kind]
        require_server(name, "127.0.0.1", port)
        self.url = url
        self.sessions, self.messages = unique_tables()

    def session(self, session_id: str, *, create: bool = False) -> AdvancedSQLAlchemySession:
        """An advanced session on these tables."""
        return AdvancedSQLAlchemySession.from_url(
            session_id,
            url=self.url,
            create_tables=create,
            sessions_table=self.sessions,
            messages_table=self.messages,
        )

    async def drop(self) -> None:
        """Drop the tables and the branch tables."""
        engine = create_async_engine(self.url)
        try:
            await drop_tables(engine, self.sessions, self.messages)
        finally:
            await engine.dispose()


@asynccontextmanager
async def server_tables(kind: str) -> AsyncIterator[ServerTables]:
    """Fresh tables on the server of ``kind`` (``postgres``, ``mariadb``), dropped after."""
    tables = ServerTables(kind)
    try:
        yield tables
    finally:
        await tables.drop()


def new_id() -> str:
    """A session id no other test uses."""
    return f"tree-{uuid.uuid4().hex[:8]}"

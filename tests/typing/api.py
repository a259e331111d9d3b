"""Typical use of the public API, type-checked by ``mypy --strict`` and never run.

A change that breaks these lines for a type checker breaks them for users too.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

from agents import Agent, RunConfig, Runner, RunResult
from agents.items import TResponseInputItem
from agents.memory import Session, SessionABC, SessionSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_sessions import (
    AgentSessionsError,
    ItemValidationError,
    SessionState,
    SQLAlchemySession,
    SQLiteSession,
    SQLiteStore,
    StoreSession,
)
from agent_sessions.testing import CHECKS, Check, DictStore, Harness, run_all


async def conversation() -> None:
    """Construct, read, write, pop and clear exactly as with the SDK's ``SQLiteSession``."""
    session = SQLiteSession("user-42", "chats.db", session_settings=SessionSettings(limit=10))
    async with session:
        history: list[TResponseInputItem] = await session.get_items(limit=5)
        everything = await session.get_items()
        assert_type(everything, list[TResponseInputItem])
        await session.add_items(history)
        await session.add_items([{"role": "user", "content": "Hello"}])
        newest: TResponseInputItem | None = await session.pop_item()
        assert_type(await session.pop_item(), TResponseInputItem | None)
        if newest is not None:
            await session.add_items([newest])
        await session.clear_session()
    assert_type(session.state, SessionState)
    session.close()


async def context_manager_keeps_the_type(path: Path) -> None:
    """``async with`` yields the session class itself, not a base class."""
    async with SQLiteSession("user-42", path, "sessions", "messages") as session:
        assert_type(session, SQLiteSession)
        assert_type(session.session_id, str)
    await session.aclose()


async def with_the_runner() -> str:
    """Pass the session to ``Runner.run`` like any SDK session."""
    agent = Agent(name="assistant", instructions="Be brief.")
    session = SQLiteSession("user-42", "chats.db")
    try:
        result = await Runner.run(
            agent, "Hi, I'm Ada", session=session, run_config=RunConfig(tracing_disabled=True)
        )
        assert_type(result, RunResult)
        return str(result.final_output)
    finally:
        session.close()


def is_a_session(session: SQLiteSession) -> Session:
    """Our session satisfies the SDK's protocol structurally."""
    return session


async def errors() -> None:
    """Misuse errors are catchable as the built-in and as our base class."""
    session = SQLiteSession("user-42")
    try:
        await session.add_items([])
    except ItemValidationError as exc:
        assert_type(exc.index, int)
    except AgentSessionsError:
        pass
    finally:
        await session.aclose()


async def conformance(tmp: Path) -> dict[str, BaseException | None]:
    """Run the conformance suite over our SQLite session and the in-memory reference store."""
    checks: list[Check] = CHECKS
    harness = Harness(name="sqlite", open=lambda sid: SQLiteSession(sid, tmp / "conformance.db"))
    for check in checks:
        await check(harness)
        await harness.close_all()
    store = DictStore()
    memory = Harness(
        name="memory",
        open=lambda sid: StoreSession(sid, store, owns_store=False),
        write_raw=store.write_raw,
        count_rows=store.count_rows,
    )
    opened = await memory.session("s")
    assert_type(opened, Session)
    await memory.close_session(opened)
    return await run_all(memory)


async def shared_store(path: Path) -> None:
    """Sessions of one ``SQLiteStore`` are ``SQLiteSession`` objects."""
    async with SQLiteStore(path) as store:
        session = store.session("user-42", session_settings={"limit": 20})
        assert_type(session, SQLiteSession)
        await session.add_items([{"role": "user", "content": "Hi"}])


async def on_postgres(engine: AsyncEngine) -> None:
    """``SQLAlchemySession`` has the SDK's constructor and ``from_url``, and an async close."""
    session = SQLAlchemySession("user-42", engine=engine, create_tables=True)
    assert_type(await session.get_items(3), list[TResponseInputItem])
    await session.close()
    async with SQLAlchemySession.from_url(
        "user-42", url="postgresql+asyncpg://app@db/agents", engine_kwargs={"pool_size": 20}
    ) as owned:
        assert_type(owned, SQLAlchemySession)
        assert_type(owned.engine, AsyncEngine)
        await owned.add_items([{"role": "user", "content": "Hi"}])


def close_without_await(path: Path) -> None:
    """A SQLite session closes when ``close()`` is merely called, as the SDK's does."""
    session = SQLiteSession("user-42", path)
    session.close()


async def close_either_way(path: Path, engine: AsyncEngine) -> None:
    """``close()`` may be awaited on every class; every class is a ``SessionABC``."""
    sqlite: SessionABC = SQLiteSession("user-42", path)
    await SQLiteSession("user-42", path).close()
    await SQLAlchemySession("user-42", engine=engine).close()
    assert isinstance(sqlite, Session)

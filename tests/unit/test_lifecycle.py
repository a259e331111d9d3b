"""One lifecycle on every session class: ``close()`` called or awaited, ``aclose()``, SessionABC."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.memory import Session, SessionABC

from agent_sessions import (
    AdvancedSQLiteSession,
    EncryptedSession,
    SessionClosedError,
    SessionState,
    SQLAlchemySession,
    SQLiteSession,
    SQLiteStore,
)

KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="
ITEM: Any = {"role": "user", "content": "hi"}


def _sqlite(path: Path) -> Any:
    return SQLiteSession("s", path / "a.db")


def _shared_store(path: Path) -> Any:
    # The session does not own the store: closing it leaves the store to its owner (the
    # ``release`` fixture here).
    return SQLiteStore(path / "a.db").session("s")


def _advanced(path: Path) -> Any:
    return AdvancedSQLiteSession(session_id="s", db_path=path / "a.db", create_tables=True)


def _sqlalchemy(path: Path) -> Any:
    url = f"sqlite+aiosqlite:///{path / 'a.db'}"
    return SQLAlchemySession.from_url("s", url=url, create_tables=True)


def _encrypted_sqlite(path: Path) -> Any:
    return EncryptedSession("s", _sqlite(path), KEY)


def _encrypted_sqlalchemy(path: Path) -> Any:
    return EncryptedSession("s", _sqlalchemy(path), KEY)


SYNC_CLOSERS: dict[str, Callable[[Path], Any]] = {
    "sqlite": _sqlite,
    "sqlite-store-session": _shared_store,
    "advanced": _advanced,
    "encrypted-sqlite": _encrypted_sqlite,
}
"""Classes whose closing is synchronous work: ``close()`` needs no ``await`` (like the SDK's)."""

ASYNC_CLOSERS: dict[str, Callable[[Path], Any]] = {
    "sqlalchemy": _sqlalchemy,
    "encrypted-sqlalchemy": _encrypted_sqlalchemy,
}
"""Classes whose closing is asynchronous work (an engine to dispose of)."""

EVERY_CLASS = {**SYNC_CLOSERS, **ASYNC_CLOSERS}


@pytest.fixture
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[Path], Any]]:
    """The parametrized factory; shared stores its sessions were opened on are closed after."""
    build: Callable[[Path], Any] = request.param
    sessions: list[Any] = []

    def opened(path: Path) -> Any:
        sessions.append(build(path))
        return sessions[-1]

    yield opened
    for session in sessions:
        if isinstance(session, SQLiteSession) and isinstance(session.store, SQLiteStore):
            session.store.close()  # idempotent; the shared store of SQLiteStore.session


@pytest.mark.parametrize("make", EVERY_CLASS.values(), ids=EVERY_CLASS.keys(), indirect=True)
async def test_awaited_close_closes_every_class(
    make: Callable[[Path], Any], tmp_path: Path
) -> None:
    """``await session.close()`` closes any class, and later calls name the closed method."""
    session = make(tmp_path)
    await session.add_items([ITEM])
    await session.close()
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError, match="get_items"):
        await session.get_items()
    await session.close()  # idempotent, awaited or not
    await session.aclose()


@pytest.mark.parametrize("make", EVERY_CLASS.values(), ids=EVERY_CLASS.keys(), indirect=True)
async def test_aclose_and_async_with_close_every_class(
    make: Callable[[Path], Any], tmp_path: Path
) -> None:
    """Every class has ``aclose()`` and closes at the end of ``async with``."""
    async with make(tmp_path) as session:
        await session.add_items([ITEM])
    assert session.state is SessionState.CLOSED
    await session.aclose()
    again = make(tmp_path)
    assert await again.get_items() == [ITEM]
    await again.aclose()
    assert again.state is SessionState.CLOSED


@pytest.mark.parametrize("make", SYNC_CLOSERS.values(), ids=SYNC_CLOSERS.keys(), indirect=True)
def test_called_close_needs_no_event_loop(make: Callable[[Path], Any], tmp_path: Path) -> None:
    """``session.close()`` outside any event loop closes a SQLite-based class at once."""
    session = make(tmp_path)
    asyncio.run(session.add_items([ITEM]))
    result = session.close()
    assert inspect.isawaitable(result)
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError):
        asyncio.run(session.get_items())
    asyncio.run(_await(result))  # what close() returned can still be awaited


async def _await(closing: Awaitable[None]) -> None:
    await closing


@pytest.mark.parametrize("make", ASYNC_CLOSERS.values(), ids=ASYNC_CLOSERS.keys(), indirect=True)
async def test_called_close_starts_asynchronous_closing(
    make: Callable[[Path], Any], tmp_path: Path
) -> None:
    """On a loop, ``close()`` without ``await`` closes the session at once and its engine soon."""
    session = make(tmp_path)
    await session.add_items([ITEM])
    closing = session.close()
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosedError):
        await session.add_items([ITEM])
    await closing


@pytest.mark.parametrize("make", ASYNC_CLOSERS.values(), ids=ASYNC_CLOSERS.keys(), indirect=True)
def test_called_close_without_a_loop_names_aclose(
    make: Callable[[Path], Any], tmp_path: Path
) -> None:
    """Outside a loop, asynchronous closing raises ``RuntimeError`` naming ``aclose()``."""
    session = make(tmp_path)
    with pytest.raises(RuntimeError, match=r"await session\.aclose\(\)"):
        session.close()
    asyncio.run(session.aclose())
    assert session.state is SessionState.CLOSED


@pytest.mark.parametrize("make", EVERY_CLASS.values(), ids=EVERY_CLASS.keys(), indirect=True)
async def test_every_class_is_a_session_abc(make: Callable[[Path], Any], tmp_path: Path) -> None:
    """Every session class is an ``agents.memory.SessionABC`` and satisfies ``Session``."""
    async with make(tmp_path) as session:
        assert isinstance(session, SessionABC)
        assert isinstance(session, Session)
        assert issubclass(type(session), SessionABC)

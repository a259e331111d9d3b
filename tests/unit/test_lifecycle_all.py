"""One close() semantics across every class of ours: close(), aclose(), async with, after close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from agent_sessions import (
    AdvancedSQLAlchemySession,
    AdvancedSQLiteSession,
    AsyncSQLiteSession,
    CompactingSession,
    EncryptedSession,
    MemoryStore,
    RedisSession,
    SQLAlchemySession,
    SQLiteSession,
)
from agent_sessions.errors import SessionClosedError
from tests.redis_server import redis_url
from tests.sql_servers import database_url

KEY = Fernet.generate_key().decode()


async def _summarize(items: list[Any]) -> list[Any]:
    return items[:1]


def _aiosqlite(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


Maker = Callable[[Path], Any]
MAKERS: dict[str, Maker] = {
    "SQLiteSession": lambda d: SQLiteSession("s", d / "a.db"),
    "AsyncSQLiteSession": lambda d: AsyncSQLiteSession("s", d / "a.db"),
    "AdvancedSQLiteSession": lambda d: AdvancedSQLiteSession(session_id="s", db_path=d / "a.db"),
    "SQLAlchemySession": lambda d: SQLAlchemySession.from_url(
        "s", url=_aiosqlite(d / "a.db"), create_tables=True
    ),
    "AdvancedSQLAlchemySession": lambda d: AdvancedSQLAlchemySession.from_url(
        "s", url=_aiosqlite(d / "a.db"), create_tables=True
    ),
    "SQLAlchemySession/postgres": lambda d: SQLAlchemySession.from_url(
        "s", url=database_url("postgres", d)
    ),
    "AdvancedSQLAlchemySession/mariadb": lambda d: AdvancedSQLAlchemySession.from_url(
        "s", url=database_url("mariadb", d)
    ),
    "EncryptedSession/postgres": lambda d: EncryptedSession(
        "s", SQLAlchemySession.from_url("s", url=database_url("postgres", d)), KEY
    ),
    "EncryptedSession": lambda d: EncryptedSession("s", SQLiteSession("s", d / "a.db"), KEY),
    "RedisSession": lambda d: RedisSession.from_url("s", url=redis_url()),
    "CompactingSession": lambda d: CompactingSession(
        SQLiteSession("s", d / "a.db"), summarizer=_summarize
    ),
    "MemoryStore": lambda d: MemoryStore(d / "m.db"),
}
_MARKS = {"RedisSession": pytest.mark.redis}
CLASSES = [
    pytest.param(
        name, marks=_MARKS.get(name, getattr(pytest.mark, name.partition("/")[2] or "sqlite"))
    )
    for name in MAKERS
]
SYNC_CLOSE = [
    "SQLiteSession",
    "AsyncSQLiteSession",
    "AdvancedSQLiteSession",
    "EncryptedSession",
    "CompactingSession",
    "MemoryStore",
]
"""Classes over SQLite files: close() finishes at once, even with no event loop running."""


def _a_method(resource: Any) -> tuple[str, Callable[[], Awaitable[Any]]]:
    """A read the resource offers, and its name."""
    if isinstance(resource, MemoryStore):
        return "get", lambda: resource.get(("user",), "k")
    return "get_items", resource.get_items


@pytest.mark.parametrize("name", CLASSES)
async def test_async_with_returns_the_object_and_closes_it(name: str, tmp_path: Path) -> None:
    """``async with`` yields the object; a method after the block raises SessionClosedError."""
    resource = MAKERS[name](tmp_path)
    async with resource as entered:
        assert entered is resource
    method, call = _a_method(resource)
    with pytest.raises(SessionClosedError, match=rf"{method}\(\)"):
        await call()


@pytest.mark.parametrize("name", CLASSES)
async def test_close_and_aclose_are_idempotent_in_any_order(name: str, tmp_path: Path) -> None:
    """close() (awaited or not), aclose() and close() again all succeed on a closed object."""
    resource = MAKERS[name](tmp_path)
    closing = resource.close()
    await closing
    await resource.aclose()
    await resource.close()
    resource.close()
    method, call = _a_method(resource)
    with pytest.raises(SessionClosedError, match=rf"{method}\(\)"):
        await call()


@pytest.mark.parametrize("name", SYNC_CLOSE)
def test_close_without_an_event_loop_on_sqlite(name: str, tmp_path: Path) -> None:
    """Over a SQLite file close() finishes at once outside any event loop, and is idempotent."""
    resource = MAKERS[name](tmp_path)
    assert resource.close().done()
    assert resource.close().done()
    _, call = _a_method(resource)
    with pytest.raises(SessionClosedError):
        asyncio.run(call())  # type: ignore[arg-type]


def test_sqlalchemy_close_without_an_event_loop_says_to_await_aclose(tmp_path: Path) -> None:
    """A SQLAlchemy session's close() outside a loop raises RuntimeError naming aclose()."""
    session = MAKERS["SQLAlchemySession"](tmp_path)
    with pytest.raises(RuntimeError, match=r"aclose\(\)"):
        session.close()
    asyncio.run(session.aclose())

"""``ping()``: a health check on every server-backed session, True, False, or closed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from agent_sessions import (
    AdvancedSQLAlchemySession,
    EncryptedSession,
    RedisSession,
    SQLAlchemySession,
    SQLiteSession,
)
from agent_sessions.errors import SessionClosedError
from tests.redis_server import redis_url
from tests.sql_servers import KINDS, database_url

SQL_CLASSES = [SQLAlchemySession, AdvancedSQLAlchemySession]
UNREACHABLE = {
    "postgres": "postgresql+asyncpg://postgres@127.0.0.1:1/test",
    "mariadb": "mysql+aiomysql://root@127.0.0.1:1/test",
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cls", SQL_CLASSES)
async def test_ping_is_true_on_a_live_database(
    kind: str, cls: type[SQLAlchemySession], tmp_path: Path
) -> None:
    """ping() returns True when SELECT 1 round-trips on the database."""
    session = cls.from_url("s", url=database_url(kind, tmp_path))
    async with session:
        assert await session.ping() is True


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
@pytest.mark.parametrize("cls", SQL_CLASSES)
async def test_ping_is_false_on_an_unreachable_port(
    kind: str, cls: type[SQLAlchemySession]
) -> None:
    """ping() returns False, without raising, when nothing listens on the port."""
    async with cls.from_url("s", url=UNREACHABLE[kind]) as session:
        assert await session.ping() is False


async def test_ping_is_false_when_the_server_does_not_answer_in_time(tmp_path: Path) -> None:
    """ping() returns False after ``within`` seconds when the server accepts but never replies."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers; closed below

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
        async with SQLAlchemySession.from_url("s", url=url) as session:
            assert await session.ping(within=0.3) is False
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("cls", SQL_CLASSES)
async def test_ping_after_close_raises_session_closed(
    cls: type[SQLAlchemySession], tmp_path: Path
) -> None:
    """ping() after close raises SessionClosedError naming ping."""
    session = cls.from_url("s", url=database_url("sqlite", tmp_path))
    await session.aclose()
    with pytest.raises(SessionClosedError, match=r"ping\(\)"):
        await session.ping()


@pytest.mark.redis
async def test_redis_ping_true_then_false_on_unreachable_port() -> None:
    """RedisSession.ping() is True on the server and False on a port nothing listens on."""
    async with RedisSession.from_url("s", url=redis_url()) as live:
        assert await live.ping() is True
    async with RedisSession.from_url("s", url="redis://127.0.0.1:1/0") as dead:
        assert await dead.ping() is False


@pytest.mark.postgres
async def test_encrypted_ping_delegates_to_the_underlying_session(tmp_path: Path) -> None:
    """EncryptedSession.ping() returns the underlying session's answer, True or False."""
    key = Fernet.generate_key().decode()
    live = SQLAlchemySession.from_url("s", url=database_url("postgres", tmp_path))
    async with EncryptedSession("s", live, key) as session:
        assert await session.ping() is True
    dead = SQLAlchemySession.from_url("s", url=UNREACHABLE["postgres"])
    async with EncryptedSession("s", dead, key) as session:
        assert await session.ping() is False


async def test_encrypted_ping_over_sqlite_says_there_is_no_server(tmp_path: Path) -> None:
    """EncryptedSession.ping() over a SQLite file raises TypeError: there is no server to check."""
    key = Fernet.generate_key().decode()
    async with EncryptedSession("s", SQLiteSession("s", tmp_path / "a.db"), key) as session:
        with pytest.raises(TypeError, match="has no ping"):
            await session.ping()
    with pytest.raises(SessionClosedError, match=r"EncryptedSession\.ping\(\)"):
        await session.ping()


def test_sqlite_sessions_have_no_ping() -> None:
    """SQLite sessions define no ping(): a file has no server to be unreachable (documented)."""
    assert not hasattr(SQLiteSession, "ping")

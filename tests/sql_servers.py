"""The SQL databases the SQLAlchemy backend is tested on, and a conformance harness for each."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import SQLAlchemySession
from agent_sessions.testing import Harness
from tests.conftest import require_server

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
KINDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
"""Every database SQLAlchemySession runs on, for ``parametrize("url", KINDS, indirect=True)``."""
SERVERS = {
    "postgres": ("PostgreSQL", 5432, POSTGRES_URL),
    "mariadb": ("MariaDB", 3306, MARIADB_URL),
}


def database_url(kind: str, tmp_path: Path) -> str:
    """The URL of a database of ``kind`` ("postgres", "mariadb", "sqlite"), skipping if absent."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sqlalchemy.db'}"
    name, port, url = SERVERS[kind]
    require_server(name, "127.0.0.1", port)
    return url


ADVANCED_SUFFIXES = (
    "structure",
    "turn_usage",
    "reservations",
    "generations",
    "branches",
    "current",
)
"""The branch tables an advanced session keeps on a server, named after its messages table."""


def unique_tables() -> tuple[str, str]:
    """Fresh table names, so tests sharing one server database never see each other's rows."""
    suffix = uuid.uuid4().hex[:10]
    return f"s_{suffix}", f"m_{suffix}"


async def drop_tables(engine: AsyncEngine, sessions: str, messages: str) -> None:
    """Drop a pair of tables, an advanced session's branch tables, and their version rows."""
    async with engine.begin() as conn:
        for suffix in (*ADVANCED_SUFFIXES, "state", "archive"):  # state, archive: every store's
            await conn.execute(text(f"DROP TABLE IF EXISTS {messages}_{suffix}"))
        await conn.execute(text(f"DROP TABLE IF EXISTS {messages}"))
        await conn.execute(text(f"DROP TABLE IF EXISTS {sessions}"))
    with contextlib.suppress(DBAPIError):  # no version table: the tables were never created
        async with engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM agent_sessions_schema WHERE name IN (:name, :advanced)"),
                {"name": messages, "advanced": f"{messages}.advanced"},
            )


def sqlalchemy_harness(
    kind: str, tmp_path: Path, session_class: type[Any] = SQLAlchemySession
) -> Harness:
    """A SQLAlchemySession (ours by default) on fresh tables of one database; cleanup drops them."""
    engine = create_async_engine(database_url(kind, tmp_path))
    sessions, messages = unique_tables()

    async def write_raw(session_id: str, row: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO {messages} (session_id, message_data) VALUES (:s, :d)"),
                {"s": session_id, "d": row},
            )

    async def count_rows(session_id: str) -> int:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(f"SELECT count(*) FROM {messages} WHERE session_id = :s"), {"s": session_id}
            )
            return int(result.scalar_one())

    async def cleanup() -> None:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()

    return Harness(
        name=f"{session_class.__module__.split('.')[0]}-sqlalchemy-{kind}",
        open=lambda sid: session_class(
            sid, engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        ),
        write_raw=write_raw,
        count_rows=count_rows,
        cleanup=[cleanup],
    )

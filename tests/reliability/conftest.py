"""Shared pieces of the reliability suite: child processes, targets on every backend, raw rows.

Every module of the suite marks its tests ``reliability`` (so ``pytest -m reliability`` runs the
suite alone) and with the marker of each backend it uses.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.reliability.children import Target
from tests.sql_servers import database_url, drop_tables, unique_tables

SESSION_BACKENDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("sqlite-shared", marks=pytest.mark.sqlite),
    pytest.param("encrypted-sqlite", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
    pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
    pytest.param("sqlalchemy-mariadb", marks=pytest.mark.mariadb),
]
"""The session backends the cancellation and fuzz tests run on, each with its marker."""

SERVER_KINDS = {"postgres": pytest.mark.postgres, "mariadb": pytest.mark.mariadb}


def server_params(*extra: str) -> list[object]:
    """``pytest.param`` for each SQLAlchemy database (plus ``extra`` kinds), with its marker."""
    marks = {"sqlite": pytest.mark.sqlite, **SERVER_KINDS}
    return [pytest.param(kind, marks=marks[kind], id=kind) for kind in (*extra, *SERVER_KINDS)]


@pytest.fixture(scope="session")
def forkserver() -> ForkServerContext:
    """Processes forked from a server that has already imported the SDK and agent_sessions."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.children"])
    return context


class SqlTarget:
    """A SQLAlchemy target on fresh tables, with raw access to its rows for the checks."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        url = database_url(kind, tmp_path)
        self.tables = unique_tables()
        self.target = Target("sqlalchemy", url, *self.tables)
        self.engine: AsyncEngine = create_async_engine(url)

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Every row of a session, ``(id, message_data)``, in id order; decodable or not."""
        async with self.engine.connect() as conn:
            result = await conn.execute(
                text(
                    f"SELECT id, message_data FROM {self.tables[1]} "
                    "WHERE session_id = :s ORDER BY id"
                ),
                {"s": session_id},
            )
            return [(int(row[0]), row[1]) for row in result]

    async def insert_raw(self, session_id: str, data: str) -> None:
        """Append a row as-is, bypassing every session class (the session record must exist)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(f"INSERT INTO {self.tables[1]} (session_id, message_data) VALUES (:s, :d)"),
                {"s": session_id, "d": data},
            )

    async def cleanup(self) -> None:
        """Drop the tables and the engine."""
        await drop_tables(self.engine, *self.tables)
        await self.engine.dispose()


@pytest.fixture
async def sql_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlTarget]:
    """A :class:`SqlTarget` of the parametrized kind ("sqlite", "postgres", "mariadb")."""
    target = SqlTarget(request.param, tmp_path)
    yield target
    await target.cleanup()


def sqlite_rows(path: Path, session_id: str) -> list[tuple[int, object]]:
    """Every row of a session in a SQLite file, ``(id, message_data)``, in id order."""
    conn = sqlite3.connect(path)
    try:
        return list(
            conn.execute(
                "SELECT id, message_data FROM agent_messages WHERE session_id = ? ORDER BY id",
                (session_id,),
            )
        )
    finally:
        conn.close()


def integrity(path: Path) -> list[str]:
    """The answer of ``PRAGMA integrity_check`` on a SQLite file (``["ok"]`` when sound)."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()

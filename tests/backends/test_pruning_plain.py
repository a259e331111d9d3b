"""Pruning a plain session deletes old rows by id: the kept rows keep their ids and timestamps.

Run on SQLiteSession (a file) and SQLAlchemySession on SQLite, PostgreSQL and MariaDB, reading
the rows back with plain SQL beside the session.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.core import StoreSession
from tests.sql_servers import database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("sqlite-file", marks=pytest.mark.sqlite),
    pytest.param("aiosqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def turn(n: int) -> list[Any]:
    """Turn ``n``: a question, a tool call and its output, an answer."""
    call_id = f"c{n}"
    return [
        {"role": "user", "content": f"q{n}"},
        {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": call_id, "output": "ok"},
        {"role": "assistant", "content": f"a{n}"},
    ]


def turns(first: int, last: int) -> list[Any]:
    """Turns ``first`` to ``last - 1``."""
    return [item for n in range(first, last) for item in turn(n)]


Row = tuple[int, str]
"""A stored row's id and its created_at, as text."""


@dataclass
class Database:
    """Opens sessions on one fresh database and reads and dates its rows with plain SQL."""

    open: Callable[[str], StoreSession]
    rows: Callable[[str], Awaitable[list[Row]]]
    backdate: Callable[[str], Awaitable[None]]


def _day(n: int) -> datetime:
    return datetime(2020, 1, 1 + n % 28, 12, n % 60, 0)


@pytest.fixture(name="database", params=KINDS)
async def database_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    """One database of each kind; its sessions are closed and its tables dropped after."""
    opened: list[StoreSession] = []
    if request.param == "sqlite-file":
        path = tmp_path / "prune.db"

        async def sqlite_rows(sid: str) -> list[Row]:
            with sqlite3.connect(path) as conn:
                found = conn.execute(
                    "SELECT id, created_at FROM agent_messages WHERE session_id = ? ORDER BY id",
                    (sid,),
                ).fetchall()
            conn.close()
            return [(int(row_id), str(created)) for row_id, created in found]

        async def sqlite_backdate(sid: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(
                    "UPDATE agent_messages SET created_at = datetime('2020-01-01', id || ' days') "
                    "WHERE session_id = ?",
                    (sid,),
                )
            conn.close()

        def open_file(sid: str) -> StoreSession:
            session = SQLiteSession(sid, path)
            opened.append(session)
            return session

        yield Database(open_file, sqlite_rows, sqlite_backdate)
        for session in opened:
            await session.aclose()
        return
    url = database_url("sqlite" if request.param == "aiosqlite" else request.param, tmp_path)
    engine = create_async_engine(url)
    sessions, messages = unique_tables()

    async def sql_rows(sid: str) -> list[Row]:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(f"SELECT id, created_at FROM {messages} WHERE session_id = :s ORDER BY id"),
                {"s": sid},
            )
            return [(int(row_id), str(created)) for row_id, created in found]

    async def sql_backdate(sid: str) -> None:
        async with engine.begin() as conn:
            for row_id, _ in await sql_rows(sid):
                await conn.execute(
                    text(f"UPDATE {messages} SET created_at = :t WHERE id = :i"),
                    {"t": _day(row_id), "i": row_id},
                )

    def open_sql(sid: str) -> StoreSession:
        session = SQLAlchemySession(
            sid, engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        opened.append(session)
        return session

    yield Database(open_sql, sql_rows, sql_backdate)
    for session in opened:
        await session.aclose()
    try:
        await drop_tables(engine, sessions, messages)
    finally:
        await engine.dispose()


def unique_id() -> str:
    """A session id no other test uses (server databases are shared)."""
    return f"prune-{uuid.uuid4().hex[:10]}"


async def test_kept_rows_keep_their_ids_and_timestamps(database: Database) -> None:
    """Only the removed rows' ids go; every kept row has its id and created_at as before."""
    sid = unique_id()
    session = database.open(sid)
    await session.add_items(turns(0, 4))
    await database.backdate(sid)
    before = await database.rows(sid)
    assert len({created for _, created in before}) == len(before)  # told apart by their dates
    report = await session.prune(keep_last_turns=2)
    assert await database.rows(sid) == before[8:]
    assert (report.removed_items, report.removed_turns, report.kept_items) == (8, 2, 8)
    assert await session.get_items() == turns(2, 4)


async def test_other_sessions_are_untouched(database: Database) -> None:
    """A prune deletes rows of its own session only, even with the same items elsewhere."""
    mine, theirs = unique_id(), unique_id()
    await database.open(theirs).add_items(turns(0, 3))
    untouched = await database.rows(theirs)
    session = database.open(mine)
    await session.add_items(turns(0, 3))
    await session.prune(keep_last_turns=1)
    assert await database.rows(theirs) == untouched
    assert await database.open(theirs).get_items() == turns(0, 3)


async def test_a_new_object_reads_the_pruned_history(database: Database) -> None:
    """The deletion is committed: another session object on the same id sees it."""
    sid = unique_id()
    session = database.open(sid)
    await session.add_items(turns(0, 3))
    await session.prune(keep_last_turns=1)
    assert await database.open(sid).get_items() == turn(2)

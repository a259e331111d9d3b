"""Per-session state on the SQL backends: the schema step that adds it, updates across processes."""

# ruff: noqa: SLF001 - the state API is private; these tests are its backends' own
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import agents
import pytest
from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.backends._sqlalchemy_schema import MIGRATIONS
from agent_sessions.schema import SQLITE_MIGRATIONS, TableNames
from tests.sql_servers import POSTGRES_URL, database_url, drop_tables, unique_tables

ITEM = {"role": "user", "content": "hello"}


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(
            conn.execute(
                "SELECT version FROM agent_sessions_schema WHERE name = 'agent_messages'"
            ).fetchone()[0]
        )


def test_both_stores_count_versions_alike() -> None:
    """SQLite's steps and the SQLAlchemy store's are numbered alike: the version table is shared."""
    assert len(SQLITE_MIGRATIONS) == len(MIGRATIONS) == 4


@pytest.mark.sqlite
async def test_sdk_file_gains_state_and_stays_readable(tmp_path: Path) -> None:
    """A file the SDK's SQLiteSession wrote upgrades once; the SDK still reads and writes it."""
    path = tmp_path / "sdk.db"
    sdk = agents.SQLiteSession("s", path)
    await sdk.add_items([ITEM])
    sdk.close()
    ours = SQLiteSession("s", path)
    await ours._write_state("pending", {"run": 1})
    assert await ours.get_items() == [ITEM]
    ours.close()
    assert _version(path) == len(SQLITE_MIGRATIONS)
    sdk = agents.SQLiteSession("s", path)
    await sdk.add_items([{"role": "assistant", "content": "hi"}])
    assert len(await sdk.get_items()) == 2
    sdk.close()
    again = SQLiteSession("s", path)
    assert await again._read_state("pending") == {"run": 1}
    again.close()


@pytest.mark.sqlite
async def test_file_at_sqlalchemy_v2_gains_state_tables(tmp_path: Path) -> None:
    """A file an older SQLAlchemy store left at version 2 (no state table) gets it on open."""
    path = tmp_path / "old.db"
    sdk = agents.SQLiteSession("s", path)
    await sdk.add_items([ITEM])
    sdk.close()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE agent_sessions_schema (name TEXT PRIMARY KEY, version INTEGER)")
        conn.execute("INSERT INTO agent_sessions_schema VALUES ('agent_messages', 2)")
    session = SQLiteSession("s", path)
    await session._write_state("k", [1])
    assert await session._read_state("k") == [1]
    session.close()
    assert _version(path) == len(SQLITE_MIGRATIONS)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])  # the SDK cannot create them on MariaDB
async def test_sdk_sqlalchemy_tables_gain_state(kind: str, tmp_path: Path) -> None:
    """Tables the SDK's SQLAlchemySession made upgrade; the SDK's class reads what we wrote."""
    url = database_url(kind, tmp_path)
    engine = create_async_engine(url)
    sessions, messages = unique_tables()
    try:
        sdk = SDKSQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        await sdk.add_items([ITEM])
        ours = SQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        await ours._write_state("pending", {"a": "b"})
        await ours.add_items([{"role": "assistant", "content": "ok"}])
        assert await ours._read_state("pending") == {"a": "b"}
        assert [i["content"] for i in await sdk.get_items()] == ["hello", "ok"]  # type: ignore[typeddict-item]
        await ours.clear_session()
        assert await ours._read_state("pending") is None
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
async def test_database_at_v2_gains_state_tables(kind: str, tmp_path: Path) -> None:
    """A database left at version 2 (before state existed) gets the tables once, data intact."""
    engine = create_async_engine(database_url(kind, tmp_path))
    sessions, messages = unique_tables()
    names = TableNames(sessions, messages)
    try:
        first = SQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        await first.add_items([ITEM])
        await first.aclose()
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {names.state}"))
            await conn.execute(text(f"DROP TABLE {names.archive}"))
            await conn.execute(
                text("UPDATE agent_sessions_schema SET version = 2 WHERE name = :n"),
                {"n": messages},
            )
        await engine.dispose()
        engine = create_async_engine(database_url(kind, tmp_path))  # a new process, in effect
        again = SQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        await again._update_state("k", lambda v: "v3")
        assert await again._read_state("k") == "v3"
        assert await again.get_items() == [ITEM]
        async with engine.connect() as conn:
            version = await conn.execute(
                text("SELECT version FROM agent_sessions_schema WHERE name = :n"), {"n": messages}
            )
            assert version.scalar_one() == len(MIGRATIONS)
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


def test_derived_names_stay_within_63_characters() -> None:
    """State and archive tables of a 63-character messages table are distinct and fit."""
    long_a, long_b = "a" * 63, "a" * 62 + "b"
    names = {TableNames("s", m).state for m in (long_a, long_b)}
    names |= {TableNames("s", m).archive for m in (long_a, long_b)}
    assert len(names) == 4
    assert all(len(name) <= 63 for name in names)
    assert TableNames().state == "agent_messages_state"


@pytest.mark.postgres
async def test_long_table_names_fit_postgres(tmp_path: Path) -> None:
    """The longest messages table PostgreSQL's index names allow gets its state and archive."""
    url = database_url("postgres", tmp_path)
    engine = create_async_engine(url)
    _, short = unique_tables()
    messages = (short + "_" + "m" * 63)[:46]  # idx_<messages>_session_time must fit in 63
    names = TableNames(short.replace("m_", "s_"), messages)
    try:
        session = SQLAlchemySession(
            "s",
            engine=engine,
            create_tables=True,
            sessions_table=names.sessions,
            messages_table=names.messages,
        )
        await session._write_state("k", 1)
        assert await session._read_state("k") == 1
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(sa_inspect(c).get_table_names()))
        assert names.state in tables
        assert names.archive in tables
    finally:
        async with engine.begin() as conn:
            for table in (names.state, names.archive, names.messages, names.sessions):
                await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
            await conn.execute(
                text("DELETE FROM agent_sessions_schema WHERE name = :n"), {"n": names.messages}
            )
        await engine.dispose()


UPDATER = """
import asyncio, sys
from agent_sessions import SQLAlchemySession, SQLiteSession

async def main(kind, where, sessions, messages, tag):
    if kind == "sqlite":
        session = SQLiteSession("shared", where)
    else:
        session = SQLAlchemySession.from_url(
            "shared", url=where, create_tables=True,
            sessions_table=sessions, messages_table=messages,
        )
    def bump(value):
        merged = dict(value or {})
        merged["count"] = merged.get("count", 0) + 1
        merged[tag] = merged.get(tag, 0) + 1
        return merged
    for _ in range(25):
        await session._update_state("merged", bump)
    await session.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_updates_from_two_processes_all_take_effect(kind: str, tmp_path: Path) -> None:
    """Two processes updating one value at once (on a file the SDK made) lose no update."""
    sessions, messages = unique_tables()
    if kind == "sqlite":
        where = str(tmp_path / "shared.db")
        sdk = agents.SQLiteSession("shared", where)  # an old file: both processes migrate it
        await sdk.add_items([ITEM])
        sdk.close()
        sessions, messages = "agent_sessions", "agent_messages"
    else:
        where = database_url("postgres", tmp_path)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UPDATER,
            kind,
            where,
            sessions,
            messages,
            tag,
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    try:
        for proc in procs:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=240)
            assert proc.returncode == 0, err.decode()
        if kind == "sqlite":
            session: SQLiteSession | SQLAlchemySession = SQLiteSession("shared", where)
        else:
            session = SQLAlchemySession.from_url(
                "shared", url=where, sessions_table=sessions, messages_table=messages
            )
        assert await session._read_state("merged") == {"count": 50, "a": 25, "b": 25}
        await session.aclose()
    finally:
        if kind == "postgres":
            engine = create_async_engine(POSTGRES_URL)
            await drop_tables(engine, sessions, messages)
            await engine.dispose()

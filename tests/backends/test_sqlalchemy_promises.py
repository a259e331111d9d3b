"""SQLAlchemy backend promises from issue 14: isolation, locking, URLs, in-memory SQLite, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import SQLAlchemySession
from tests.sql_servers import MARIADB_URL, database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of the database kind named by the test's parameter."""
    return database_url(request.param, tmp_path)


@pytest.fixture
async def engine(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on that database, disposed afterwards."""
    made = create_async_engine(url)
    yield made
    await made.dispose()


@pytest.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[tuple[str, str]]:
    """Fresh table names, dropped afterwards."""
    names = unique_tables()
    yield names
    await drop_tables(engine, *names)


def _open(
    engine: AsyncEngine, tables: tuple[str, str], sid: str, **kw: object
) -> SQLAlchemySession:
    return SQLAlchemySession(
        sid, engine=engine, sessions_table=tables[0], messages_table=tables[1], **kw
    )


# --- 1. session ids compared byte for byte; exact times (MariaDB/MySQL) --------------------


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_ids_differing_in_case_or_trailing_space_never_share(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """`Ada`, `ada` and `Ada ` are three sessions on every database."""
    sids = ["Ada", "ada", "Ada ", "ADA  "]
    for sid in sids:
        async with _open(engine, tables, sid, create_tables=True) as session:
            await session.add_items([{"role": "user", "content": f"I am {sid!r}"}])
    for sid in sids:
        async with _open(engine, tables, sid) as session:
            assert await session.get_items() == [{"role": "user", "content": f"I am {sid!r}"}]
    async with _open(engine, tables, "ada") as session:
        await session.clear_session()
    async with _open(engine, tables, "Ada") as session:
        assert len(await session.get_items()) == 1


def _old_mariadb_ddl(sessions: str, messages: str) -> list[str]:
    """The DDL the previous version (schema v1) created on MariaDB, verbatim."""
    return [
        "CREATE TABLE IF NOT EXISTS agent_sessions_schema "
        "(name VARCHAR(255) NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (name))",
        f"""CREATE TABLE `{sessions}` (
          `session_id` varchar(255) NOT NULL,
          `created_at` timestamp NOT NULL DEFAULT current_timestamp(),
          `updated_at` timestamp NOT NULL DEFAULT current_timestamp(),
          PRIMARY KEY (`session_id`)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
        f"""CREATE TABLE `{messages}` (
          `id` int(11) NOT NULL AUTO_INCREMENT,
          `session_id` varchar(255) NOT NULL,
          `message_data` longtext NOT NULL,
          `created_at` timestamp NOT NULL DEFAULT current_timestamp(),
          PRIMARY KEY (`id`),
          KEY `idx_{messages}_session_seq` (`session_id`,`id`),
          KEY `idx_{messages}_session_time` (`session_id`,`created_at`),
          CONSTRAINT `{messages}_ibfk_1` FOREIGN KEY (`session_id`)
            REFERENCES `{sessions}` (`session_id`) ON DELETE CASCADE
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
        f"INSERT INTO agent_sessions_schema (name, version) VALUES ('{messages}', 1)",
        # Written by v1: "ada" and "Ada " wrote into the one session record "Ada".
        f"INSERT INTO {sessions} (session_id) VALUES ('Ada')",
        f"""INSERT INTO {messages} (session_id, message_data) VALUES
            ('Ada', '{{"role":"user","content":"Ada 1"}}'),
            ('ada', '{{"role":"user","content":"ada 1"}}'),
            ('Ada ', '{{"role":"user","content":"Ada_ 1"}}')""",
    ]


async def _create_old_tables(engine: AsyncEngine, tables: tuple[str, str]) -> None:
    async with engine.begin() as conn:
        for statement in _old_mariadb_ddl(*tables):
            await conn.execute(text(statement))


async def _column_types(engine: AsyncEngine, table: str) -> dict[str, tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
            ),
            {"t": table},
        )
        return {str(n): (str(t), c) for n, t, c in rows}


@pytest.mark.mariadb
@pytest.mark.parametrize("url", ["mariadb"], indirect=True)
async def test_v1_mariadb_tables_migrate_to_exact_ids_and_times(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Tables made by v1 are migrated: each id gets its own history, times gain microseconds.

    Times also reach past 2038, and the foreign key still cascades.
    """
    await _create_old_tables(engine, tables)
    async with _open(engine, tables, "ada", create_tables=True) as session:
        assert await session.get_items() == [{"role": "user", "content": "ada 1"}]
        await session.add_items([{"role": "user", "content": "ada 2"}])
    async with _open(engine, tables, "Ada") as session:
        assert await session.get_items() == [{"role": "user", "content": "Ada 1"}]
    async with _open(engine, tables, "Ada ") as session:
        assert await session.get_items() == [{"role": "user", "content": "Ada_ 1"}]
    for table, stamps in ((tables[0], ("created_at", "updated_at")), (tables[1], ("created_at",))):
        types = await _column_types(engine, table)
        assert types["session_id"][1] in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")
        for column in stamps:
            assert types[column][0] == "datetime(6)"
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE {tables[0]} SET updated_at = '2040-05-06 07:08:09.123456'")
        )
        stamp = (await conn.execute(text(f"SELECT MAX(updated_at) FROM {tables[0]}"))).scalar_one()
        assert (stamp.year, stamp.microsecond) == (2040, 123456)
        micros = (await conn.execute(text(f"SELECT created_at FROM {tables[1]}"))).scalars().all()
    async with _open(engine, tables, "ada") as session:  # the record "ada" cascades its rows
        await session.clear_session()
    async with _open(engine, tables, "Ada") as session:
        assert len(await session.get_items()) == 1
    assert any(moment.microsecond for moment in micros)  # 4 rows all on a whole second: 1e-24


MIGRATOR = textwrap.dedent(
    """
    import asyncio, sys
    from agent_sessions import SQLAlchemySession

    async def main(url, sessions, messages, sid):
        session = SQLAlchemySession.from_url(
            sid, url=url, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        async with session:
            await session.add_items([{"role": "user", "content": "from " + sid}])

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.mariadb
@pytest.mark.parametrize("url", ["mariadb"], indirect=True)
async def test_two_processes_migrating_one_v1_database_at_once(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Two processes opening one v1 database at once both succeed, and it is migrated once."""
    await _create_old_tables(engine, tables)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", MIGRATOR, MARIADB_URL, *tables, sid, stderr=subprocess.PIPE
        )
        for sid in ("ada", "ADA")
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
    async with engine.connect() as conn:
        version = await conn.execute(
            text("SELECT version FROM agent_sessions_schema WHERE name = :n"), {"n": tables[1]}
        )
        assert version.scalar_one() == 2
    async with _open(engine, tables, "ADA") as session:
        assert await session.get_items() == [{"role": "user", "content": "from ADA"}]
    async with _open(engine, tables, "ada") as session:
        assert [i["content"] for i in await session.get_items()] == ["ada 1", "from ada"]  # type: ignore[typeddict-item]


# --- 2. concurrent pops on a session's first write ------------------------------------------


@pytest.mark.parametrize("url", SERVERS, indirect=True)
async def test_concurrent_pops_never_return_one_item_twice(
    url: str, engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Two pops racing a session's first write (or the first after a clear) never share an item.

    Three engines, so the calls run on three connections at once; before the fix PostgreSQL
    returned one item twice in about a quarter of the rounds.
    """
    engines = [engine, create_async_engine(url), create_async_engine(url)]
    try:
        async with _open(engine, tables, "setup", create_tables=True) as setup:
            await setup.get_items()
        twice = 0
        for round_ in range(60):
            sid = f"first-write-{round_ % 20}"  # later rounds reuse cleared sessions
            a, b, writer = (_open(e, tables, sid) for e in engines)
            first, second, _ = await asyncio.gather(
                a.pop_item(), b.pop_item(), writer.add_items([{"role": "user", "content": "x"}])
            )
            twice += first is not None and second is not None
            await a.clear_session()
        assert twice == 0
    finally:
        for extra in engines[1:]:
            await extra.dispose()

"""What only the SQLAlchemy backend has: SDK compatibility, many processes, URLs and servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import (
    SessionClosedError,
    SQLAlchemySession,
    StorageError,
    StorageUnavailableError,
)
from tests.sql_servers import KINDS, database_url, drop_tables, unique_tables

TURN = [
    {"role": "user", "content": "Book a table for two, s'il vous plaît 🍷"},
    {"type": "function_call", "call_id": "c1", "name": "book", "arguments": '{"n": 2}', "id": "f1"},
    {"type": "function_call_output", "call_id": "c1", "output": "booked"},
    {"role": "assistant", "content": "Done."},
]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_reads_what_the_sdk_wrote(engine: AsyncEngine, tables: tuple[str, str]) -> None:
    """Tables the SDK created and filled read back intact, and ours can continue them."""
    sessions, messages = tables
    # The SDK cannot create its tables on MySQL/MariaDB (an unbounded VARCHAR key), so there
    # ours creates them and the SDK fills them.
    sdk_creates = engine.dialect.name not in ("mysql", "mariadb")
    if not sdk_creates:
        async with SQLAlchemySession(
            "x", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        ) as creator:
            await creator.get_items()
    sdk = SDKSQLAlchemySession(
        "chat",
        engine=engine,
        create_tables=sdk_creates,
        sessions_table=sessions,
        messages_table=messages,
    )
    await sdk.add_items(TURN)  # type: ignore[arg-type]
    async with SQLAlchemySession(
        "chat", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    ) as ours:
        assert await ours.get_items() == TURN
        await ours.add_items([{"role": "user", "content": "and dessert?"}])
        assert await ours.get_items(2) == [TURN[-1], {"role": "user", "content": "and dessert?"}]
    assert len(await sdk.get_items()) == 5


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_sdk_reads_what_we_wrote(engine: AsyncEngine, tables: tuple[str, str]) -> None:
    """The SDK's class reads, pops and clears rows in tables that ours created."""
    sessions, messages = tables
    async with SQLAlchemySession(
        "chat", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    ) as ours:
        await ours.add_items(TURN)  # type: ignore[arg-type]
    sdk = SDKSQLAlchemySession(
        "chat", engine=engine, sessions_table=sessions, messages_table=messages
    )
    assert await sdk.get_items() == TURN
    assert await sdk.pop_item() == TURN[-1]
    await sdk.clear_session()
    async with SQLAlchemySession(
        "chat", engine=engine, sessions_table=sessions, messages_table=messages
    ) as again:
        assert await again.get_items() == []


@pytest.mark.postgres
async def test_latest_items_use_the_sequence_index(tmp_path: Path) -> None:
    """On PostgreSQL the newest-N read is an index scan on (session_id, id), not a sort."""
    engine = create_async_engine(database_url("postgres", tmp_path))
    sessions, messages = unique_tables()
    try:
        async with SQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        ) as session:
            await session.add_items([{"role": "user", "content": str(i)} for i in range(50)])
        async with engine.connect() as conn:
            # A 50-row table would be read whole; make the planner show what it does at scale.
            await conn.execute(text(f"ANALYZE {messages}"))
            await conn.execute(text("SET enable_seqscan = off"))
            await conn.execute(text("SET enable_bitmapscan = off"))
            plan = await conn.execute(
                text(
                    f"EXPLAIN SELECT message_data FROM {messages} WHERE session_id = 's' "
                    "ORDER BY id DESC LIMIT 20"
                )
            )
            lines = " ".join(row[0] for row in plan)
        assert f"idx_{messages}_session_seq" in lines
        assert "Sort" not in lines
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from agent_sessions import SQLAlchemySession

    async def main(url, sessions, messages, writer):
        async with SQLAlchemySession.from_url(
            "shared", url=url, create_tables=True,
            sessions_table=sessions, messages_table=messages,
        ) as session:
            for turn in range(25):
                batch = [{"role": "user", "content": f"{writer}-{turn}-{i}"} for i in range(3)]
                await session.add_items(batch)
                if turn % 5 == 4:
                    await session.get_items(3)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_processes_writing_one_session_keep_commit_order(
    url: str, engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Four processes create the tables and write one session at once, in commit order.

    Nothing is lost or duplicated, every batch is contiguous and each writer's order is kept.
    """
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, url, *tables, str(w), stderr=subprocess.PIPE
        )
        for w in range(4)
    ]
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()
    async with SQLAlchemySession(
        "shared", engine=engine, sessions_table=tables[0], messages_table=tables[1]
    ) as session:
        contents = [str(item["content"]) for item in await session.get_items()]  # type: ignore[typeddict-item]
    assert len(contents) == len(set(contents)) == 4 * 25 * 3
    for start in range(0, len(contents), 3):
        assert len({c.split("-")[0] for c in contents[start : start + 3]}) == 1
    for writer in range(4):
        mine = [c for c in contents if c.startswith(f"{writer}-")]
        assert mine == [f"{writer}-{t}-{i}" for t in range(25) for i in range(3)]


@pytest.mark.parametrize(
    "bad", ["not a url", "postgresql+nosuchdriver://u@h/db", "nosuchdialect://x/y"]
)
def test_invalid_url_is_a_clear_value_error(bad: str) -> None:
    """A URL that cannot be parsed or names no driver raises ValueError naming it."""
    with pytest.raises(ValueError, match=r"database URL|driver"):
        SQLAlchemySession.from_url("s", url=bad)


async def test_unreachable_server_names_the_host_and_hides_the_password() -> None:
    """A server that refuses connections raises StorageUnavailableError naming host and port."""
    url = "postgresql+asyncpg://app:s3cret@127.0.0.1:1/db"
    async with SQLAlchemySession.from_url("s", url=url) as session:
        with pytest.raises(StorageUnavailableError, match=r"127\.0\.0\.1:1") as raised:
            await session.get_items()
        assert "s3cret" not in str(raised.value)
        with pytest.raises(StorageUnavailableError):
            await session.add_items([{"role": "user", "content": "x"}])


class DroppablePostgresSession:
    """A from_url session on PostgreSQL whose connections the server can be told to drop."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = database_url("postgres", tmp_path)
        self.tables = unique_tables()
        self.name = f"agent-sessions-{self.tables[1]}"  # tags only this session's connections
        self.admin = create_async_engine(self.url)

    def open(self) -> SQLAlchemySession:
        """The session under test, tagged with its own application name."""
        return SQLAlchemySession.from_url(
            "s",
            url=self.url,
            engine_kwargs={"connect_args": {"server_settings": {"application_name": self.name}}},
            create_tables=True,
            sessions_table=self.tables[0],
            messages_table=self.tables[1],
        )

    async def drop_connections(self) -> int:
        """Have the server terminate the session's connections; return how many."""
        async with self.admin.connect() as conn:
            dropped = await conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": self.name},
            )
            return int(dropped.scalar_one())

    async def cleanup(self) -> None:
        """Drop the tables and the admin engine."""
        await drop_tables(self.admin, *self.tables)
        await self.admin.dispose()


@pytest.fixture
async def droppable(tmp_path: Path) -> AsyncIterator[DroppablePostgresSession]:
    """A PostgreSQL session whose connections a test can drop; cleaned up afterwards."""
    setup = DroppablePostgresSession(tmp_path)
    yield setup
    await setup.cleanup()


@pytest.mark.postgres
async def test_dropped_connections_are_recovered(droppable: DroppablePostgresSession) -> None:
    """After the server dropped the session's connections, the next calls work as they are.

    The pool replaces connections it finds closed, so no new session is needed.
    """
    async with droppable.open() as session:
        await session.add_items([{"role": "user", "content": "before"}])
        assert await droppable.drop_connections() >= 1
        await asyncio.sleep(0.2)  # the drop reaches the client, as after a restart
        await session.add_items([{"role": "user", "content": "after"}])
        assert [i["content"] for i in await session.get_items()] == ["before", "after"]  # type: ignore[typeddict-item]


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_close_disposes_only_an_engine_it_created(
    url: str, engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """Closing a session leaves a caller's engine usable, and refuses later calls."""
    sessions, messages = tables
    session = SQLAlchemySession(
        "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
    )
    await session.add_items([{"role": "user", "content": "x"}])
    await session.close()
    with pytest.raises(SessionClosedError, match="get_items"):
        await session.get_items()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    owned = SQLAlchemySession.from_url(
        "s", url=url, sessions_table=sessions, messages_table=messages
    )
    assert len(await owned.get_items()) == 1
    await owned.close()
    assert owned.engine.pool.checkedout() == 0


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_missing_tables_without_create_tables_is_a_storage_error(
    engine: AsyncEngine,
) -> None:
    """Without create_tables, absent tables raise a StorageError that names the operation."""
    sessions, messages = unique_tables()
    async with SQLAlchemySession(
        "s", engine=engine, sessions_table=sessions, messages_table=messages
    ) as session:
        with pytest.raises(StorageError, match="read"):
            await session.get_items()


@pytest.mark.postgres
async def test_a_write_racing_a_drop_is_whole_or_absent_and_reported(
    droppable: DroppablePostgresSession,
) -> None:
    """A write racing the server's drop of its connection is stored whole or not at all.

    If it was not confirmed it raises StorageUnavailableError naming the server, and the next call
    works.
    """
    async with droppable.open() as session:
        await session.add_items([{"role": "user", "content": "before"}])
        await droppable.drop_connections()
        batch = [{"role": "user", "content": f"racing-{i}"} for i in range(3)]
        error: StorageUnavailableError | None = None
        try:
            await session.add_items(batch)  # type: ignore[arg-type]
        except StorageUnavailableError as exc:
            error = exc
        assert error is None or "127.0.0.1:5432" in str(error)
        await session.add_items([{"role": "user", "content": "after"}])
        contents = [i["content"] for i in await session.get_items()]  # type: ignore[typeddict-item]
        racing = [c for c in contents if str(c).startswith("racing-")]
        assert racing in ([], ["racing-0", "racing-1", "racing-2"])
        assert contents[0] == "before"
        assert contents[-1] == "after"


@pytest.mark.sqlite
async def test_an_unclosed_from_url_session_warns(tmp_path: Path) -> None:
    """A session whose from_url engine was never disposed of warns when it is collected."""
    session = SQLAlchemySession.from_url(
        "s", url=database_url("sqlite", tmp_path), create_tables=True
    )
    await session.add_items([{"role": "user", "content": "x"}])
    engine = session.engine
    with pytest.warns(ResourceWarning, match="never closed"):
        del session  # the last reference: collected at once
    await engine.dispose()

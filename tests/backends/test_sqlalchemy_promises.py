"""SQLAlchemy backend promises from issue 14: isolation, locking, URLs, in-memory SQLite, errors."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import MissingDependencyError, SQLAlchemySession, StorageError
from agent_sessions.backends._sqlalchemy_schema import MIGRATIONS
from tests.sql_servers import KINDS, MARIADB_URL, database_url, drop_tables, unique_tables

SERVERS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


def _open(engine: AsyncEngine, tables: tuple[str, str], sid: str, **kw: Any) -> SQLAlchemySession:
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


@pytest.mark.slow
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
        assert version.scalar_one() == len(MIGRATIONS)
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


# --- 3. in-memory SQLite and SQLAlchemy's SQLite recipes --------------------------------------


@pytest.mark.sqlite
async def test_in_memory_url_serves_concurrent_tasks_one_database() -> None:
    """20 tasks adding at once to an in-memory from_url session all land in one database."""
    async with SQLAlchemySession.from_url(
        "mem", url="sqlite+aiosqlite:///:memory:", create_tables=True
    ) as session:
        batches = [[{"role": "user", "content": f"{i}-{j}"} for j in range(3)] for i in range(20)]
        await asyncio.gather(*(session.add_items(b) for b in batches))  # type: ignore[arg-type]
        items = await session.get_items()
        assert sorted(str(i["content"]) for i in items) == sorted(  # type: ignore[typeddict-item]
            str(i["content"]) for b in batches for i in b
        )
        for start in range(0, 60, 3):  # each batch contiguous
            assert len({str(i["content"]).split("-")[0] for i in items[start : start + 3]}) == 1  # type: ignore[typeddict-item]
        popped = await asyncio.gather(*(session.pop_item() for _ in range(10)))
        assert len({str(p["content"]) for p in popped if p}) == 10  # type: ignore[typeddict-item]


@pytest.mark.sqlite
async def test_sessions_sharing_an_in_memory_engine_take_turns() -> None:
    """Two sessions on one in-memory engine, used at once, see one database and lose nothing."""
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    try:
        one = SQLAlchemySession("one", engine=engine, create_tables=True)
        two = SQLAlchemySession("two", engine=engine, create_tables=True)
        item = {"role": "user", "content": "x"}
        await asyncio.gather(*(s.add_items([item]) for s in (one, two) for _ in range(10)))  # type: ignore[list-item]
        await asyncio.gather(one.clear_session(), two.pop_item(), two.get_items())
        assert (len(await one.get_items()), len(await two.get_items())) == (0, 9)
    finally:
        await engine.dispose()


def _sqlite_begin_recipe(engine: AsyncEngine) -> None:
    """SQLAlchemy's documented pysqlite recipe: the driver's own transactions off, BEGIN emitted."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


@pytest.mark.sqlite
@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
async def test_the_sqlite_begin_recipe_works(tmp_path: Path, memory: bool) -> None:
    """With the documented SQLite "begin" recipe, every operation works, on a file and in memory."""
    url = "sqlite+aiosqlite:///:memory:" if memory else f"sqlite+aiosqlite:///{tmp_path}/r.db"
    engine = create_async_engine(url)
    _sqlite_begin_recipe(engine)
    try:
        async with SQLAlchemySession("r", engine=engine, create_tables=True) as session:
            await asyncio.gather(
                *(session.add_items([{"role": "user", "content": str(i)}]) for i in range(5))
            )
            assert await session.pop_item() is not None
            assert len(await session.get_items()) == 4
            await session.clear_session()
            assert await session.get_items() == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_statement_listeners_see_every_statement(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """before_cursor_execute listeners on the engine see our reads and writes."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _log(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    async with _open(engine, tables, "heard", create_tables=True) as session:
        await session.get_items()
        seen.clear()
        await session.add_items([{"role": "user", "content": "x"}])
        assert any(s.lstrip().upper().startswith("INSERT") for s in seen)
        seen.clear()
        await session.get_items(3)
        assert any(s.lstrip().upper().startswith("SELECT") for s in seen)


# --- 4. driverless URLs, 5. missing tables ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "driverless"),
    [
        pytest.param("postgres", "postgresql://", marks=pytest.mark.postgres),
        pytest.param("postgres", "postgres://", marks=pytest.mark.postgres),
        pytest.param("mariadb", "mysql://", marks=pytest.mark.mariadb),
        pytest.param("mariadb", "mariadb://", marks=pytest.mark.mariadb),
        pytest.param("sqlite", "sqlite:///", marks=pytest.mark.sqlite),
    ],
)
async def test_from_url_accepts_driverless_urls(kind: str, driverless: str, tmp_path: Path) -> None:
    """A URL without a driver, as operators write it, opens with the async driver we ship."""
    full = database_url(kind, tmp_path)
    url = driverless + full.split("://", 1)[1].lstrip("/" if kind == "sqlite" else "")
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'driverless.db'}"
    sessions, messages = unique_tables()
    session = SQLAlchemySession.from_url(
        "d", url=url, create_tables=True, sessions_table=sessions, messages_table=messages
    )
    try:
        await session.add_items([{"role": "user", "content": "x"}])
        assert len(await session.get_items()) == 1
    finally:
        await drop_tables(session.engine, sessions, messages)
        await session.close()


def test_a_missing_driver_names_the_right_remedy() -> None:
    """A URL naming a driver that is not installed says what to install or use instead."""
    with pytest.raises(MissingDependencyError, match=r"postgresql\+asyncpg"):
        SQLAlchemySession.from_url("s", url="postgresql+psycopg://u@h/db")
    with pytest.raises(MissingDependencyError, match=r"agent-sessions\[mysql\]"):
        SQLAlchemySession.from_url("s", url="mysql+mysqldb://u@h/db")


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_missing_tables_say_how_to_create_them(url: str) -> None:
    """Without tables and create_tables, every operation says how to create them."""
    sessions, messages = unique_tables()
    async with SQLAlchemySession.from_url(
        "s", url=url, sessions_table=sessions, messages_table=messages
    ) as session:
        calls = [
            session.get_items,
            lambda: session.get_items(2),
            lambda: session.add_items([{"role": "user", "content": "x"}]),
            session.pop_item,
            session.clear_session,
        ]
        for call in calls:
            with pytest.raises(StorageError, match=r"no tables.*create_tables=True.*migrate"):
                await call()


# --- 6. event loops, table creation, settings -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_session_moves_to_a_new_event_loop(kind: str, tmp_path: Path) -> None:
    """A from_url session used under two asyncio.run calls works in both, never hanging.

    A server's pooled connections belonged to the first loop and are dropped unclosed: the
    warnings about their sockets are expected (collected here, before the test ends).
    """
    url = database_url(kind, tmp_path)
    sessions, messages = unique_tables()
    session = SQLAlchemySession.from_url(
        "loops", url=url, create_tables=True, sessions_table=sessions, messages_table=messages
    )

    async def use(content: str) -> int:
        await asyncio.wait_for(session.add_items([{"role": "user", "content": content}]), 20)
        return len(await asyncio.wait_for(session.get_items(), 20))

    assert asyncio.run(use("first")) == 1
    assert asyncio.run(use("second")) == 2

    async def finish() -> None:
        assert len(await session.get_items()) == 2  # a third loop: the session follows it
        await drop_tables(session.engine, sessions, messages)
        await session.close()

    asyncio.run(finish())
    gc.collect()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_a_session_in_use_on_another_running_loop_is_refused_at_once(
    engine: AsyncEngine, tables: tuple[str, str]
) -> None:
    """A call from a second, concurrently running loop raises at once instead of hanging."""
    session = _open(engine, tables, "busy", create_tables=True)
    await session.add_items([{"role": "user", "content": "x"}])

    def other_loop() -> None:
        async def call() -> None:
            await asyncio.wait_for(session.get_items(), 10)

        asyncio.run(call())

    with pytest.raises(StorageError, match="another running event loop"):
        await asyncio.to_thread(other_loop)
    assert len(await session.get_items()) == 1
    await session.close()


@pytest.mark.parametrize("url", KINDS, indirect=True)
async def test_created_tables_are_visible_to_other_connections_after_the_first_call(
    engine: AsyncEngine, url: str, tables: tuple[str, str]
) -> None:
    """Once the first operation of a create_tables session returns, any connection sees them."""
    async with _open(engine, tables, "first", create_tables=True) as session:
        assert await session.get_items() == []
        other = create_async_engine(url)
        try:
            async with other.connect() as conn:
                count = await conn.execute(text(f"SELECT count(*) FROM {tables[1]}"))
                assert count.scalar_one() == 0
        finally:
            await other.dispose()


@pytest.mark.sqlite
def test_unknown_session_settings_are_refused(tmp_path: Path) -> None:
    """An unknown session_settings key is a TypeError (as in the SDK), a bad value a ValueError."""
    engine = create_async_engine(database_url("sqlite", tmp_path))
    with pytest.raises(TypeError, match="limt"):
        SQLAlchemySession("s", engine=engine, session_settings={"limt": 3})
    with pytest.raises(ValueError, match="limit"):
        SQLAlchemySession("s", engine=engine, session_settings={"limit": "many"})
    assert SQLAlchemySession("s", engine=engine, session_settings={"limit": 3}).session_settings

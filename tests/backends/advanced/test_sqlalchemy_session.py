"""What only AdvancedSQLAlchemySession has: its tables on each database, and who else reads them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSQLiteSession
from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession, SQLAlchemySession
from agent_sessions.errors import StorageError
from tests.sql_servers import KINDS, database_url, drop_tables, unique_tables


def message(text_: str, role: str = "user") -> dict[str, str]:
    """A message item."""
    return {"role": role, "content": text_}


def contents(items: list[object]) -> list[object]:
    """The contents of items, to compare histories at a glance."""
    return [item.get("content") if isinstance(item, dict) else item for item in items]


EXCHANGES = [
    message("q1"),
    message("a1", "assistant"),
    message("q2"),
    message("a2", "assistant"),
    message("q3"),
    message("a3", "assistant"),
]


class Database:
    """One database of a kind with fresh table names, dropped afterwards."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.url = database_url(kind, tmp_path)
        self.engine: AsyncEngine = create_async_engine(self.url)
        self.sessions, self.messages = unique_tables()

    def open(self, session_id: str, **kwargs: object) -> AdvancedSQLAlchemySession:
        """An advanced session on this database's tables (created on first use)."""
        return AdvancedSQLAlchemySession(
            session_id,
            engine=self.engine,
            create_tables=True,
            sessions_table=self.sessions,
            messages_table=self.messages,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(params=KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """Each database kind, with fresh tables dropped afterwards."""
    db = Database(request.param, tmp_path)
    yield db
    await drop_tables(db.engine, db.sessions, db.messages)
    await db.engine.dispose()


async def test_branches_survive_a_new_engine(database: Database, tmp_path: Path) -> None:
    """A branch, its items and the current branch are in the database, not in the object."""
    sid = uuid.uuid4().hex
    session = database.open(sid)
    await session.add_items(EXCHANGES)
    await session.create_branch_from_turn(2, "retry")
    await session.add_items([message("q2b")])
    await session.close()
    other = create_async_engine(database.url)
    try:
        again = AdvancedSQLAlchemySession(
            sid,
            engine=other,
            sessions_table=database.sessions,
            messages_table=database.messages,
        )
        assert await again.current_branch() == "retry"
        assert contents(await again.get_items()) == ["q1", "a1", "q2b"]
        assert contents(await again.get_items(branch_id="main")) == contents(list(EXCHANGES))
        await again.close()
    finally:
        await other.dispose()


async def test_plain_sessions_read_main(database: Database) -> None:
    """Our SQLAlchemySession and the SDK's read main's history of an advanced session."""
    sid = uuid.uuid4().hex
    session = database.open(sid)
    await session.add_items(EXCHANGES)
    await session.create_branch_from_turn(3, "b")
    await session.add_items([message("only on b")])
    plain = SQLAlchemySession(
        sid,
        engine=database.engine,
        sessions_table=database.sessions,
        messages_table=database.messages,
    )
    sdk = SDKSQLAlchemySession(
        sid,
        engine=database.engine,
        sessions_table=database.sessions,
        messages_table=database.messages,
    )
    # The plain classes see every row of the messages table: main's and the branch's own.
    assert contents(await plain.get_items()) == [*contents(list(EXCHANGES)), "only on b"]
    assert contents(await sdk.get_items()) == [*contents(list(EXCHANGES)), "only on b"]
    await plain.close()
    await session.close()


async def test_branch_names_are_exact(database: Database) -> None:
    """Branch names that differ only in case or trailing space are different branches."""
    sid = uuid.uuid4().hex
    session = database.open(sid)
    await session.add_items(EXCHANGES)
    await session.create_branch_from_turn(2, "Retry")
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(3, "retry")
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(3, "retry ")
    names = sorted(branch["branch_id"] for branch in await session.list_branches())
    assert names == ["Retry", "main", "retry", "retry "]
    assert contents(await session.get_items(branch_id="Retry")) == ["q1", "a1"]
    await session.close()


async def test_purge_drops_branch_records(database: Database) -> None:
    """Rows deleted by a rewrite (a purge) leave no branch record pointing at them."""
    sid = uuid.uuid4().hex
    session = database.open(sid)
    await session.add_items(EXCHANGES)
    store = session._advanced  # noqa: SLF001 (its rewrite is what a purge calls)
    rows = await store.rows(sid)
    assert await store.rewrite(sid, {rows[0][0]: None, rows[1][0]: None}) == 2
    assert contents(await session.get_items()) == ["q2", "a2", "q3", "a3"]
    turns = await session.get_conversation_turns()
    assert [turn["turn"] for turn in turns] == [1, 2]
    structure = f"{database.messages}_structure" if database.kind != "sqlite" else None
    if structure is not None:
        async with database.engine.connect() as conn:
            orphans = await conn.execute(
                text(
                    f"SELECT count(*) FROM {structure} s WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {database.messages} m WHERE m.id = s.message_id)"
                )
            )
            assert orphans.scalar_one() == 0
    await session.close()


@pytest.mark.postgres
async def test_missing_tables_are_named(tmp_path: Path) -> None:
    """Without create_tables, a database without the tables fails with an error naming them."""
    url = database_url("postgres", tmp_path)
    engine = create_async_engine(url)
    sessions, messages = unique_tables()
    session = AdvancedSQLAlchemySession(
        "s", engine=engine, sessions_table=sessions, messages_table=messages
    )
    try:
        with pytest.raises(StorageError, match=messages):
            await session.add_items([message("hi")])
    finally:
        await session.close()
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


async def test_one_sqlite_file_for_both_classes(tmp_path: Path) -> None:
    """On SQLite, AdvancedSQLiteSession, ours over aiosqlite and the SDK's read one tree."""
    path = tmp_path / "both.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    alchemy = AdvancedSQLAlchemySession("s", engine=engine, create_tables=True)
    await alchemy.add_items(EXCHANGES)
    await alchemy.create_branch_from_turn(2, "retry")
    await alchemy.add_items([message("q2b")])
    lite = AdvancedSQLiteSession(session_id="s", db_path=path)
    assert await lite.current_branch() == "retry"
    assert contents(await lite.get_items()) == ["q1", "a1", "q2b"]
    await lite.switch_to_branch("main")
    await lite.add_items([message("q4")])
    assert contents(await alchemy.get_items()) == [*contents(list(EXCHANGES)), "q4"]
    assert [b["branch_id"] for b in await alchemy.list_branches()] == ["main", "retry"]
    sdk = SDKAdvancedSQLiteSession(session_id="s", db_path=str(path))
    assert contents(await sdk.get_items()) == [*contents(list(EXCHANGES)), "q4"]
    assert [turn["turn"] for turn in await sdk.get_conversation_turns()] == [1, 2, 3, 4]
    sdk.close()
    lite.close()
    await alchemy.close()
    await engine.dispose()


async def test_from_url_owns_its_engine(tmp_path: Path) -> None:
    """from_url returns an advanced session whose close disposes of the engine it made."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'own.db'}"
    async with AdvancedSQLAlchemySession.from_url("s", url=url, create_tables=True) as session:
        assert isinstance(session, AdvancedSQLAlchemySession)
        await session.add_items(EXCHANGES)
        assert await session.create_branch_from_content("Q2", "b") == "b"
        assert contents(await session.get_items()) == ["q1", "a1"]
    with pytest.raises(Exception, match="closed"):
        await session.get_items()

"""``migrate`` carries advanced sessions' branch trees between SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import contextlib
import importlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import AdvancedSQLiteSession, SQLAlchemySession, SQLiteSession
from agent_sessions.admin import SessionDatabase, VerificationError, migrate
from tests.admin.test_tree_transfer import TREE, advanced_file
from tests.admin.trees import grow_tree, observe, server_tables, to_seconds

SERVER_KINDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@contextlib.asynccontextmanager
async def _no_server() -> AsyncIterator[None]:
    yield None


def table_names(path: Path) -> set[str]:
    """The tables of a SQLite file."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def sql(path: Path, statement: str) -> None:
    """Run one statement on a SQLite file and commit."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(statement)
    finally:
        conn.close()


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_an_advanced_sqlite_file_migrates_to_a_server_with_its_whole_tree(
    tmp_path: Path, kind: str
) -> None:
    """Every branch reads the same on the server; a second run finds it all identical."""
    source = tmp_path / "source.db"
    seen = await advanced_file(source)
    async with server_tables(kind) as tables:
        async with (
            SessionDatabase(source) as src,
            SessionDatabase(
                tables.url,
                sessions_table=tables.sessions,
                messages_table=tables.messages,
                create=True,
            ) as dst,
        ):
            report = await migrate(src, dst)
            again = await migrate(src, dst)
        async with tables.session(TREE) as session:
            assert await observe(session) == seen
            with pytest.raises(ValueError, match="never reused"):
                await session.create_branch_from_turn(1, "doomed")  # deleted, still reserved
        async with SQLAlchemySession.from_url(
            "plain",
            url=tables.url,
            sessions_table=tables.sessions,
            messages_table=tables.messages,
        ) as plain:
            assert await plain.get_items() == [{"role": "user", "content": "no branch here"}]
    assert (report.copied, report.trees, report.notes) == (["plain", TREE], [TREE], [])
    assert (again.identical, again.items, again.trees) == (["plain", TREE], 0, [])


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_server_tree_migrates_to_a_sqlite_file(tmp_path: Path, kind: str) -> None:
    """AdvancedSQLiteSession reads the server's tree; the SDK's class reads main's items."""
    from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSession

    copy = tmp_path / "copy.db"
    async with server_tables(kind) as tables:
        async with tables.session(TREE, create=True) as session:
            await grow_tree(session)
            seen = await observe(session)
        async with (
            SessionDatabase(
                tables.url, sessions_table=tables.sessions, messages_table=tables.messages
            ) as src,
            SessionDatabase(copy, create=True) as dst,
        ):
            report = await migrate(src, dst)
    assert report.trees == [TREE]
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as ours:
        # Times copied from a server keep their microseconds in the file, where the SQLite
        # class shows them as stored; AdvancedSQLAlchemySession shows whole seconds.
        assert to_seconds(await observe(ours)) == seen
        main_items = await ours.get_items(branch_id="main")
    sdk = SDKAdvancedSession(session_id=TREE, db_path=copy)
    try:
        assert await sdk.get_items() == main_items
    finally:
        sdk.close()


@pytest.mark.parametrize(
    "kind",
    [pytest.param("sqlite", marks=pytest.mark.sqlite), *SERVER_KINDS],
)
async def test_items_copied_without_their_tree_are_copied_again(tmp_path: Path, kind: str) -> None:
    """Redoes a session whose items an earlier migration copied without the branch tables."""
    source, items_only = tmp_path / "source.db", tmp_path / "items-only.db"
    seen = await advanced_file(source)
    shutil.copyfile(source, items_only)
    for table in ("message_structure", "turn_usage", "branch_reservations"):
        sql(items_only, f"DROP TABLE {table}")  # a plain file: what the old migrate copied
    async with server_tables(kind) if kind != "sqlite" else _no_server() as tables:
        target = str(tmp_path / "copy.db") if tables is None else tables.url
        names = (
            {}
            if tables is None
            else {
                "sessions_table": tables.sessions,
                "messages_table": tables.messages,
            }
        )
        async with (
            SessionDatabase(items_only) as src,
            SessionDatabase(target, create=True, **names) as dst,
        ):
            await migrate(src, dst)
        async with (
            SessionDatabase(source) as src,
            SessionDatabase(target, create=True, **names) as dst,
        ):
            report = await migrate(src, dst)
        opened = (
            AdvancedSQLiteSession(session_id=TREE, db_path=target)
            if tables is None
            else tables.session(TREE)
        )
        async with opened as session:
            assert await observe(session) == seen
    assert (report.redone, report.identical, report.trees) == ([TREE], ["plain"], [TREE])


async def test_a_tree_that_differs_at_the_destination_is_a_conflict(tmp_path: Path) -> None:
    """Leaves a session whose tree changed at the destination; ``replace`` restores the source's."""
    source, copy = tmp_path / "source.db", tmp_path / "copy.db"
    seen = await advanced_file(source)
    async with SessionDatabase(source) as src, SessionDatabase(copy, create=True) as dst:
        await migrate(src, dst)
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        await session.switch_to_branch("main")  # the items stay, the tree changes
    async with SessionDatabase(source) as src, SessionDatabase(copy, create=True) as dst:
        kept = await migrate(src, dst)
        replaced = await migrate(src, dst, replace=True)
    async with AdvancedSQLiteSession(session_id=TREE, db_path=copy) as session:
        assert await observe(session) == seen
    assert kept.conflicts == [TREE]
    assert (replaced.replaced, replaced.trees) == ([TREE], [TREE])


async def test_a_tree_that_reads_back_differently_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rolls the session back, items included, when its tree reads back short of a record."""
    source, copy = tmp_path / "source.db", tmp_path / "copy.db"
    await advanced_file(source)
    migrate_module = importlib.import_module("agent_sessions.admin.migrate")
    write_tree = migrate_module.write_tree

    async def lossy(*args: Any, **kwargs: Any) -> None:
        db, tree, conn, sid, records = args
        await write_tree(db, tree, conn, sid, records[:-1], **kwargs)

    monkeypatch.setattr(migrate_module, "write_tree", lossy)
    async with SessionDatabase(source) as src, SessionDatabase(copy, create=True) as dst:
        with pytest.raises(VerificationError, match="branch tree of session 'tree'"):
            await migrate(src, dst, session_ids=[TREE])
        assert await dst.list_sessions() == []


async def test_a_plain_database_migrates_without_branch_tables(tmp_path: Path) -> None:
    """Creates no branch table at the destination of a database that has none."""
    source, copy = tmp_path / "plain.db", tmp_path / "copy.db"
    async with SQLiteSession("u", source) as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    async with SessionDatabase(source) as src, SessionDatabase(copy, create=True) as dst:
        report = await migrate(src, dst)
    assert (report.copied, report.trees) == (["u"], [])
    assert not {"message_structure", "agent_messages_branches"} & table_names(copy)

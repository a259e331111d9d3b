"""``SessionDatabase.branch_tree``: what the advanced sessions report, read without writing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession, SQLiteSession
from agent_sessions.admin import SessionDatabase
from agent_sessions.admin.branches import BranchTree
from tests.admin.trees import AdvancedSession, grow_tree, server_tables

TREE = "tree"
PARENTS = {"main": None, "retry": "main", "deeper": "retry", "orphan": "main", "kept": "main"}
"""Where each branch of the grown tree hangs ("orphan" moved to main when "doomed" went)."""


@asynccontextmanager
async def grown(kind: str, tmp_path: Path) -> AsyncIterator[tuple[SessionDatabase, Any]]:
    """A grown tree in a database of ``kind``: the admin view, and a maker of the session."""
    if kind in ("sqlite", "aiosqlite"):
        path = tmp_path / "tree.db"
        if kind == "sqlite":

            def make() -> AdvancedSession:
                return AdvancedSQLiteSession(session_id=TREE, db_path=path)
        else:

            def make() -> AdvancedSession:
                url = f"sqlite+aiosqlite:///{path}"
                return AdvancedSQLAlchemySession.from_url(TREE, url=url, create_tables=True)

        async with make() as session:
            await grow_tree(session)
        async with SessionDatabase(path) as db:
            yield db, make
        return
    async with server_tables(kind) as tables:
        async with tables.session(TREE, create=True) as session:
            await grow_tree(session)
        async with SessionDatabase(
            tables.url, sessions_table=tables.sessions, messages_table=tables.messages
        ) as db:
            yield db, lambda: tables.session(TREE)


KINDS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite),
    pytest.param("aiosqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


async def reported(session: AdvancedSession) -> dict[str, Any]:
    """What the session says of its branches and usage, branch by branch."""
    branches = await session.list_branches()
    return {
        "branches": branches,
        "current": await session.current_branch(),
        "usage": await session.get_session_usage(),
        "per_branch": {
            b["branch_id"]: (
                await session.get_session_usage(branch_id=b["branch_id"]),
                await session.get_turn_usage(branch_id=b["branch_id"]),
            )
            for b in branches
        },
    }


def as_reported(tree: BranchTree) -> dict[str, Any]:
    """The same, as the admin view's tree says it."""
    totals = None if tree.usage is None else tree.usage.to_dict()
    return {
        "branches": tree.legacy_view()["branches"],
        "current": tree.current,
        "usage": totals,
        "per_branch": {
            b.branch_id: (
                None if b.usage is None else b.usage.to_dict(),
                [turn.to_dict() for turn in b.turns],
            )
            for b in tree.branches
        },
    }


@pytest.mark.parametrize("kind", KINDS)
async def test_the_tree_is_what_the_session_reports(tmp_path: Path, kind: str) -> None:
    """Lists each branch with its parent, size, time, current mark and usage, as the session."""
    async with grown(kind, tmp_path) as (db, make):
        tree = await db.branch_tree(TREE)
        legacy = await db.advanced(TREE)
        async with make() as session:
            expected = await reported(session)
    assert tree is not None
    assert as_reported(tree) == expected
    assert {b.branch_id: b.parent_id for b in tree.branches} == PARENTS
    assert tree.current == "deeper"
    assert [b.branch_id for b in tree.branches if b.current] == ["deeper"]
    assert legacy == {"branches": expected["branches"], "usage": expected["usage"]}
    assert tree.usage is not None
    assert tree.usage.turns == sum(len(b.turns) for b in tree.branches)


@pytest.mark.sqlite
async def test_both_classes_and_both_engines_read_one_file_the_same(tmp_path: Path) -> None:
    """Reports one file's tree the same by path and by URL, and as both session classes do."""
    path = tmp_path / "tree.db"
    async with AdvancedSQLiteSession(session_id=TREE, db_path=path) as session:
        await grow_tree(session)
        ours = await reported(session)
    url = f"sqlite+aiosqlite:///{path}"
    async with AdvancedSQLAlchemySession.from_url(TREE, url=url) as session:
        theirs = await reported(session)
    async with SessionDatabase(path) as by_path, SessionDatabase(url) as by_url:
        first, second = await by_path.branch_tree(TREE), await by_url.branch_tree(TREE)
    assert first == second
    assert first is not None
    assert as_reported(first) == ours == theirs


@pytest.mark.sqlite
async def test_reading_the_tree_writes_nothing(tmp_path: Path) -> None:
    """Leaves the file's bytes, and the files beside it, as they were."""
    path = tmp_path / "db" / "tree.db"
    path.parent.mkdir()
    async with AdvancedSQLiteSession(session_id=TREE, db_path=path) as session:
        await grow_tree(session)

    def state() -> tuple[str, list[str]]:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return digest, sorted(p.name for p in path.parent.iterdir())

    before = state()
    async with SessionDatabase(path) as db:
        await db.branch_tree(TREE)
        await db.row_branches(TREE)
    assert state() == before


@pytest.mark.sqlite
async def test_a_plain_database_has_no_tree(tmp_path: Path) -> None:
    """Returns None for a database without branch tables."""
    path = tmp_path / "plain.db"
    async with SQLiteSession("u", path) as session:
        await session.add_items([{"role": "user", "content": "hi"}])
    async with SessionDatabase(path) as db:
        assert await db.branch_tree("u") is None
        assert await db.advanced("u") is None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_session_never_branched_has_main_only(tmp_path: Path, kind: str) -> None:
    """Shows a session of an advanced database that was never branched as ``main`` alone."""
    async with grown(kind, tmp_path) as (db, _make):
        tree = await db.branch_tree("nobody-branched-this")
    assert tree is not None
    assert [(b.branch_id, b.items, b.current, b.usage) for b in tree.branches] == [
        ("main", 0, True, None)
    ]
    assert tree.to_dict()["current_branch"] == "main"

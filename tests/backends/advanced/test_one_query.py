"""A read of main is one statement, and returns exactly what the segment walk returns."""
# ruff: noqa: SLF001 - the walk, the one statement and the reader are private: compared directly

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sessions.backends.advanced import AdvancedSQLiteSession
from tests.backends.advanced.test_session import assistant, contents, turns, user

pytestmark = pytest.mark.sqlite

LIMITS = (None, 0, 1, 2, 3, 5, 8, 13, 40)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain autocommit connection to the test file, for comparing the two reads."""
    conn = sqlite3.connect(tmp_path / "one.db", isolation_level=None)
    yield conn
    conn.close()


def open_session(tmp_path: Path, sid: str = "s") -> AdvancedSQLiteSession:
    """Open a session on the test file."""
    return AdvancedSQLiteSession(session_id=sid, db_path=tmp_path / "one.db")


def walked(
    session: AdvancedSQLiteSession, conn: sqlite3.Connection, branch: str | None, limit: int | None
) -> list[str]:
    """What the segment walk reads, in one read transaction."""
    chain = session._advanced._chain
    conn.execute("BEGIN")
    try:
        return chain.texts(conn, "s", chain.resolve(conn, "s", branch), limit)
    finally:
        conn.execute("ROLLBACK")


def assert_same(session: AdvancedSQLiteSession, conn: sqlite3.Connection, branch: str) -> None:
    """Both reads agree on ``branch``, named and (after a switch) as the current branch."""
    chain = session._advanced._chain
    for limit in LIMITS:
        expected = walked(session, conn, branch, limit)
        assert chain.read_texts(conn, "s", branch, limit) == expected, (branch, limit)
    conn.execute(session._advanced._adv.set_current, ("s", branch))
    for limit in LIMITS:
        assert chain.read_texts(conn, "s", None, limit) == walked(session, conn, None, limit)
    assert not conn.in_transaction


async def test_a_three_deep_chain_with_pops_and_deletes(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    """Pops of own and inherited items and a deleted middle branch: one query, same rows."""
    session = open_session(tmp_path)
    await session.add_items(turns(6))
    await session.pop_item()
    await session.add_items([user("u6b"), assistant("a6b")])
    await session.create_branch_from_turn(5, "b1")
    await session.add_items(turns(3))
    await session.pop_item()  # an own item
    await session.create_branch_from_turn(6, "b2")
    await session.add_items([user("x1"), assistant("y1")])
    await session.create_branch_from_turn(6, "b3")
    await session.pop_item()
    await session.pop_item()  # inherited items: b3's cutoff drops
    await session.add_items([user("z1")])
    await session.switch_to_branch("main")
    await session.pop_item()  # main's newest: forks keep their own records of it
    await session.create_branch_from_turn(2, "gone")
    await session.add_items(turns(2))
    await session.create_branch_from_turn(3, "kept")
    await session.add_items([user("k")])
    await session.delete_branch("gone", force=True)  # "kept" moves to main
    for branch in ("main", "b1", "b2", "b3", "kept"):
        assert_same(session, conn, branch)
    with pytest.raises(ValueError, match="does not exist"):
        session._advanced._chain.read_texts(conn, "s", "nope", None)
    assert not conn.in_transaction
    session.close()


async def test_get_items_on_main_is_one_statement(tmp_path: Path) -> None:
    """A read of main is one SELECT on the reader: no transaction, no chain walk."""
    session = open_session(tmp_path)
    await session.add_items(turns(5))
    await session.get_items()
    reader = session._advanced._reader.connection
    assert reader is not None
    seen: list[str] = []
    reader.set_trace_callback(seen.append)
    assert len(await session.get_items(3)) == 3
    assert len(await session.get_items()) == 10
    reader.set_trace_callback(None)
    assert len(seen) == 2
    assert not any(s.startswith(("BEGIN", "ROLLBACK")) for s in seen)
    session.close()


async def test_a_deleted_current_branch_reads_main(tmp_path: Path) -> None:
    """A current branch another object deleted reads as main, in one statement or the walk."""
    one, other = open_session(tmp_path), open_session(tmp_path)
    await one.add_items(turns(3))
    await one.create_branch_from_turn(2, "b")
    await other.delete_branch("b", force=True)
    assert len(await one.get_items()) == 6
    await other.clear_session()
    assert await one.get_items() == []
    one.close()
    other.close()


async def test_a_switch_by_another_object_is_seen(tmp_path: Path) -> None:
    """Another object switching the branch: the next read follows it, and back to main."""
    one, other = open_session(tmp_path), open_session(tmp_path)
    await one.add_items(turns(3))
    assert len(await one.get_items()) == 6
    await other.create_branch_from_turn(2, "b")
    await other.add_items([user("b")])
    assert contents(await one.get_items()) == ["u1", "a1", "b"]
    await other.switch_to_branch("main")
    assert len(await one.get_items()) == 6
    one.close()
    other.close()

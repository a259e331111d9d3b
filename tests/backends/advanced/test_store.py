"""AdvancedSQLiteStore's plumbing: inline reads, one transaction per batch, and undo of pops."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.backends.advanced import AdvancedSQLiteSession
from agent_sessions.errors import StorageError
from agent_sessions.store import Popped
from tests.backends.advanced.test_session import (
    assistant,
    call,
    contents,
    message_rows,
    turns,
    user,
)
from tests.conftest import write_raw_sqlite

pytestmark = pytest.mark.sqlite

Opener = Callable[..., AdvancedSQLiteSession]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh database file."""
    return tmp_path / "store.db"


@pytest.fixture
def opener(path: Path) -> Opener:
    """Open sessions on the one file."""
    return lambda sid, **kw: AdvancedSQLiteSession(session_id=sid, db_path=path, **kw)


def query(path: Path, sql: str, *params: object) -> list[Any]:
    """Run one statement on a fresh connection to the file and return its rows."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# Reads ------------------------------------------------------------------------------------


async def test_reads_do_not_queue_behind_the_worker(opener: Opener) -> None:
    """Reads of a file are answered while the store's worker thread is busy."""
    async with opener("r") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        store = session._advanced  # noqa: SLF001 - occupy the worker the way a slow write would
        gate = threading.Event()
        busy = asyncio.ensure_future(store._call("block", lambda _conn: gate.wait(10)))  # noqa: SLF001
        try:
            assert contents(await asyncio.wait_for(session.get_items(), 2)) == ["u1", "a1"]
            assert await asyncio.wait_for(session.current_branch(), 2) == "alt"
            assert len(await asyncio.wait_for(session.list_branches(), 2)) == 2
            assert len(await asyncio.wait_for(session.get_conversation_turns("main"), 2)) == 2
        finally:
            gate.set()
            await busy


async def test_reads_use_the_worker_while_the_reader_is_taken(opener: Opener) -> None:
    """A read finds its way through the worker while another thread holds the reader."""
    async with opener("t") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        lock = session._advanced._reading  # noqa: SLF001 - as another thread's read would hold it
        with lock:
            assert contents(await session.get_items()) == ["u1", "a1", "u2", "a2"]
            assert await session.get_tool_usage() == []


async def test_a_fresh_file_is_read_before_any_table_exists(opener: Opener) -> None:
    """Reads of a brand-new file answer as for an empty session."""
    async with opener("new") as session:
        assert await session.get_items() == []
        assert await session.current_branch() == "main"
        assert [b["branch_id"] for b in await session.list_branches()] == ["main"]


async def test_existing_tables_are_not_recreated_under_a_held_write_lock(
    opener: Opener, path: Path
) -> None:
    """A file that has the branch tables is read through the worker without taking a lock."""
    async with opener("x") as session:
        await session.add_items(turns(1))  # type: ignore[arg-type]
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another program holds the write lock throughout
        async with opener("x") as session:
            with session._advanced._reading:  # noqa: SLF001 - send the read to the worker
                items = await asyncio.wait_for(session.get_items(), 2)
        assert contents(items) == ["u1", "a1"]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


# Writes -----------------------------------------------------------------------------------


async def test_durable_by_default_and_faster_on_request(opener: Opener, tmp_path: Path) -> None:
    """The store commits with synchronous=FULL by default, and NORMAL with durable=False."""

    async def synchronous(session: AdvancedSQLiteSession) -> int:
        store = session._advanced  # noqa: SLF001 - the worker's own connection setting
        row = await store._call("pragma", lambda c: c.execute("PRAGMA synchronous").fetchone())  # noqa: SLF001
        return int(row[0])

    async with opener("d") as durable:
        assert await synchronous(durable) == 2
    async with AdvancedSQLiteSession(
        session_id="d", db_path=tmp_path / "fast.db", durable=False
    ) as fast:
        assert await synchronous(fast) == 1


async def test_a_batch_that_fails_midway_leaves_nothing(opener: Opener, path: Path) -> None:
    """A batch whose last write fails stores none of its items or their records."""
    async with opener("b") as session:
        await session.add_items(turns(1))  # type: ignore[arg-type]
        query(
            path,
            "CREATE TRIGGER refuse AFTER INSERT ON message_structure "
            "WHEN NEW.tool_name = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        before = message_rows(path)
        with pytest.raises(StorageError, match="refused"):
            await session.add_items([user("u2"), assistant("a2"), call("boom")])  # type: ignore[list-item]
        assert message_rows(path) == before
        assert query(path, "SELECT count(*) FROM message_structure") == [(2,)]
        assert contents(await session.get_items()) == ["u1", "a1"]


async def test_concurrent_batches_are_whole_and_numbered_in_order(
    opener: Opener, path: Path
) -> None:
    """Batches added at once are each stored contiguously, with turn numbers in storage order."""
    async with opener("c") as session:
        batches = [[user(f"u{i}"), assistant(f"a{i}"), user(f"v{i}")] for i in range(12)]
        await asyncio.gather(*(session.add_items(batch) for batch in batches))  # type: ignore[arg-type]
        stored = contents(await session.get_items())
        chunks = [stored[i : i + 3] for i in range(0, len(stored), 3)]
        assert sorted(chunks) == sorted(contents(batch) for batch in batches)
        found = await session.get_conversation_turns()
        assert [t["turn"] for t in found] == list(range(1, 25))
        recorded = query(
            path,
            "SELECT user_turn_number FROM message_structure WHERE message_type = 'user' "
            "ORDER BY message_id",
        )
        assert [turn for (turn,) in recorded] == list(range(1, 25))


# Undo of pops -----------------------------------------------------------------------------


def undo(session: AdvancedSQLiteSession) -> tuple[Any, Any]:
    """Return the session's store and its decoder for pops (the cancellation path's tools)."""
    return session._advanced, session._decode_for_pop  # noqa: SLF001


async def test_hundreds_of_inherited_pops_are_all_restored(opener: Opener) -> None:
    """Any number of pops of inherited items is undone in full, newest pop first."""
    async with opener("h") as session:
        await session.add_items(turns(160))  # type: ignore[arg-type]
        await session.create_branch_from_turn(160, "alt")
        before = await session.get_items()
        store, decode = undo(session)
        popped = [await store.pop("h", decode) for _ in range(300)]
        assert len(await session.get_items()) == 18
        for entry in reversed(popped):
            await store.restore("h", [entry])
        assert await session.get_items() == before


async def test_a_pop_is_restored_by_another_object_on_the_file(opener: Opener) -> None:
    """The popped row carries its own undo: any object on the file can put it back whole."""
    async with opener("o") as first, opener("o") as second:
        await first.add_items([user("u1"), call("search"), user("u2"), call("fetch")])  # type: ignore[list-item]
        grouped = await first.get_conversation_by_turns()
        store, decode = undo(first)
        popped = [await store.pop("o", decode) for _ in range(2)]
        other, _ = undo(second)
        for entry in reversed(popped):
            await other.restore("o", [entry])
        assert await first.get_conversation_by_turns() == grouped
        assert await first.get_tool_usage() == [("search", 1, 1), ("fetch", 1, 2)]


async def test_an_sdk_row_is_restored_without_a_branch_record(opener: Opener, path: Path) -> None:
    """A popped row a plain session wrote goes back as it was, with no structure row."""
    async with opener("k") as session:
        await session.add_items(turns(1))  # type: ignore[arg-type]
    write_raw_sqlite(path, "k", json.dumps(user("raw")))
    async with opener("k") as session:
        store, decode = undo(session)
        popped = await store.pop("k", decode)
        assert popped is not None
        await store.restore("k", [popped])
        await store.restore("k", [popped])  # a second restore finds it back already
        assert contents(await session.get_items()) == ["u1", "a1", "raw"]
        record = "SELECT count(*) FROM message_structure WHERE message_id = ?"
        assert query(path, record, popped.row_id) == [(0,)]


async def test_no_restore_on_a_branch_deleted_meanwhile(opener: Opener, path: Path) -> None:
    """A pop from a branch that was deleted before the restore is not put back."""
    async with opener("g") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        await session.add_items([user("x")])  # type: ignore[list-item]
        store, decode = undo(session)
        popped = await store.pop("g", decode)
        assert popped is not None
        await session.delete_branch("alt", force=True)
        before = message_rows(path)
        await store.restore("g", [popped])
        assert message_rows(path) == before


async def test_a_cutoff_moved_since_the_pop_stays(opener: Opener) -> None:
    """Restoring an inherited pop leaves alone a cutoff that a clear has moved since."""
    async with opener("m") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        store, decode = undo(session)
        popped = await store.pop("m", decode)
        assert popped is not None
        await session.clear_session()
        await store.restore("m", [popped])
        assert await session.get_items() == []


async def test_a_plain_popped_row_is_put_back_on_the_current_branch(
    opener: Opener, path: Path
) -> None:
    """A deleted row handed back without an undo record returns to the current branch."""
    async with opener("p") as session:
        await session.add_items(turns(1))  # type: ignore[arg-type]
        await session.create_branch_from_turn(1, "alt")
        await session.add_items([user("x")])  # type: ignore[list-item]
        store, decode = undo(session)
        popped = await store.pop("p", decode)
        assert popped is not None
        await store.restore("p", [Popped(popped.row_id, popped.text, popped.item)])
        assert contents(await session.get_items()) == ["x"]
        assert [t["turn"] for t in await session.get_conversation_turns()] == [1]
        record = "SELECT branch_id, user_turn_number FROM message_structure WHERE message_id = ?"
        assert query(path, record, popped.row_id) == [("alt", 1)]


# Undo of a whole exchange ------------------------------------------------------------------


async def test_pop_turn_on_a_branch_reaches_into_inherited_items(opener: Opener) -> None:
    """pop_turn on a branch removes its own items and hides inherited ones, on it alone."""
    async with opener("pt") as session:
        await session.add_items(turns(3))  # type: ignore[arg-type]
        await session.create_branch_from_turn(3, "alt")
        await session.add_items([assistant("own")])  # type: ignore[list-item]
        assert contents(await session.pop_turn()) == ["u2", "a2", "own"]
        assert contents(await session.get_items()) == ["u1", "a1"]
        assert [t["turn"] for t in await session.get_conversation_turns()] == [1]
        await session.switch_to_branch("main")
        assert contents(await session.get_items()) == contents(turns(3))


async def test_pop_turn_past_a_fork_point_leaves_the_fork(opener: Opener) -> None:
    """pop_turn past what a fork inherits removes it from the parent and leaves the fork."""
    async with opener("pf") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        await session.switch_to_branch("main")
        assert contents(await session.pop_turn()) == ["u2", "a2"]
        assert contents(await session.pop_turn()) == ["u1", "a1"]
        assert await session.get_items() == []
        assert contents(await session.get_items(branch_id="alt")) == ["u1", "a1"]


async def test_an_undone_pop_turn_restores_every_item(opener: Opener) -> None:
    """Restoring each row of a pop_through, newest first as a cancelled pop_turn does, undoes it."""
    async with opener("pr") as session:
        await session.add_items(turns(3))  # type: ignore[arg-type]
        await session.create_branch_from_turn(3, "alt")
        await session.add_items([call("search"), assistant("own")])  # type: ignore[list-item]
        before = await session.get_conversation_by_turns()
        store, decode = undo(session)
        taken = await store.pop_through("pr", decode, lambda item: item.get("role") == "user")
        assert contents(await session.get_items()) == ["u1", "a1"]
        for row in taken:
            await store.restore("pr", [row])
        assert len(await session.get_items()) == 6
        assert await session.get_conversation_by_turns() == before

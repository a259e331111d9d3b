"""One SQLiteStore shared by many sessions: group commit, failure isolation, lifecycle."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent_sessions import SessionClosedError, SQLiteStore, StorageError

pytestmark = pytest.mark.sqlite


def _batch(owner: str, size: int = 3) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{owner}-{i}"} for i in range(size)]


async def _count_commits(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    worker = store._worker  # noqa: SLF001 - watches the statements the worker's connection runs
    await worker.run(lambda conn: conn.set_trace_callback(statements.append))
    return statements


async def test_concurrent_batches_share_commits(db_path: Path) -> None:
    """Twenty sessions writing at once on a shared store need fewer commits than batches."""
    async with SQLiteStore(db_path) as store:
        statements = await _count_commits(store)
        sessions = [store.session(f"s{i}") for i in range(20)]
        await asyncio.gather(*(s.add_items(_batch(f"s{i}")) for i, s in enumerate(sessions)))
        commits = sum(1 for statement in statements if statement == "COMMIT")
        assert 1 <= commits < 20
        for index, session in enumerate(sessions):
            assert await session.get_items() == _batch(f"s{index}")


async def test_a_failing_batch_does_not_sink_the_others(db_path: Path) -> None:
    """When one batch of a group fails in the database, the others are still stored whole."""
    async with SQLiteStore(db_path) as store:
        await store.session("warmup").get_items()
        conn = sqlite3.connect(db_path)
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON agent_messages "
            "WHEN NEW.message_data LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
        conn.commit()
        conn.close()
        good = [store.session(f"good{i}") for i in range(5)]
        bad = store.session("bad")
        results = await asyncio.gather(
            *(s.add_items(_batch(f"good{i}")) for i, s in enumerate(good)),
            bad.add_items(
                [{"role": "user", "content": "fine"}, {"role": "user", "content": "poison"}]
            ),
            return_exceptions=True,
        )
        assert results[:5] == [None] * 5
        assert isinstance(results[5], StorageError)
        assert "poisoned" in str(results[5])
        assert await bad.get_items() == []
        for index, session in enumerate(good):
            assert await session.get_items() == _batch(f"good{index}")


async def test_closing_a_session_leaves_the_shared_store_open(db_path: Path) -> None:
    """A session closed on a shared store does not close the store or its other sessions."""
    async with SQLiteStore(db_path) as store:
        first, second = store.session("a"), store.session("b")
        await first.add_items(_batch("a"))
        first.close()
        await second.add_items(_batch("b"))
        assert await store.session("a").get_items() == _batch("a")
    with pytest.raises(SessionClosedError):
        await second.get_items()
    with pytest.raises(SessionClosedError):
        await second.add_items(_batch("b"))


async def test_store_sessions_carry_the_store_settings(tmp_path: Path) -> None:
    """Sessions of a store report its path and tables, as sessions that opened them would."""
    async with SQLiteStore(tmp_path / "x.db") as store:
        session = store.session("s", session_settings={"limit": 1})
        assert (session.db_path, session.sessions_table) == (tmp_path / "x.db", "agent_sessions")
        await session.add_items(_batch("s"))
        assert await session.get_items() == _batch("s")[-1:]


# The SDK-style constructor shares one store per file ------------------------------------------


async def test_sessions_of_one_file_share_one_store(db_path: Path) -> None:
    """SQLiteSession(id, path) on one file shares a store; other settings or :memory: do not."""
    from agent_sessions import SQLiteSession

    a, b = SQLiteSession("a", db_path), SQLiteSession("b", str(db_path))
    other = SQLiteSession("c", db_path, durable=False)
    memory1, memory2 = SQLiteSession("m"), SQLiteSession("m")
    try:
        assert a.store is b.store
        assert other.store is not a.store
        assert memory1.store is not memory2.store
        assert b.db_path == str(db_path)
    finally:
        for s in (a, b, other, memory1, memory2):
            s.close()


async def test_closing_one_session_leaves_the_others_working(db_path: Path) -> None:
    """The shared store closes only with its last session; a new one opens it again."""
    from agent_sessions import SQLiteSession

    a, b = SQLiteSession("a", db_path), SQLiteSession("b", db_path)
    store = a.store
    await a.add_items(_batch("a"))
    a.close()
    await b.add_items(_batch("b"))
    assert await b.get_items() == _batch("b")
    await b.aclose()
    assert isinstance(store, SQLiteStore)
    assert store.closed
    async with SQLiteSession("a", db_path) as again:
        assert again.store is not store
        assert await again.get_items() == _batch("a")


async def test_an_unclosed_shared_session_warns_and_frees_its_share(db_path: Path) -> None:
    """A session collected unclosed warns; the store stays open for the others."""
    from agent_sessions import SQLiteSession

    kept = SQLiteSession("kept", db_path)
    dropped = SQLiteSession("dropped", db_path)
    await dropped.add_items(_batch("d"))
    with pytest.warns(ResourceWarning, match="never closed"):
        del dropped
    await kept.add_items(_batch("k"))
    assert await kept.get_items() == _batch("k")
    store = kept.store
    kept.close()
    assert isinstance(store, SQLiteStore)
    assert store.closed


def test_sessions_in_several_threads_and_loops_share_a_file(db_path: Path) -> None:
    """Sessions of one file in four threads, each with its own loop, lose nothing."""
    import threading

    from agent_sessions import SQLiteSession

    errors: list[BaseException] = []

    async def work(index: int) -> None:
        async with SQLiteSession(f"t{index}", db_path) as session:
            for turn in range(30):
                await session.add_items(_batch(f"{index}-{turn}", 2))
                assert len(await session.get_items()) == 2 * (turn + 1)

    def run(index: int) -> None:
        try:
            asyncio.run(work(index))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


async def test_a_replaced_file_is_not_shared_and_is_reported(db_path: Path) -> None:
    """After the file is deleted, old sessions report it; a new session opens the new file."""
    from agent_sessions import DatabaseFileGoneError, SQLiteSession

    old = SQLiteSession("s", db_path)
    await old.add_items(_batch("old"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - test setup
    try:
        new = SQLiteSession("s", db_path)
        assert new.store is not old.store
        with pytest.raises(DatabaseFileGoneError):
            await old.add_items(_batch("lost"))
        await new.add_items(_batch("new"))
        assert await new.get_items() == _batch("new")
        new.close()
    finally:
        old.close()


def test_the_reader_serves_one_thread_at_a_time() -> None:
    """While one thread reads on the loop's reader, another thread gets None (the worker)."""
    import threading

    from agent_sessions.backends._sqlite_connection import ReaderSlot

    slot = ReaderSlot()
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    slot.hand_over(conn)
    assert slot.take() is conn
    assert slot.take() is conn  # the same thread may read twice (two tasks of one loop)
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(slot.take()))
    other.start()
    other.join()
    assert seen == [None]
    slot.give_back()
    slot.give_back()
    other = threading.Thread(target=lambda: (seen.append(slot.take()), slot.give_back()))
    other.start()
    other.join()
    assert seen == [None, conn]
    slot.close()

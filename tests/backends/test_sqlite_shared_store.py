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

"""What only the SQLite backend has: the SDK's file layout, durability, files shared by many."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import agents
import pytest

from agent_sessions import (
    CorruptItemError,
    InvalidIdentifierError,
    SessionClosedError,
    SQLiteSession,
    SQLiteStore,
    StorageUnavailableError,
)
from tests.conftest import write_raw_sqlite

pytestmark = pytest.mark.sqlite

TURN = [
    {"role": "user", "content": "What's the weather in Paris? ünïcødé 🙂"},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "id": "fc_1",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
    },
]


async def _pragma(session: SQLiteSession, name: str) -> object:
    worker = session._sqlite._worker  # noqa: SLF001 - reads the live connection's settings
    return await worker.run(lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0])


async def test_reads_a_file_written_by_the_sdk(db_path: Path) -> None:
    """A file written by agents.SQLiteSession reads back intact, and ours can continue it."""
    sdk = agents.SQLiteSession("chat", db_path, session_settings=None)
    await sdk.add_items(TURN)  # type: ignore[arg-type]
    sdk.close()
    async with SQLiteSession("chat", db_path) as ours:
        assert await ours.get_items() == TURN
        await ours.add_items([{"role": "user", "content": "and tomorrow?"}])
        assert await ours.pop_item() == {"role": "user", "content": "and tomorrow?"}
        assert await ours.get_items(2) == TURN[2:]


async def test_sdk_reads_a_file_written_by_us(db_path: Path) -> None:
    """The SDK's class reads, pops and clears what ours wrote, in the same tables."""
    async with SQLiteSession("chat", db_path) as ours:
        await ours.add_items(TURN)  # type: ignore[arg-type]
        await ours.add_items([{"role": "user", "content": "second"}])
    sdk = agents.SQLiteSession("chat", db_path)
    try:
        assert await sdk.get_items() == [*TURN, {"role": "user", "content": "second"}]
        assert await sdk.pop_item() == {"role": "user", "content": "second"}
        assert await sdk.get_items(1) == TURN[-1:]
    finally:
        sdk.close()


async def test_custom_table_names_are_shared_with_the_sdk(db_path: Path) -> None:
    """Custom table names mean the same tables to both classes."""
    async with SQLiteSession("c", db_path, "my_sessions", "my_messages") as ours:
        await ours.add_items(TURN)  # type: ignore[arg-type]
    sdk = agents.SQLiteSession("c", db_path, "my_sessions", "my_messages")
    try:
        assert await sdk.get_items() == TURN
    finally:
        sdk.close()


async def test_schema_matches_the_sdk(tmp_path: Path) -> None:
    """Our tables and index are the SDK's, column for column."""
    ours_path, sdk_path = tmp_path / "ours.db", tmp_path / "sdk.db"
    async with SQLiteSession("s", ours_path) as ours:
        await ours.add_items([{"role": "user", "content": "x"}])
    sdk = agents.SQLiteSession("s", sdk_path)
    await sdk.add_items([{"role": "user", "content": "x"}])
    sdk.close()

    def layout(path: Path) -> dict[str, list[tuple[object, ...]]]:
        conn = sqlite3.connect(path)
        try:
            return {
                table: conn.execute(f"PRAGMA table_info({table})").fetchall()
                for table in ("agent_sessions", "agent_messages")
            } | {
                "index": conn.execute("PRAGMA index_info(idx_agent_messages_session_id)").fetchall()
            }
        finally:
            conn.close()

    ours, sdk_layout = layout(ours_path), layout(sdk_path)
    # The SDK's columns, in its order, then our four nullable provenance columns (schema v4).
    sdk_columns = sdk_layout["agent_messages"]
    assert ours["agent_messages"][: len(sdk_columns)] == sdk_columns
    extra = ours["agent_messages"][len(sdk_columns) :]
    assert [(name, kind, notnull) for _, name, kind, notnull, _, _ in extra] == [
        ("agent_name", "TEXT", 0),
        ("run_id", "TEXT", 0),
        ("run_position", "INTEGER", 0),
        ("item_digest", "TEXT", 0),
    ]
    assert {k: v for k, v in ours.items() if k != "agent_messages"} == {
        k: v for k, v in sdk_layout.items() if k != "agent_messages"
    }


async def test_durable_by_default_and_faster_on_request(tmp_path: Path) -> None:
    """Files use WAL with synchronous=FULL by default, and NORMAL with durable=False."""
    async with SQLiteSession("s", tmp_path / "a.db") as durable:
        assert await _pragma(durable, "journal_mode") == "wal"
        assert await _pragma(durable, "synchronous") == 2
    async with SQLiteSession("s", tmp_path / "b.db", durable=False) as fast:
        assert await _pragma(fast, "synchronous") == 1
        await fast.add_items([{"role": "user", "content": "kept"}])
        assert len(await fast.get_items()) == 1


async def test_latest_items_use_the_index(db_path: Path) -> None:
    """get_items(limit) reads through the (session_id, id) index, so its cost ignores history."""
    async with SQLiteSession("s", db_path) as session:
        await session.add_items([{"role": "user", "content": str(i)} for i in range(100)])
        statement = session._sqlite._sql.read_latest  # noqa: SLF001 - the exact SQL it runs
    conn = sqlite3.connect(db_path)
    try:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {statement}", ("s", 20)).fetchall()
    finally:
        conn.close()
    details = " ".join(str(row[-1]) for row in plan)
    assert "idx_agent_messages_session_id" in details
    assert "TEMP B-TREE" not in details  # no sort of the whole history


@pytest.mark.parametrize(
    "name", ["x; DROP TABLE y", "agent messages", 'quote"d', "1abc", "", "a.b", "a" * 64]
)
async def test_unsafe_table_names_are_refused(tmp_path: Path, name: str) -> None:
    """A table name that is not a plain identifier raises ValueError before any file is made."""
    path = tmp_path / "never.db"
    with pytest.raises(InvalidIdentifierError):
        SQLiteSession("s", path, messages_table=name)
    with pytest.raises(ValueError, match="sessions_table"):
        SQLiteSession("s", path, sessions_table=name)
    assert not path.exists()


async def test_memory_databases_are_private(tmp_path: Path) -> None:
    """Each ':memory:' session object has its own database, as with the SDK."""
    async with SQLiteSession("same") as first, SQLiteSession("same") as second:
        await first.add_items([{"role": "user", "content": "only in first"}])
        assert await second.get_items() == []
        assert len(await first.get_items()) == 1


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    """A path in a missing directory raises StorageUnavailableError naming the path."""
    path = tmp_path / "no" / "such" / "dir.db"
    async with SQLiteSession("s", path) as session:
        with pytest.raises(StorageUnavailableError, match=r"dir\.db"):
            await session.get_items()


async def test_corrupt_rows_warn_or_raise_in_strict_mode(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An undecodable row is skipped with a warning, or raises CorruptItemError when strict."""
    async with SQLiteSession("s", db_path) as session:
        await session.add_items([{"role": "user", "content": "good"}])
    write_raw_sqlite(db_path, "s", "{broken")
    async with SQLiteSession("s", db_path) as lenient:
        with caplog.at_level(logging.WARNING, logger="agent_sessions"):
            assert await lenient.get_items() == [{"role": "user", "content": "good"}]
        assert "undecodable row(s) in session 's'" in caplog.text
    async with SQLiteSession("s", db_path, strict=True) as strict:
        with pytest.raises(CorruptItemError, match="'s'"):
            await strict.get_items()
        with pytest.raises(CorruptItemError):
            await strict.pop_item()
        assert len(await strict.get_items(0)) == 0
    async with SQLiteSession("s", db_path) as check:
        caplog.clear()
        assert await check.get_items(1) == [{"role": "user", "content": "good"}]


async def test_closed_session_names_the_method(db_path: Path) -> None:
    """Every method raises SessionClosedError naming itself after close(), which is idempotent."""
    session = SQLiteSession("s", db_path)
    await session.add_items([{"role": "user", "content": "x"}])
    session.close()
    session.close()
    await session.aclose()
    for call, name in [
        (session.get_items(), "get_items"),
        (session.add_items([{"role": "user", "content": "y"}]), "add_items"),
        (session.pop_item(), "pop_item"),
        (session.clear_session(), "clear_session"),
    ]:
        with pytest.raises(SessionClosedError, match=name):
            await call


async def test_unclosed_session_warns(db_path: Path) -> None:
    """A used session that is garbage-collected without close() emits a ResourceWarning."""
    session = SQLiteSession("s", db_path)
    await session.add_items([{"role": "user", "content": "x"}])
    with pytest.warns(ResourceWarning, match="never closed"):
        del session  # the last reference: collected at once


async def test_many_sessions_on_one_file_write_concurrently(db_path: Path) -> None:
    """Twenty session objects on one file writing at once lose nothing and never see 'locked'."""
    import asyncio

    sessions = [SQLiteSession(f"s{i % 5}", db_path) for i in range(20)]
    try:

        async def write(index: int) -> None:
            for turn in range(10):
                await sessions[index].add_items([{"role": "user", "content": f"{index}-{turn}"}])

        await asyncio.gather(*(write(i) for i in range(20)))
        for sid in range(5):
            items = await sessions[sid].get_items()
            assert len(items) == 40
            for writer in range(sid, 20, 5):
                mine = [i["content"] for i in items if i["content"].startswith(f"{writer}-")]  # type: ignore[typeddict-item]
                assert mine == [f"{writer}-{turn}" for turn in range(10)]
    finally:
        for session in sessions:
            session.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from agent_sessions import SQLiteSession

    async def main(path, writer):
        shared, own = SQLiteSession("shared", path), SQLiteSession(f"own-{writer}", path)
        async with shared, own:
            for turn in range(40):
                batch = [{"role": "user", "content": f"{writer}-{turn}-{i}"} for i in range(3)]
                await shared.add_items(batch)
                await own.add_items(batch)
                if turn % 10 == 0:
                    await own.get_items(5)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@pytest.mark.slow
@pytest.mark.slow
def test_several_processes_share_one_file(db_path: Path) -> None:
    """Four processes on one file: no errors, nothing lost, each writer's order kept."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(w)], stderr=subprocess.PIPE
        )
        for w in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    conn = sqlite3.connect(db_path)
    try:
        shared = [
            r[0]
            for r in conn.execute(
                "SELECT message_data FROM agent_messages WHERE session_id='shared' ORDER BY id"
            )
        ]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for writer in range(4):
            own = conn.execute(
                "SELECT count(*) FROM agent_messages WHERE session_id = ?", (f"own-{writer}",)
            ).fetchone()[0]
            assert own == 120
    finally:
        conn.close()
    assert len(shared) == 4 * 40 * 3
    for writer in range(4):
        mine = [row for row in shared if f'"{writer}-' in row]
        expected = [f"{writer}-{t}-{i}" for t in range(40) for i in range(3)]
        assert [row.split('"content":"')[1].split('"')[0] for row in mine] == expected
        # a batch is contiguous: nobody else's row lands inside it
    for start in range(0, len(shared), 3):
        writers = {row.split('"content":"')[1].split("-")[0] for row in shared[start : start + 3]}
        assert len(writers) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX-only")
async def test_writers_queue_on_the_lock_file(db_path: Path) -> None:
    """A write waits while another writer holds <database>-lock, and proceeds once it is freed."""
    import asyncio
    import fcntl
    import os

    async with SQLiteSession("s", db_path) as session:
        await session.get_items()
        fd = os.open(f"{db_path}-lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            write = asyncio.ensure_future(session.add_items([{"role": "user", "content": "x"}]))
            await asyncio.sleep(0.3)
            assert not write.done()
            fcntl.flock(fd, fcntl.LOCK_UN)
            await asyncio.wait_for(write, timeout=10)
        finally:
            os.close(fd)
        assert await session.get_items() == [{"role": "user", "content": "x"}]


def test_store_closed_while_opening_leaves_no_reader_open(db_path: Path) -> None:
    """A store closed before its worker finished opening the file closes the reader it opens."""
    store = SQLiteStore(db_path)
    store.close()
    assert store._reader.connection is None  # noqa: SLF001 - the reader is never exposed

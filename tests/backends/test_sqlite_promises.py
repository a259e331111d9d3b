"""SQLite promises under hostile use.

Files that cannot be opened, corrupt pages, deleted files, cancelled pops racing a clear, tasks
that loop on reads, and the mode of the files we create.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import shutil
import signal
import sqlite3
import stat
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from agents.items import TResponseInputItem
from cryptography.fernet import Fernet

from agent_sessions import (
    AdvancedSQLiteSession,
    DatabaseFileGoneError,
    EncryptedSession,
    InvalidIdentifierError,
    MemoryStore,
    SQLiteSession,
    SQLiteStore,
    StorageError,
    StorageUnavailableError,
)
from tests.file_locks import writers_held

pytestmark = [
    pytest.mark.sqlite,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX files: flock, modes, inodes"),
]

KEY = Fernet.generate_key().decode()


def item(tag: str, role: str = "user") -> TResponseInputItem:
    """A message whose content is ``tag``."""
    return cast(TResponseInputItem, {"role": role, "content": tag})


# --- a file that cannot be opened -----------------------------------------------------------

OPENERS: dict[str, Callable[[Path, str], tuple[Any, list[Callable[[], Awaitable[None]]]]]] = {}


def _own(path: Path, table: str) -> tuple[Any, list[Callable[[], Awaitable[None]]]]:
    return SQLiteSession("s", path, messages_table=table), []


def _shared(path: Path, table: str) -> tuple[Any, list[Callable[[], Awaitable[None]]]]:
    store = SQLiteStore(path, tables=None if table == "agent_messages" else _tables(table))
    return store.session("s"), [store.aclose]


def _encrypted(path: Path, table: str) -> tuple[Any, list[Callable[[], Awaitable[None]]]]:
    return EncryptedSession("s", SQLiteSession("s", path, messages_table=table), KEY), []


def _tables(messages: str) -> Any:
    from agent_sessions.schema import TableNames

    return TableNames("agent_sessions", messages)


def _advanced(path: Path, table: str) -> tuple[Any, list[Callable[[], Awaitable[None]]]]:
    session = AdvancedSQLiteSession(
        session_id="s", db_path=path, create_tables=True, messages_table=table
    )
    return session, []


OPENERS.update(own=_own, shared=_shared, encrypted=_encrypted)
LOOPING = {**OPENERS, "advanced": _advanced}
"""The openers of the tests of yielding and of clears, which the advanced session joins."""


def _unopenable(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A database path (and messages table) that cannot be opened, of the given kind."""
    if kind == "junk":
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not a database\n" * 300)
        return path, "agent_messages"
    if kind == "corrupt-header":
        path = tmp_path / "header.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
        data = bytearray(path.read_bytes())
        data[:16] = b"SQLite format 2\x00"
        path.write_bytes(bytes(data))
        return path, "agent_messages"
    if kind == "missing-directory":
        return tmp_path / "no" / "such" / "dir.db", "agent_messages"
    assert kind == "table-select"
    return tmp_path / "select.db", "select"


@pytest.mark.parametrize("opener", sorted(OPENERS))
@pytest.mark.parametrize("kind", ["junk", "corrupt-header", "missing-directory", "table-select"])
async def test_add_items_on_an_unopenable_file_raises_at_once(
    tmp_path: Path, kind: str, opener: str
) -> None:
    """add_items on a file that cannot be opened raises StorageUnavailableError within 5 s."""
    path, table = _unopenable(kind, tmp_path)
    try:
        session, closers = OPENERS[opener](path, table)
    except InvalidIdentifierError:
        assert kind == "table-select"  # refused up front: as good as it gets
        return
    try:
        began = time.monotonic()
        with pytest.raises(StorageUnavailableError):
            await asyncio.wait_for(session.add_items([item("x")]), 5)
        assert time.monotonic() - began < 2
        with pytest.raises(StorageUnavailableError):  # and again: nothing is left hanging
            await asyncio.wait_for(session.add_items([item("y")]), 5)
        with pytest.raises(StorageUnavailableError):
            await asyncio.wait_for(session.get_items(), 5)
        task = asyncio.ensure_future(session.add_items([item("z")]))
        await asyncio.sleep(0)
        task.cancel()
        (outcome,) = await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        assert isinstance(outcome, (asyncio.CancelledError, StorageUnavailableError))
    finally:
        await session.aclose()
        for close in closers:
            await close()


def _in_child(check: Callable[[], str], setup: Callable[[], None]) -> str:
    """Run ``check`` in a forked child after ``setup`` (privileges, limits); return its answer."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()

    def run() -> None:
        try:
            setup()
            child.send(check())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            child.send(f"child failed: {exc!r}")

    process = context.Process(target=run)
    process.start()
    ready = parent.poll(30)
    answer = str(parent.recv()) if ready else "no answer within 30 s"
    process.join(10)
    if process.is_alive():
        process.kill()
    return answer


def _add_one(path: Path) -> str:
    """In a child: add one item to a new session on ``path``; name the outcome."""

    async def add() -> str:
        session = SQLiteSession("s", path)
        try:
            await asyncio.wait_for(session.add_items([item("x" * 100_000)]), 5)
        except StorageUnavailableError:
            return "StorageUnavailableError"
        except BaseException as exc:  # noqa: BLE001 - the test names it
            return repr(exc)
        finally:
            await session.aclose()
        return "stored"

    return asyncio.run(add())


def _drop_to_nobody() -> None:
    if os.geteuid() == 0:  # root writes to read-only files: become a user who cannot
        os.setgid(65534)
        os.setuid(65534)


def test_add_items_on_a_read_only_file_raises_at_once(tmp_path: Path) -> None:
    """add_items on a file its user cannot write raises StorageUnavailableError, never hangs."""
    # A folder the child may enter but not write, holding a file it may read but not write.
    folder = Path(tempfile.mkdtemp(dir=tmp_path if os.geteuid() else None))
    try:
        path = folder / "read-only.db"
        path.write_bytes(b"")
        path.chmod(0o444)
        folder.chmod(0o755)

        def check() -> str:
            if not os.access(path, os.R_OK) or os.access(path, os.W_OK):
                return "the child's permissions are not read-only"
            return _add_one(path)

        assert _in_child(check, _drop_to_nobody) == "StorageUnavailableError"
    finally:
        shutil.rmtree(folder)


def test_add_items_on_a_full_disk_raises_at_once(tmp_path: Path) -> None:
    """A new file that cannot grow past 8 KiB (RLIMIT_FSIZE): add_items raises, never hangs."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    answer = _in_child(lambda: _add_one(tmp_path / "full.db"), limit)
    assert answer == "StorageUnavailableError"


# --- corrupt pages ------------------------------------------------------------------------------


def _corrupt_a_page(path: Path) -> None:
    """Overwrite the middle pages of a closed database with noise (its header stays)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        for offset in range(size // 3, 2 * size // 3, 4096):
            f.seek(offset)
            f.write(os.urandom(4096))


@pytest.mark.parametrize("shared", [False, True], ids=["own-store", "shared-store"])
async def test_a_corrupt_page_is_a_storage_error_on_every_path(
    tmp_path: Path, shared: bool
) -> None:
    """Reads, pops, writes and clears over a corrupt page raise StorageError, never sqlite3's."""
    path = tmp_path / "corrupt.db"
    async with SQLiteSession("s", path) as session:
        for start in range(0, 3000, 500):
            await session.add_items([item(f"{n:05d}" * 40) for n in range(start, start + 500)])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _corrupt_a_page(path)
    store = SQLiteStore(path) if shared else None
    session = store.session("s") if store else SQLiteSession("s", path)
    calls: list[Callable[[], Awaitable[object]]] = [
        session.get_items,
        session.get_items,  # the second read of the page: it once escaped as sqlite3's error
        lambda: session.get_items(2000),
        session.pop_item,
        session.pop_turn,
        lambda: session.add_items([item("new")]),
        session.clear_session,
    ]
    escaped: list[BaseException] = []
    try:
        for call in calls:
            try:
                await call()
            except StorageError:
                pass
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                escaped.append(exc)
    finally:
        await session.aclose()
        if store is not None:
            await store.aclose()
    assert escaped == []


# --- a file deleted while open ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
@pytest.mark.parametrize("shared", [False, True], ids=["own-store", "shared-store"])
async def test_writes_to_a_deleted_file_are_refused(tmp_path: Path, how: str, shared: bool) -> None:
    """Once the open file is deleted or replaced, add, pop and clear raise DatabaseFileGoneError."""
    path = tmp_path / "gone.db"
    store = SQLiteStore(path) if shared else None
    session = store.session("s") if store else SQLiteSession("s", path)
    try:
        await session.add_items([item("a"), item("b")])
        if how == "deleted":
            path.unlink()
        else:
            other = tmp_path / "other.db"
            sqlite3.connect(other).close()
            other.replace(path)
        for call in (
            lambda: session.add_items([item("lost")]),
            session.pop_item,
            session.clear_session,
        ):
            with pytest.raises(DatabaseFileGoneError, match=r"deleted or replaced while open"):
                await call()
    finally:
        await session.aclose()
        if store is not None:
            await store.aclose()


# --- a cancelled pop and a clear ----------------------------------------------------------------


def _session_records(path: Path, session_id: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM agent_sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return int(count)
    finally:
        conn.close()


@pytest.mark.parametrize("then_add", [False, True], ids=["clear", "clear-then-add"])
@pytest.mark.parametrize("opener", sorted(LOOPING))
async def test_a_cancelled_pop_never_brings_back_a_cleared_session(
    tmp_path: Path, opener: str, then_add: bool
) -> None:
    """10 pops cancelled at the write lock while a clear is queued: the clear always wins."""
    path = tmp_path / "cleared.db"
    session, closers = LOOPING[opener](path, "agent_messages")
    try:
        for _ in range(10):
            await session.add_items([item("old-1"), item("old-2")])
            with writers_held(path) as release:
                pop = asyncio.ensure_future(session.pop_item())
                await asyncio.sleep(0.05)  # the pop waits for the lock on the worker
                pop.cancel()
                clear = asyncio.ensure_future(session.clear_session())
                add = asyncio.ensure_future(session.add_items([item("new")])) if then_add else None
                await asyncio.sleep(0.05)
                release()
                outcome = (await asyncio.gather(pop, return_exceptions=True))[0]
                await clear
                if add is not None:
                    await add
            assert isinstance(outcome, asyncio.CancelledError)
            await asyncio.sleep(0.05)  # anything the cancelled pop left behind has happened
            expected = [item("new")] if then_add else []
            assert await session.get_items() == expected, "a restore brought back cleared items"
            assert _session_records(path, "s") == (1 if then_add else 0)
            await session.clear_session()
    finally:
        await session.aclose()
        for close in closers:
            await close()


async def test_a_cancelled_pop_is_put_back_when_no_clear_came(tmp_path: Path) -> None:
    """A pop cancelled at the write lock with no clear behind it leaves its item stored."""
    path = tmp_path / "kept.db"
    async with SQLiteSession("s", path) as session:
        await session.add_items([item("a"), item("b")])
        with writers_held(path) as release:
            pop = asyncio.ensure_future(session.pop_item())
            await asyncio.sleep(0.05)
            pop.cancel()
            add = asyncio.ensure_future(session.add_items([item("c")]))
            await asyncio.sleep(0.05)
            release()
            outcome = (await asyncio.gather(pop, return_exceptions=True))[0]
            await add
        assert isinstance(outcome, asyncio.CancelledError)
        await asyncio.sleep(0.05)
        assert await session.get_items() == [item("a"), item("b"), item("c")]


async def test_a_clear_by_another_object_voids_the_restore(tmp_path: Path) -> None:
    """A clear made through a second session object on the file also wins over a restore."""
    path = tmp_path / "two.db"
    async with SQLiteSession("s", path) as session, SQLiteSession("s", path) as other:
        await session.add_items([item("a"), item("b")])
        await other.get_items()
        with writers_held(path) as release:
            pop = asyncio.ensure_future(session.pop_item())
            await asyncio.sleep(0.05)
            pop.cancel()
            clear = asyncio.ensure_future(other.clear_session())
            await asyncio.sleep(0.05)
            release()
            await asyncio.gather(pop, return_exceptions=True)
            await clear
        await asyncio.sleep(0.05)
        assert await session.get_items() == []
        assert _session_records(path, "s") == 0


# --- yielding to the loop -----------------------------------------------------------------------


class Ticker:
    """A task that counts how often it runs and the longest wait between two of its runs."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            now = time.perf_counter()
            self.ticks += 1
            self.longest = max(self.longest, now - last)
            last = now
            await asyncio.sleep(0)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.mark.parametrize("opener", sorted(LOOPING))
async def test_every_call_yields_to_the_loop(tmp_path: Path, opener: str) -> None:
    """get_items, add_items, pop_item, pop_turn and clear_session each let other tasks run."""
    session, closers = LOOPING[opener](tmp_path / "yield.db", "agent_messages")
    calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("add_items", lambda: session.add_items([item("q"), item("a", "assistant")])),
        ("get_items", session.get_items),
        ("get_items(3)", lambda: session.get_items(3)),
        ("get_items(0)", lambda: session.get_items(0)),
        ("pop_item", session.pop_item),
        ("pop_turn", session.pop_turn),
        ("clear_session", session.clear_session),
    ]
    try:
        await session.add_items([item("q"), item("a", "assistant")] * 3)
        await session.get_items()  # the reader is open: reads take the inline path
        silent = []
        for name, call in calls * 3:
            async with Ticker() as ticker:
                await call()
                ticks = ticker.ticks
            if ticks == 0:
                silent.append(name)
        assert silent == [], f"these calls never yielded: {sorted(set(silent))}"
    finally:
        await session.aclose()
        for close in closers:
            await close()


@pytest.mark.parametrize("opener", sorted(LOOPING))
async def test_a_task_looping_on_reads_lets_writers_run(tmp_path: Path, opener: str) -> None:
    """While one task loops on get_items, a writer task on the same loop finishes 20 batches."""
    path = tmp_path / "starve.db"
    reader, closers = LOOPING[opener](path, "agent_messages")
    writer = SQLiteSession("w", path)
    try:
        await reader.add_items([item("hello")])
        await reader.get_items()
        written = 0

        async def write() -> None:
            nonlocal written
            for n in range(20):
                await writer.add_items([item(f"w{n}")])
                written += 1

        task = asyncio.ensure_future(write())
        for _ in range(20_000):
            await reader.get_items()
            if task.done():
                break
        assert written == 20, f"the writer stored {written} of 20 batches meanwhile"
        await task
    finally:
        await writer.aclose()
        await reader.aclose()
        for close in closers:
            await close()


async def test_a_long_read_does_not_hold_the_loop(tmp_path: Path) -> None:
    """Reading 100,000 items lets other tasks run: no pause is near the read's whole length."""
    path = tmp_path / "long.db"
    async with SQLiteSession("long", path) as session:
        for start in range(0, 100_000, 10_000):
            await session.add_items([item(f"m{n}") for n in range(start, start + 10_000)])
        await session.get_items(1)
        async with Ticker() as ticker:
            began = time.perf_counter()
            items = await session.get_items()
            took = time.perf_counter() - began
            await asyncio.sleep(0)  # the ticker's turn right after the read counts too
        assert len(items) == 100_000
        assert ticker.ticks >= 10, f"the loop ran other tasks {ticker.ticks} times in {took:.3f}s"
        assert ticker.longest < took / 4, f"a {ticker.longest:.3f}s pause in a {took:.3f}s read"


# --- the mode of new files ----------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run with a process umask of ``mask``."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
async def test_new_database_files_are_owner_only(tmp_path: Path, mask: int) -> None:
    """A new database, its -wal, -shm and -lock files are created 0600 whatever the umask."""
    path = tmp_path / "private.db"
    with umask(mask):
        async with SQLiteSession("s", path) as session:
            await session.add_items([item("secret")])
            assert await session.get_items() == [item("secret")]
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-lock")]
            assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


async def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    """A file made beforehand (shared on purpose: 0660) keeps its mode; so does its lock file."""
    path = tmp_path / "shared.db"
    path.write_bytes(b"")
    path.chmod(0o660)
    with umask(0o002):
        async with SQLiteSession("s", path) as session:
            await session.add_items([item("team")])
            assert _mode(path) == 0o660
            assert _mode(Path(f"{path}-lock")) == 0o660
            assert _mode(Path(f"{path}-wal")) == 0o660


async def test_other_stores_create_owner_only_files(tmp_path: Path) -> None:
    """A shared SQLiteStore and a MemoryStore also create their new files 0600."""
    with umask(0o022):
        async with SQLiteStore(tmp_path / "store.db") as store:
            await store.session("s").add_items([item("x")])
        async with MemoryStore(tmp_path / "memory.db") as memory:
            await memory.put(("u",), "k", {"text": "x"})
    assert _mode(tmp_path / "store.db") == 0o600
    assert _mode(tmp_path / "memory.db") == 0o600


async def test_a_link_planted_at_a_new_path_is_not_followed_for_creation(tmp_path: Path) -> None:
    """A dangling link at the path is not used to create a file with loose permissions."""
    target = tmp_path / "victim.db"
    link = tmp_path / "link.db"
    link.symlink_to(target)
    with umask(0o022):
        async with SQLiteSession("s", link) as session:
            await session.add_items([item("x")])
    # SQLite follows the link itself; the file it creates there must still be private.
    assert _mode(target) == 0o600

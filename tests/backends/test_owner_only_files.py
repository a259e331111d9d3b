"""Files the package creates are owner-only, and read commands never write a file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
from agents import TResponseInputItem
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.backends._sqlalchemy_engine import sqlite_file_to_create
from agent_sessions.cli import main
from agent_sessions.memory import MemoryStore

if TYPE_CHECKING:
    from agents import RunResult

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

ITEMS: list[TResponseInputItem] = [
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "hi"},
]


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """Run each test under the common umask 022, which alone would give a new file 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    """The permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


def database_files(path: Path) -> list[Path]:
    """The database file and whichever of its -wal, -shm and -journal files exist."""
    return [
        p
        for p in (Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal"))
        if p.exists()
    ]


def assert_modes(path: Path, expected: int) -> None:
    """The database file and its -wal/-shm/-journal files all have mode ``expected``."""
    found = {p.name: oct(mode(p)) for p in database_files(path)}
    assert found, path
    assert set(found.values()) == {oct(expected)}, found


async def by_url(path: Path, expected: int) -> None:
    """Write through ``SQLAlchemySession.from_url``; check the modes while it is open."""
    session = SQLAlchemySession.from_url(
        "owner-1", url=f"sqlite+aiosqlite:///{path}", create_tables=True
    )
    await session.add_items(ITEMS)
    assert len(database_files(path)) > 1  # -wal and -shm exist while it is open
    assert_modes(path, expected)
    await session.aclose()


async def by_engine(path: Path, expected: int) -> None:
    """Write through ``SQLAlchemySession`` on an engine the caller made."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    session = SQLAlchemySession("owner-2", engine=engine, create_tables=True)
    await session.add_items(ITEMS)
    assert_modes(path, expected)
    await session.aclose()
    await engine.dispose()


async def by_memory_store(path: Path, expected: int) -> None:
    """Write through ``MemoryStore.from_url``."""
    async with MemoryStore.from_url(f"sqlite+aiosqlite:///{path}") as store:
        await store.put(("owner",), "k", {"v": 1})
        assert_modes(path, expected)


CREATORS: dict[str, Callable[[Path, int], Awaitable[None]]] = {
    "from_url": by_url,
    "engine": by_engine,
    "memory_store": by_memory_store,
}


@pytest.mark.parametrize("creator", list(CREATORS))
async def test_sqlalchemy_creates_owner_only_files(creator: str, tmp_path: Path) -> None:
    """A new SQLite file made through SQLAlchemy, and its -wal/-shm, are 0600 whatever the umask."""
    path = tmp_path / "new.db"
    await CREATORS[creator](path, 0o600)
    assert mode(path) == 0o600


@pytest.mark.parametrize("creator", list(CREATORS))
async def test_existing_file_keeps_its_mode(creator: str, tmp_path: Path) -> None:
    """An existing file (shared on purpose, mode 0640) keeps its mode, and its -wal gets it."""
    path = tmp_path / "shared.db"
    path.touch()  # an empty file is a new database to SQLite
    path.chmod(0o640)
    await CREATORS[creator](path, 0o640)
    assert mode(path) == 0o640


async def fill(path: Path) -> None:
    """Write one session with our SQLiteSession."""
    session = SQLiteSession("owner-4", path)
    await session.add_items(ITEMS)
    session.close()


def test_cli_import_and_migrate_create_owner_only_files(tmp_path: Path) -> None:
    """``import NEW.db`` and ``migrate SRC NEW.db`` create their destination 0600."""
    source = tmp_path / "source.db"
    asyncio.run(fill(source))
    dump = tmp_path / "export.jsonl"
    assert main(["export", str(source), "-o", str(dump), "-q"]) == 0
    imported, migrated = tmp_path / "imported.db", tmp_path / "migrated.db"
    assert main(["import", str(imported), str(dump), "-q"]) == 0
    assert main(["migrate", str(source), str(migrated), "-q"]) == 0
    for path in (imported, migrated):
        assert mode(path) == 0o600, path
        assert all(mode(p) == 0o600 for p in database_files(path)), database_files(path)


@pytest.mark.parametrize(
    "argv",
    [["ls"], ["stats"], ["search", "x"], ["show", "nobody"]],
    ids=lambda argv: argv[0],
)
def test_read_command_on_missing_file_creates_nothing(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read command on a path that does not exist fails and leaves no file behind."""
    missing = tmp_path / "typo.db"
    assert main([argv[0], str(missing), *argv[1:]]) != 0
    assert "no such database file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("cargs", "cparams", "expected"),
    [
        (["a.db"], {}, "a.db"),
        ([":memory:"], {}, None),
        ([""], {}, None),
        (["file:a%20b.db?mode=rwc"], {"uri": True}, "a b.db"),
        (["file:a.db"], {"uri": True}, "a.db"),
        (["file:a.db?mode=ro"], {"uri": True}, None),
        (["file:a.db?mode=rw"], {"uri": True}, None),
        (["file:x?mode=memory&cache=shared"], {"uri": True}, None),
        (["file:a.db?mode=ro"], {}, "file:a.db?mode=ro"),  # not a URI to SQLite: a file name
    ],
)
def test_which_connections_create_a_file(
    cargs: list[str], cparams: dict[str, object], expected: str | None
) -> None:
    """Only a connection SQLite would let create a file gets one made owner-only first."""
    assert sqlite_file_to_create(cargs, cparams) == expected


@pytest.mark.parametrize(
    ("query", "creates"),
    [("", True), ("?mode=rwc&uri=true", True), ("?mode=ro&uri=true", False)],
)
async def test_dialect_arguments_decide_creation(query: str, creates: bool, tmp_path: Path) -> None:
    """The aiosqlite dialect's own connect arguments say whether a file is made first."""
    path = tmp_path / "x.db"
    database = f"file:{path}" if query else str(path)
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}{query}")
    try:
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
    finally:
        await engine.dispose()
    assert sqlite_file_to_create(cargs, cparams) == (str(path) if creates else None)


# Read commands never write ---------------------------------------------------------------


async def sdk_advanced_file(path: Path) -> None:
    """A file the SDK's own AdvancedSQLiteSession wrote: two turns, a branch, usage."""
    from agents.extensions.memory import AdvancedSQLiteSession  # the SDK's class
    from agents.usage import Usage

    session = AdvancedSQLiteSession(session_id="sdk-1", db_path=path, create_tables=True)
    try:
        await session.add_items(
            [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ]
        )
        await session.create_branch_from_turn(2, "retry")
        await session.add_items([{"role": "user", "content": "second, reworded"}])
        usage = Usage(requests=1, input_tokens=3, output_tokens=4, total_tokens=7)
        result = SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))  # a run's result
        await session.store_run_usage(cast("RunResult", result))
    finally:
        session.close()


def snapshot(path: Path) -> tuple[list[tuple[str, str, str | None]], str, int, list[str]]:
    """The file's schema, a hash of its bytes, its mtime, and the files beside it."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return schema, digest, path.stat().st_mtime_ns, sorted(p.name for p in path.parent.iterdir())


def test_read_commands_never_write_an_sdk_advanced_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read commands, and export, migrate and purge --dry-run of it, leave an SDK file untouched."""
    path = tmp_path / "db" / "sdk.db"  # alone in its folder: the snapshot lists the folder
    path.parent.mkdir()
    asyncio.run(sdk_advanced_file(path))
    before = snapshot(path)
    assert "agent_messages_branches" not in str(before[0])  # none of our tables yet
    for argv in (
        ["show", str(path), "sdk-1"],
        ["ls", str(path)],
        ["search", str(path), "question"],
        ["stats", str(path)],
        ["export", str(path), "-o", str(tmp_path / "out.jsonl"), "-q"],
        ["migrate", str(path), str(tmp_path / "copy.db"), "-q"],
        ["purge", str(path), "--older-than", "1m", "--dry-run"],
    ):
        assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert snapshot(path) == before, argv
    shown = capsys.readouterr().out
    assert "retry" in shown  # the SDK's branch is listed
    assert "first question" in shown


async def test_read_only_view_matches_the_session_on_our_advanced_file(tmp_path: Path) -> None:
    """On a file ours wrote, ``advanced()`` reports the branches and usage the session reports."""
    from agents.usage import Usage

    from agent_sessions import AdvancedSQLiteSession
    from agent_sessions.admin import SessionDatabase

    path = tmp_path / "ours.db"
    async with AdvancedSQLiteSession(session_id="ours-1", db_path=path) as session:
        await session.add_items([*ITEMS, {"role": "user", "content": "again"}])
        await session.create_branch_from_turn(2, "fork")  # by reference, then current
        await session.add_items([{"role": "user", "content": "reworded"}])
        usage = Usage(requests=2, input_tokens=5, output_tokens=6, total_tokens=11)
        result = SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))
        await session.store_run_usage(cast("RunResult", result))
        branches = await session.list_branches()
        totals = await session.get_session_usage()
    before = snapshot(path)
    async with SessionDatabase(path) as db:
        view = await db.advanced("ours-1")
    assert view == {"branches": branches, "usage": totals}
    assert [b["branch_id"] for b in branches] == ["main", "fork"]
    assert totals is not None
    assert snapshot(path) == before


async def test_read_only_view_of_an_sdk_file_matches_our_session(tmp_path: Path) -> None:
    """On an SDK-written file, ``advanced()`` says what our session says on a copy of it."""
    import shutil

    from agent_sessions import AdvancedSQLiteSession
    from agent_sessions.admin import SessionDatabase

    path, copy = tmp_path / "sdk.db", tmp_path / "copy.db"
    await sdk_advanced_file(path)
    shutil.copyfile(path, copy)
    async with AdvancedSQLiteSession(session_id="sdk-1", db_path=copy) as session:
        branches = await session.list_branches()
        totals = await session.get_session_usage()
    async with SessionDatabase(path) as db:
        view = await db.advanced("sdk-1")
    assert view == {"branches": branches, "usage": totals}
    assert {b["branch_id"] for b in branches} == {"main", "retry"}
    assert totals is not None

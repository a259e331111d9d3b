"""``agent-sessions prune``: each session keeps its newest turns, on files and servers."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from agent_sessions import AdvancedSQLiteSession, SQLAlchemySession, SQLiteSession
from agent_sessions.cli import main
from tests.sql_servers import database_url, drop_tables, unique_tables


def exchange(n: int) -> list[dict[str, str]]:
    """Turn ``n``: a user message and the answer."""
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in this process; return its status, stdout and stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def _fill_plain(path: Path) -> None:
    async with SQLiteSession("a", path) as a, SQLiteSession("b", path) as b:
        await a.add_items([{"role": "system", "content": "be brief"}])
        for n in range(1, 5):
            await a.add_items(exchange(n))
        await b.add_items(exchange(1))


@pytest.mark.sqlite
def test_prune_keeps_the_newest_turns_of_every_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every session keeps its newest N turns and its system message; a dry run changes nothing."""
    path = tmp_path / "chats.db"
    asyncio.run(_fill_plain(path))
    status, out, _ = run(capsys, "prune", str(path), "--keep-last-turns", "2", "--dry-run")
    assert status == 0
    assert "a: would remove 4 items in 2 turns, kept 5" in out
    assert "b: would remove 0 items" in out

    async def contents(session_id: str) -> list[object]:
        async with SQLiteSession(session_id, path) as session:
            return [item.get("content") for item in await session.get_items()]

    assert len(asyncio.run(contents("a"))) == 9  # the dry run removed nothing
    status, out, _ = run(capsys, "prune", str(path), "--keep-last-turns", "2", "--json")
    assert status == 0
    assert json.loads(out)["a"]["removed_items"] == 4
    assert asyncio.run(contents("a")) == ["be brief", "q3", "a3", "q4", "a4"]
    assert asyncio.run(contents("b")) == ["q1", "a1"]


@pytest.mark.sqlite
def test_prune_refuses_a_keep_below_one_and_unknown_sessions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--keep-last-turns 0 and a session that does not exist are errors; nothing is removed."""
    path = tmp_path / "chats.db"
    asyncio.run(_fill_plain(path))
    status, _, err = run(capsys, "prune", str(path), "--keep-last-turns", "0")
    assert status != 0
    assert "keep_last_turns" in err
    status, _, err = run(capsys, "prune", str(path), "nobody", "--keep-last-turns", "1")
    assert status != 0
    assert "nobody" in err


@pytest.mark.sqlite
def test_prune_an_advanced_file_keeps_forks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On an advanced file the current branch is pruned; a fork keeps everything it showed."""
    path = tmp_path / "advanced.db"

    async def build() -> None:
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            for n in range(1, 5):
                await session.add_items(exchange(n))
            await session.create_branch_from_turn(3, "fork")
            await session.switch_to_branch("main")

    async def read(branch: str) -> list[object]:
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            return [item.get("content") for item in await session.get_items(branch_id=branch)]

    asyncio.run(build())
    status, _, _ = run(capsys, "prune", str(path), "s", "--keep-last-turns", "1")
    assert status == 0
    assert asyncio.run(read("main")) == ["q4", "a4"]
    assert asyncio.run(read("fork")) == ["q1", "a1", "q2", "a2"]


@pytest.mark.postgres
def test_prune_on_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same command prunes a session on a PostgreSQL URL."""
    url = database_url("postgres", tmp_path)
    sessions, messages = unique_tables()
    sid = uuid.uuid4().hex

    async def build() -> None:
        async with SQLAlchemySession.from_url(
            sid, url=url, create_tables=True, sessions_table=sessions, messages_table=messages
        ) as session:
            for n in range(1, 4):
                await session.add_items(exchange(n))

    async def read_and_drop() -> list[object]:
        async with SQLAlchemySession.from_url(
            sid, url=url, sessions_table=sessions, messages_table=messages
        ) as session:
            found = [item.get("content") for item in await session.get_items()]
            await drop_tables(session.engine, sessions, messages)
            return found

    asyncio.run(build())
    status, out, _ = run(
        capsys,
        "prune",
        url,
        sid,
        "--keep-last-turns",
        "1",
        "--sessions-table",
        sessions,
        "--messages-table",
        messages,
    )
    assert status == 0, out
    assert asyncio.run(read_and_drop()) == ["q3", "a3"]


@pytest.mark.sqlite
def test_prune_archive_moves_old_turns_into_the_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--archive keeps the removed turns in the session's archive, readable with archived_items."""
    path = tmp_path / "chats.db"
    asyncio.run(_fill_plain(path))
    status, out, _ = run(capsys, "prune", str(path), "a", "--keep-last-turns", "1", "--archive")
    assert status == 0
    assert "removed 6 items" in out

    async def read() -> tuple[list[object], list[object]]:
        async with SQLiteSession("a", path) as session:
            items = [item.get("content") for item in await session.get_items()]
            archived = [entry.item.get("content") for entry in await session.archived_items()]
            return items, archived

    assert asyncio.run(read()) == (["be brief", "q4", "a4"], ["q1", "a1", "q2", "a2", "q3", "a3"])


@pytest.mark.sqlite
def test_prune_archive_on_an_advanced_file_keeps_forks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--archive on an advanced file archives the current branch's old turns; a fork keeps its."""
    path = tmp_path / "advanced.db"

    async def build() -> None:
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            for n in range(1, 4):
                await session.add_items(exchange(n))
            await session.create_branch_from_turn(3, "fork")
            await session.switch_to_branch("main")

    async def read() -> tuple[list[object], list[object], list[object]]:
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            main_items = [item.get("content") for item in await session.get_items()]
            fork = [item.get("content") for item in await session.get_items(branch_id="fork")]
            archived = [entry.item.get("content") for entry in await session.archived_items()]
            return main_items, fork, archived

    asyncio.run(build())
    status, _, _ = run(capsys, "prune", str(path), "--keep-last-turns", "1", "--archive")
    assert status == 0
    assert asyncio.run(read()) == (
        ["q3", "a3"],
        ["q1", "a1", "q2", "a2"],
        ["q1", "a1", "q2", "a2"],
    )

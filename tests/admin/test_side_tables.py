"""The admin tools and a session's side tables: per-session state (and the archive)."""

# ruff: noqa: SLF001 - the state API is private; the admin tools must honour it all the same
from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import agents
import pytest

from agent_sessions import SQLiteSession
from agent_sessions.admin import SessionDatabase
from agent_sessions.cli import main


def _age(path: Path, session_id: str, days: int) -> None:
    ago = f"datetime('now', '-{days} days')"
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"UPDATE agent_sessions SET created_at = {ago}, updated_at = {ago} "
            "WHERE session_id = ?",
            (session_id,),
        )
        conn.execute(
            f"UPDATE agent_messages SET created_at = {ago} WHERE session_id = ?",
            (session_id,),
        )


@pytest.mark.sqlite
async def test_purge_deletes_a_sessions_state(tmp_path: Path) -> None:
    """Purging a session deletes its state; a kept session keeps its own."""
    path = tmp_path / "s.db"
    for sid in ("gone", "kept"):
        session = SQLiteSession(sid, path)
        await session.add_items([{"role": "user", "content": sid}])
        await session._write_state("pending", {"of": sid})
        session.close()
    _age(path, "gone", 10)
    async with SessionDatabase(path) as db:
        report = await db.purge(timedelta(days=1))
    assert [info.session_id for info in report.sessions] == ["gone"]
    gone, kept = SQLiteSession("gone", path), SQLiteSession("kept", path)
    assert await gone._read_state("pending") is None
    assert await kept._read_state("pending") == {"of": "kept"}
    gone.close()
    kept.close()


@pytest.mark.sqlite
async def test_purge_of_a_file_without_side_tables(tmp_path: Path) -> None:
    """A file only the SDK wrote (no state table) is purged as before."""
    path = tmp_path / "sdk.db"
    sdk = agents.SQLiteSession("old", path)
    await sdk.add_items([{"role": "user", "content": "hi"}])
    sdk.close()
    _age(path, "old", 10)
    async with SessionDatabase(path) as db:
        report = await db.purge(timedelta(days=1))
    assert [info.session_id for info in report.sessions] == ["old"]


@pytest.mark.sqlite
async def test_archive_size_counts_archived_items(tmp_path: Path) -> None:
    """archive_size counts a session's archived items and batches, zero for the others."""
    path = tmp_path / "s.db"
    session = SQLiteSession("a", path)
    for n in range(3):
        await session.add_items([{"role": "user", "content": f"q{n}"}])
    await session.prune(keep_last_turns=1, archive=True)
    session.close()
    sdk = agents.SQLiteSession("b", path)
    await sdk.add_items([{"role": "user", "content": "hi"}])
    sdk.close()
    async with SessionDatabase(path) as db:
        assert await db.archive_size("a") == (2, 1)
        assert await db.archive_size("b") == (0, 0)


@pytest.mark.sqlite
def test_show_says_how_many_items_are_archived(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """agent-sessions show prints the archive's size, and --json carries it."""
    path = tmp_path / "s.db"

    async def fill() -> None:
        async with SQLiteSession("a", path) as session:
            for n in range(3):
                await session.add_items([{"role": "user", "content": f"q{n}"}])
            await session.prune(keep_last_turns=1, archive=True)

    asyncio.run(fill())
    assert main(["show", str(path), "a"]) == 0
    assert "archive: 2 item(s) from 1 compaction(s) or prune(s)" in capsys.readouterr().out
    assert main(["show", str(path), "a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["archived_items"] == 2

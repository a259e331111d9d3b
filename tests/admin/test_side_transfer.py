"""Export, import and migrate carry a session's state values and archive (format version 3)."""

# ruff: noqa: SLF001 - the state API is private; the admin tools must carry it all the same
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.admin import SessionDatabase, migrate
from agent_sessions.errors import ExportFormatError
from tests.sql_servers import POSTGRES_URL, database_url, drop_tables, unique_tables


def turn(n: int) -> list[dict[str, str]]:
    """Turn ``n``: a question and its answer."""
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


async def fill(session: SQLiteSession | SQLAlchemySession) -> None:
    """Three turns, two pruned into the archive, and two state values."""
    for n in range(3):
        await session.add_items(turn(n))  # type: ignore[arg-type]
    await session.prune(keep_last_turns=1, archive=True)
    await session._write_state("pending", {"run": [1, 2]})
    await session._write_state("meta", "ü")


async def check(session: SQLiteSession | SQLAlchemySession) -> None:
    """The session holds what :func:`fill` wrote."""
    assert [item["content"] for item in await session.get_items()] == ["q2", "a2"]  # type: ignore[typeddict-item]
    archived = await session.archived_items()
    assert [(a.batch, a.kind, a.item["content"]) for a in archived] == [  # type: ignore[typeddict-item]
        (1, "prune", text) for text in ("q0", "a0", "q1", "a1")
    ]
    assert await session._read_state("pending") == {"run": [1, 2]}
    assert await session._read_state("meta") == "ü"


@pytest.mark.sqlite
async def test_export_import_round_trip_keeps_state_and_archive(tmp_path: Path) -> None:
    """A version 3 export carries state and archive; importing it and exporting again is equal."""
    source, copy = tmp_path / "a.db", tmp_path / "b.db"
    async with SQLiteSession("s", source) as session:
        await fill(session)
    async with SessionDatabase(source) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"format": "agent-sessions-export", "version": 3}
    kinds = [json.loads(line).get("type") for line in lines]
    assert kinds.count("kv") == 2
    assert kinds.count("archived") == 4
    async with SessionDatabase(copy, create=True) as db:
        await db.import_jsonl(tmp_path / "out.jsonl")
        await db.export_jsonl(tmp_path / "again.jsonl")
    async with SQLiteSession("s", copy) as session:
        await check(session)
    again = (tmp_path / "again.jsonl").read_text()
    assert again == (tmp_path / "out.jsonl").read_text()


@pytest.mark.sqlite
async def test_a_database_without_state_still_exports_version_1(tmp_path: Path) -> None:
    """Without state or archive rows the export is version 1, as before."""
    path = tmp_path / "a.db"
    async with SQLiteSession("s", path) as session:
        await session.add_items(turn(0))  # type: ignore[arg-type]
    async with SessionDatabase(path) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    header = (tmp_path / "out.jsonl").read_text().splitlines()[0]
    assert json.loads(header)["version"] == 1


@pytest.mark.sqlite
async def test_an_edited_archive_record_is_refused(tmp_path: Path) -> None:
    """A changed archived row fails the session's checksum: nothing is imported."""
    path = tmp_path / "a.db"
    async with SQLiteSession("s", path) as session:
        await fill(session)
    async with SessionDatabase(path) as db:
        await db.export_jsonl(tmp_path / "out.jsonl")
    text = (tmp_path / "out.jsonl").read_text().replace('q0\\"', 'qX\\"')
    (tmp_path / "bad.jsonl").write_text(text)
    async with SessionDatabase(tmp_path / "b.db", create=True) as db:
        with pytest.raises(ExportFormatError):
            await db.import_jsonl(tmp_path / "bad.jsonl")


@pytest.mark.postgres
async def test_migrate_sqlite_to_postgres_carries_state_and_archive(tmp_path: Path) -> None:
    """Migrate copies state values and archived rows with the items, verified."""
    database_url("postgres", tmp_path)  # skips without the server
    source = tmp_path / "a.db"
    sid = f"side-{uuid.uuid4().hex[:8]}"
    async with SQLiteSession(sid, source) as session:
        await fill(session)
    sessions, messages = unique_tables()
    try:
        async with (
            SessionDatabase(source) as src,
            SessionDatabase(
                POSTGRES_URL, sessions_table=sessions, messages_table=messages, create=True
            ) as dst,
        ):
            report = await migrate(src, dst)
            assert report.copied == [sid]
            again = await migrate(src, dst)
            assert again.identical == [sid]
        async with SQLAlchemySession.from_url(
            sid, url=POSTGRES_URL, sessions_table=sessions, messages_table=messages
        ) as session:
            await check(session)
    finally:
        engine = create_async_engine(POSTGRES_URL)
        await drop_tables(engine, sessions, messages)
        await engine.dispose()

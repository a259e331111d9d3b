"""The admin layer carries provenance: listing by agent, export format 4, import and migrate."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import (
    EncryptedSession,
    RedisSession,
    SessionRecord,
    SQLAlchemySession,
    SQLiteSession,
    as_run,
)
from agent_sessions.admin import SessionDatabase, migrate
from agent_sessions.admin.redis import RedisDatabase
from agent_sessions.admin.rows import Digest
from agent_sessions.errors import ExportFormatError
from tests.redis_server import drop_prefix, redis_url, unique_prefix
from tests.sql_servers import POSTGRES_URL, database_url, drop_tables, unique_tables

KEY = Fernet.generate_key().decode()


def message(role: str, content: str) -> Any:
    """One message item."""
    return {"role": role, "content": content}


async def fill(path: Path) -> None:
    """t1: an untagged item, then runs by triage and billing; t2: untagged; t3: an input run."""
    await fill_two(path)
    async with SQLiteSession("t3", path) as session:
        with as_run("job-3"):
            await session.add_items([message("user", "input only")])


async def fill_two(path: Path) -> None:
    """t1: an untagged item, then runs by triage and billing; t2: untagged (both plan=pro)."""
    async with SQLiteSession("t1", path) as session:
        await session.add_items([message("user", "plain")])
        with as_run("job-1", agent_name="triage"):
            await session.add_items([message("user", "hi"), message("assistant", "hello")])
        with as_run("job-2", agent_name="billing"):
            await session.add_items([message("assistant", "refund")])
        await session.update_metadata(plan="pro")
    async with SQLiteSession("t2", path) as session:
        await session.add_items([message("user", "untagged")])
        await session.update_metadata(plan="pro")


def shape(records: list[SessionRecord], *, times: bool = True) -> list[tuple[Any, ...]]:
    """Records as comparable tuples; ``times``: with the tagged rows' times."""
    return [
        (
            r.item,
            r.agent_name,
            r.run_id,
            r.position,
            r.created_at if times and r.run_id is not None else None,
        )
        for r in records
    ]


async def sqlite_records(path: Path) -> dict[str, list[SessionRecord]]:
    """Every session's records in a SQLite file written by :func:`fill`."""
    found = {}
    for sid in ("t1", "t2", "t3"):
        async with SQLiteSession(sid, path) as session:
            found[sid] = await session.get_records()
    return found


@pytest.fixture
async def source(tmp_path: Path) -> Path:
    """A SQLite file written by :func:`fill`."""
    path = tmp_path / "source.db"
    await fill(path)
    return path


@pytest.mark.sqlite
async def test_list_sessions_by_agent(source: Path) -> None:
    """agent= keeps sessions that agent wrote to, and combines with where= and count."""
    async with SessionDatabase(source) as db:
        assert [i.session_id for i in await db.list_sessions(agent="triage")] == ["t1"]
        assert [i.session_id for i in await db.list_sessions(agent="billing")] == ["t1"]
        assert await db.list_sessions(agent="nobody") == []
        assert await db.count_sessions(agent="triage") == 1
        both = await db.list_sessions(agent="triage", where={"plan": "pro"})
        assert [i.session_id for i in both] == ["t1"]
        assert await db.list_sessions(agent="billing", where={"plan": "free"}) == []


@pytest.mark.sqlite
async def test_agent_filter_on_a_file_without_provenance_columns(tmp_path: Path) -> None:
    """A file the SDK wrote (no provenance columns) lists no session for any agent."""
    from agents import SQLiteSession as SDKSession

    path = tmp_path / "sdk.db"
    sdk = SDKSession("s", str(path))
    await sdk.add_items([message("user", "hi")])
    sdk.close()
    async with SessionDatabase(path) as db:
        assert await db.list_sessions(agent="triage") == []
        assert [i.session_id for i in await db.list_sessions()] == ["s"]
        (row,) = await db.rows("s")
        assert row.tag is None


@pytest.mark.sqlite
async def test_export_is_version_4_and_round_trips_to_sqlite(source: Path, tmp_path: Path) -> None:
    """Tagged items carry their provenance; importing and exporting again gives equal bytes."""
    out, again, copy = tmp_path / "out.jsonl", tmp_path / "again.jsonl", tmp_path / "copy.db"
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {"format": "agent-sessions-export", "version": 4}
    items = [line for line in lines if line.get("type") == "item"]
    assert "run_id" not in items[0]  # untagged: as in version 1
    assert items[1]["agent_name"] == "triage"
    assert items[1]["run_id"] == "job-1"
    assert items[1]["run_position"] == 0
    assert len(items[1]["item_digest"]) == 64
    async with SessionDatabase(copy, create=True) as db:
        await db.import_jsonl(out)
        await db.export_jsonl(again)
    assert again.read_bytes() == out.read_bytes()
    assert await sqlite_records(copy) == await sqlite_records(source)


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
async def test_export_import_sqlite_to_a_server_keeps_records(
    source: Path, tmp_path: Path, kind: str
) -> None:
    """An export of a SQLite file imported into PostgreSQL or MariaDB gives equal get_records."""
    out, back = tmp_path / "out.jsonl", tmp_path / "back.jsonl"
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
    url = database_url(kind, tmp_path)
    sessions, messages = unique_tables()
    engine = create_async_engine(url)
    try:
        async with SessionDatabase(
            url, sessions_table=sessions, messages_table=messages, create=True
        ) as db:
            await db.import_jsonl(out)
            assert [i.session_id for i in await db.list_sessions(agent="billing")] == ["t1"]
            assert await db.count_sessions(agent="triage", where={"plan": "pro"}) == 1
            await db.export_jsonl(back)
        assert back.read_bytes() == out.read_bytes()
        expected = await sqlite_records(source)
        for sid, records in expected.items():
            session = SQLAlchemySession(
                sid, engine=engine, sessions_table=sessions, messages_table=messages
            )
            assert shape(await session.get_records()) == shape(records)
    finally:
        await drop_tables(engine, sessions, messages)
        await engine.dispose()


@pytest.mark.redis
async def test_export_import_sqlite_to_redis_and_back(source: Path, tmp_path: Path) -> None:
    """SQLite -> Redis keeps get_records; Redis's own export imports back into SQLite tagged."""
    out, back, copy = tmp_path / "out.jsonl", tmp_path / "back.jsonl", tmp_path / "copy.db"
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
    prefix = unique_prefix()
    client = aioredis.from_url(redis_url())
    try:
        async with RedisDatabase(redis_url(), key_prefix=prefix) as db:
            await db.import_jsonl(out)
            assert [i.session_id for i in await db.list_sessions(agent="triage")] == ["t1"]
            await db.export_jsonl(back)
        expected = await sqlite_records(source)
        for sid, records in expected.items():
            session = RedisSession(sid, redis_client=client, key_prefix=prefix)
            assert shape(await session.get_records()) == shape(records)
        async with SessionDatabase(copy, create=True) as db:
            await db.import_jsonl(back)
        assert {k: shape(v) for k, v in (await sqlite_records(copy)).items()} == {
            k: shape(v) for k, v in expected.items()
        }
    finally:
        await drop_prefix(client, prefix)
        await client.aclose()


def _old_file(path: Path) -> None:
    """A format version 1 export written by hand (no provenance fields anywhere)."""
    data = [json.dumps(message("user", "old"), separators=(",", ":"))]
    digest = Digest()
    digest.add_all(data)
    lines = [
        {"format": "agent-sessions-export", "version": 1},
        {"type": "session", "session_id": "o", "created_at": None, "updated_at": None},
        *({"type": "item", "created_at": "2024-01-01 00:00:00", "data": d} for d in data),
        {"type": "end", "session_id": "o", "items": 1, "sha256": digest.hexdigest()},
        {"type": "footer", "sessions": 1, "items": 1},
    ]
    path.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))


@pytest.mark.sqlite
async def test_an_old_format_export_still_imports_untagged(tmp_path: Path) -> None:
    """A version 1 file imports into a schema v4 file; its items read back untagged."""
    old, target = tmp_path / "old.jsonl", tmp_path / "target.db"
    _old_file(old)
    async with SessionDatabase(target, create=True) as db:
        report = await db.import_jsonl(old)
    assert report.items == 1
    async with SQLiteSession("o", target) as session:
        (record,) = await session.get_records()
    assert record.item == message("user", "old")
    assert (record.agent_name, record.run_id, record.position) == (None, None, None)


@pytest.mark.sqlite
async def test_an_edited_or_doubled_provenance_is_refused(source: Path, tmp_path: Path) -> None:
    """The checksum covers an item's agent; one run position twice in a session is refused."""
    out = tmp_path / "out.jsonl"
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
    original = out.read_text()
    edited = tmp_path / "edited.jsonl"
    edited.write_text(original.replace('"agent_name":"billing"', '"agent_name":"triage"'))
    async with SessionDatabase(tmp_path / "a.db", create=True) as db:
        with pytest.raises(ExportFormatError, match="checksum"):
            await db.import_jsonl(edited)
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text(original.replace('"run_position":1', '"run_position":0'))
    async with SessionDatabase(tmp_path / "b.db", create=True) as db:
        with pytest.raises(ExportFormatError, match="two items at position 0"):
            await db.import_jsonl(doubled)


@pytest.fixture
async def postgres_tables(tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    """Fresh table names on the PostgreSQL server (URL, sessions, messages); dropped after."""
    url = database_url("postgres", tmp_path)
    sessions, messages = unique_tables()
    yield url, sessions, messages
    engine = create_async_engine(POSTGRES_URL)
    await drop_tables(engine, sessions, messages)
    await engine.dispose()


@pytest.mark.postgres
async def test_migrate_carries_and_verifies_provenance(
    source: Path, postgres_tables: tuple[str, str, str]
) -> None:
    """Migrate copies provenance, finds it identical next time, redoes a copy that lacks it."""
    url, sessions, messages = postgres_tables

    def destination() -> SessionDatabase:
        return SessionDatabase(url, sessions_table=sessions, messages_table=messages, create=True)

    async with SessionDatabase(source) as src, destination() as dst:
        report = await migrate(src, dst)
        assert sorted(report.copied) == ["t1", "t2", "t3"]
        assert [i.session_id for i in await dst.list_sessions(agent="triage")] == ["t1"]
    async with SessionDatabase(source) as src, destination() as dst:
        again = await migrate(src, dst)
        assert sorted(again.identical) == ["t1", "t2", "t3"]
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:  # as a copy made before provenance was
            await conn.execute(
                text(
                    f"UPDATE {messages} SET agent_name = NULL, run_id = NULL, "
                    "run_position = NULL, item_digest = NULL WHERE session_id = 't1'"
                )
            )
        async with SessionDatabase(source) as src, destination() as dst:
            redone = await migrate(src, dst)
            assert redone.redone == ["t1"]
        expected = await sqlite_records(source)
        session = SQLAlchemySession(
            "t1", engine=engine, sessions_table=sessions, messages_table=messages
        )
        assert shape(await session.get_records()) == shape(expected["t1"])
        async with engine.begin() as conn:  # another agent at the destination: a conflict
            await conn.execute(
                text(f"UPDATE {messages} SET agent_name = 'other' WHERE run_id = 'job-2'")
            )
        async with SessionDatabase(source) as src, destination() as dst:
            conflict = await migrate(src, dst)
            assert conflict.conflicts == ["t1"]
    finally:
        await engine.dispose()


@pytest.mark.sqlite
async def test_encrypted_provenance_round_trips_with_its_hmac(tmp_path: Path) -> None:
    """An EncryptedSession's tagged rows export with their HMAC digests, and import intact."""
    source, copy, out = tmp_path / "enc.db", tmp_path / "copy.db", tmp_path / "out.jsonl"
    async with EncryptedSession("s", SQLiteSession("s", source), KEY, ttl=None) as session:
        with as_run("job-9", agent_name="vault"):
            await session.add_items([message("user", "secret"), message("assistant", "kept")])
        expected = await session.get_records()
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
        stored = [row.tag for row in await db.rows("s")]
    items = [json.loads(line) for line in out.read_text().splitlines()][2:4]
    assert [item["item_digest"] for item in items] == [tag.digest for tag in stored if tag]
    assert "secret" not in out.read_text()
    async with SessionDatabase(copy, create=True) as db:
        await db.import_jsonl(out)
    async with EncryptedSession("s", SQLiteSession("s", copy), KEY, ttl=None) as session:
        assert shape(await session.get_records()) == shape(expected)
        with as_run("job-9", agent_name="vault"):  # a retry: the imported digests tell it
            await session.add_items([message("user", "secret"), message("assistant", "kept")])
        assert len(await session.get_items()) == 2


async def sdk_file(path: Path) -> None:
    """A file the SDK's SQLiteSession made: its tables, without the provenance columns."""
    from agents.memory import SQLiteSession as SdkSQLiteSession

    sdk = SdkSQLiteSession("sdk-own", path)
    try:
        await sdk.add_items([message("user", "from the SDK")])
    finally:
        sdk.close()


def has_provenance_columns(path: Path) -> bool:
    """Whether the file's messages table has the run id column (schema v4)."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(agent_messages)")}
    return "run_id" in columns


async def test_import_and_migrate_upgrade_an_sdk_file_to_keep_provenance(
    source: Path, tmp_path: Path
) -> None:
    """An SDK-made destination gets the provenance columns first; the SDK still reads it."""
    from agents.memory import SQLiteSession as SdkSQLiteSession

    out = tmp_path / "out.jsonl"
    async with SessionDatabase(source) as db:
        await db.export_jsonl(out)
    expected = await sqlite_records(source)
    for how in ("import", "migrate"):
        copy = tmp_path / f"{how}.db"
        await sdk_file(copy)
        assert not has_provenance_columns(copy)
        if how == "import":
            async with SessionDatabase(copy) as db:
                await db.import_jsonl(out)
        else:
            async with SessionDatabase(source) as src, SessionDatabase(copy) as dst:
                await migrate(src, dst)
        assert has_provenance_columns(copy)
        assert await sqlite_records(copy) == expected, how
        sdk = SdkSQLiteSession("t1", copy)
        try:
            assert await sdk.get_items() == [r.item for r in expected["t1"]]
        finally:
            sdk.close()

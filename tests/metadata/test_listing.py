"""Metadata in SessionDatabase.list_sessions: shown, filtered by key, sealed stays hidden."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import EncryptedSession, SessionDatabase, SQLAlchemySession
from tests.sql_servers import KINDS, database_url, drop_tables, unique_tables

KEY = b"k" * 32


@pytest.fixture(params=KINDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionDatabase]:
    """Four sessions on fresh tables (SQLite file, PostgreSQL, MariaDB), and the admin view."""
    url = database_url(request.param, tmp_path)
    sessions, messages = unique_tables()
    engine = create_async_engine(url)
    opened: list[SQLAlchemySession] = []

    def open_(sid: str) -> SQLAlchemySession:
        opened.append(
            SQLAlchemySession(
                sid,
                engine=engine,
                create_tables=True,
                sessions_table=sessions,
                messages_table=messages,
            )
        )
        return opened[-1]

    fields: dict[str, dict[str, Any]] = {
        "a": {"plan": "pro", "n": 1, "vip": True},
        "b": {"plan": "free", "n": 1.0},
        "c": {},
    }
    for sid, values in fields.items():
        session = open_(sid)
        await session.add_items([{"role": "user", "content": f"hi {sid}"}])
        if values:
            await session.update_metadata(**values)
    sealed = EncryptedSession("e", open_("e"), KEY)
    await sealed.add_items([{"role": "user", "content": "secret"}])
    await sealed.update_metadata(plan="pro")
    for session in opened:
        await session.aclose()
    target = url if request.param != "sqlite" else url.replace("sqlite+aiosqlite:///", "")
    admin = SessionDatabase(target, sessions_table=sessions, messages_table=messages)
    yield admin
    await admin.aclose()
    await drop_tables(engine, sessions, messages)
    await engine.dispose()


async def test_listing_shows_metadata_and_marks_sealed(db: SessionDatabase) -> None:
    """Each listed session carries its plaintext metadata; sealed metadata is marked, not shown."""
    found = {info.session_id: info for info in await db.list_sessions()}
    assert found["a"].metadata == {"plan": "pro", "n": 1, "vip": True}
    assert found["a"].metadata_status == "plain"
    assert (found["c"].metadata, found["c"].metadata_status) == (None, "none")
    assert (found["e"].metadata, found["e"].metadata_status) == (None, "encrypted")
    assert found["a"].to_dict()["metadata"] == {"plan": "pro", "n": 1, "vip": True}


async def test_where_filters_on_every_key(db: SessionDatabase) -> None:
    """where= keeps sessions whose metadata has every key equal; sealed metadata never matches."""
    assert [i.session_id for i in await db.list_sessions(where={"plan": "pro"})] == ["a"]
    assert [i.session_id for i in await db.list_sessions(where={"n": 1})] == ["a", "b"]
    assert [i.session_id for i in await db.list_sessions(where={"n": 1, "plan": "free"})] == ["b"]
    assert await db.list_sessions(where={"vip": 1}) == []  # true is not 1 in JSON
    assert await db.list_sessions(where={"plan": "pro"}, session_ids=["b"]) == []
    assert await db.count_sessions(where={"n": 1}) == 2
    assert await db.count_sessions(where={"missing": "x"}) == 0


async def test_where_refuses_a_value_that_is_not_json(db: SessionDatabase) -> None:
    """A filter value JSON cannot hold is refused with a clear error."""
    with pytest.raises(TypeError, match="not JSON"):
        await db.list_sessions(where={"plan": object()})

"""``list_sessions(where=...)`` compares metadata in SQL with the Python filter's semantics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.admin import SessionDatabase
from agent_sessions.admin.metadata import matches
from agent_sessions.metadata import METADATA_STATE
from tests.sql_servers import database_url, drop_tables, unique_tables

STORED: dict[str, str] = {
    "a": json.dumps(
        {
            "plan": "pro",
            "n": 1,
            "f": 1.5,
            "ok": True,
            "none": None,
            "name": "café",
            "tags": ["x", "y"],
            "obj": {"k": 1, "j": [1, "é"]},
            "big": 2**70,
            'qu"ote': 1,
        }
    ),
    "b": json.dumps(
        {"plan": "Pro ", "n": 1.0, "ok": 1, "tags": ["y", "x"], "obj": {"j": [1.0, "é"], "k": 1}}
    ),
    "c": json.dumps({"plan": "pro", "n": "1", "ok": False, "none": "null", "name": "cafe"}),
    "d": "[1, 2]",
    "e": json.dumps({"__enc__": 1, "plan": "pro"}),
    "f": json.dumps({"plan": "PRO", "name": "CAFÉ", "n": 2}, ensure_ascii=False),
}
"""Stored metadata texts: objects, a list (unreadable) and an encrypted envelope."""
BROKEN = "not json {"

FILTERS: list[dict[str, Any]] = [
    {"plan": "pro"},
    {"plan": "Pro "},
    {"plan": "PRO"},
    {"n": 1},
    {"n": 1.0},
    {"n": "1"},
    {"ok": True},
    {"ok": 1},
    {"ok": False},
    {"none": None},
    {"none": "null"},
    {"missing": None},
    {"name": "café"},
    {"name": "CAFÉ"},
    {"f": 1.5},
    {"big": 2**70},
    {'qu"ote': 1},
    {"tags": ["x", "y"]},
    {"obj": {"k": 1, "j": [1, "é"]}},
    {"plan": "pro", "n": 1},
    {"plan": "pro", "tags": ["x", "y"]},
]


async def _fill(db_target: str, kind: str, tables: tuple[str, str], broken: bool) -> None:
    """Sessions a..f (and g with text that is not JSON), each with one item and its metadata."""
    names = dict(zip(STORED, STORED.values(), strict=True))
    if broken:
        names["g"] = BROKEN
    if kind == "file":
        for sid in names:
            async with SQLiteSession(sid, db_target) as session:
                await session.add_items([{"role": "user", "content": "hi"}])
                await session.update_metadata(x=1)
        engine = create_async_engine(f"sqlite+aiosqlite:///{db_target}")
        state = "agent_messages_state"
    else:
        engine = create_async_engine(db_target)
        state = f"{tables[1]}_state"
        for sid in names:
            session = SQLAlchemySession(
                sid,
                engine=engine,
                create_tables=True,
                sessions_table=tables[0],
                messages_table=tables[1],
            )
            await session.add_items([{"role": "user", "content": "hi"}])
            await session.update_metadata(x=1)
    async with engine.begin() as conn:
        for sid, stored in names.items():
            await conn.execute(
                text(f"UPDATE {state} SET value = :v WHERE session_id = :s AND name = :n"),
                {"v": stored, "s": sid, "n": METADATA_STATE},
            )
    await engine.dispose()


@pytest.fixture(
    params=[
        pytest.param(("file", False), marks=pytest.mark.sqlite),
        pytest.param(("file", True), marks=pytest.mark.sqlite),
        pytest.param(("postgres", False), marks=pytest.mark.postgres),
        pytest.param(("postgres", True), marks=pytest.mark.postgres),
        pytest.param(("mariadb", False), marks=pytest.mark.mariadb),
        pytest.param(("mariadb", True), marks=pytest.mark.mariadb),
    ],
    ids=lambda p: f"{p[0]}{'-broken' if p[1] else ''}",
)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SessionDatabase, dict[str, str]]]:
    """A database whose sessions hold :data:`STORED` (and, broken, a row that is not JSON)."""
    kind, broken = request.param
    tables = unique_tables()
    target = str(tmp_path / "meta.db") if kind == "file" else database_url(kind, tmp_path)
    await _fill(target, kind, tables, broken)
    stored = {**STORED, **({"g": BROKEN} if broken else {})}
    if kind == "file":
        db = SessionDatabase(target)
    else:
        db = SessionDatabase(target, sessions_table=tables[0], messages_table=tables[1])
    try:
        yield db, stored
    finally:
        await db.aclose()
        if kind != "file":
            engine = create_async_engine(target)
            await drop_tables(engine, *tables)
            await engine.dispose()


async def test_sql_where_matches_the_python_filter(
    database: tuple[SessionDatabase, dict[str, str]],
) -> None:
    """Every filter lists exactly the sessions the Python comparison accepts, and counts them."""
    db, stored = database
    for where in FILTERS:
        expected = sorted(sid for sid, text_ in stored.items() if matches(text_, where))
        listed = [info.session_id for info in await db.list_sessions(where=where)]
        assert listed == expected, where
        assert await db.count_sessions(where=where) == len(expected), where


async def test_where_combines_with_paging_in_sql(
    database: tuple[SessionDatabase, dict[str, str]],
) -> None:
    """A metadata filter pages with limit/offset over the matching sessions only."""
    db, _ = database
    where = {"plan": "pro"}
    assert [i.session_id for i in await db.list_sessions(where=where, limit=1)] == ["a"]
    assert [i.session_id for i in await db.list_sessions(where=where, offset=1)] == ["c"]

"""Two processes updating different keys of one session's metadata at once: no update is lost."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLAlchemySession, SQLiteSession
from tests.conftest import require_server
from tests.sql_servers import POSTGRES_URL, SERVERS, drop_tables, unique_tables

ROOT = Path(__file__).resolve().parents[2]
COUNT = 25


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A SQLite file, or fresh tables on the PostgreSQL server: (db, tables or ``-``)."""
    if request.param == "sqlite":
        yield str(tmp_path / "meta.db"), "-"
        return
    name, port, _ = SERVERS["postgres"]
    require_server(name, "127.0.0.1", port)
    sessions, messages = unique_tables()
    yield POSTGRES_URL, f"{sessions},{messages}"
    engine = create_async_engine(POSTGRES_URL)
    await drop_tables(engine, sessions, messages)
    await engine.dispose()


async def test_two_processes_keep_every_key(target: tuple[str, str]) -> None:
    """Every update of two concurrent processes (different keys of one session) is kept."""
    db, tables = target
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.metadata.child",
            db,
            tables,
            prefix,
            str(COUNT),
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for prefix in ("x", "y")
    ]
    for child in children:
        _, err = await asyncio.wait_for(child.communicate(), timeout=120)
        assert child.returncode == 0, err.decode()
    if tables == "-":
        session: SQLiteSession | SQLAlchemySession = SQLiteSession("shared", db)
    else:
        sessions, messages = tables.split(",")
        session = SQLAlchemySession.from_url(
            "shared", url=db, sessions_table=sessions, messages_table=messages
        )
    got = await session.get_metadata()
    await session.aclose()
    assert got == {f"{p}{i}": i for p in ("x", "y") for i in range(COUNT)}

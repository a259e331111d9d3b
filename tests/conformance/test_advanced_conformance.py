"""The advanced conformance checks (branches, turns, usage), run over every advanced session.

One parametrized ``advanced`` harness, a marker per variant (``pytest -m postgres`` runs one). The
SDK's ``AdvancedSQLiteSession`` runs here too: a check needing a method it lacks is skipped (the
check raises ``Unsupported``), and where it differs on purpose (docs/compatibility.md) the check
is an expected, strict failure for the SDK only, with the reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSQLiteSession
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.testing import ADVANCED_CHECKS, Check, Harness, Unsupported
from tests.sql_servers import database_url


@dataclass
class Variant:
    """How to build one advanced session's harness, and the checks it is known to fail."""

    build: Callable[[Path], Harness]
    known_failures: dict[str, str] = field(default_factory=dict)


def _sqlite(cls: Callable[..., Any], name: str, tmp_path: Path) -> Harness:
    path = tmp_path / "advanced.db"
    return Harness(
        name=name, open=lambda sid: cls(session_id=sid, db_path=path, create_tables=True)
    )


def _memory(tmp_path: Path) -> Harness:
    return Harness(
        name="advanced-memory",
        open=lambda sid: AdvancedSQLiteSession(session_id=sid),
        persistent=False,
    )


async def _drop_tables(engine: AsyncEngine, marker: str, messages: str) -> None:
    """Drop every table whose name holds ``marker`` (the pair and its branch tables)."""

    def drop(conn: Connection) -> None:
        metadata = MetaData()
        metadata.reflect(conn, only=lambda name, _: marker in name)
        metadata.drop_all(conn)  # in foreign-key order

    async with engine.begin() as conn:
        await conn.run_sync(drop)
    with contextlib.suppress(DBAPIError):  # no version table: nothing was ever created
        async with engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM agent_sessions_schema WHERE name = :m OR name LIKE :branches"),
                {"m": messages, "branches": f"{messages}.%"},
            )


def _sqlalchemy(kind: str, tmp_path: Path) -> Harness:
    """The SQLAlchemy variant on fresh tables of one database, with session ids of its own.

    Cleanup (after every session is closed) drops the tables and disposes of the engine.
    """
    engine = create_async_engine(database_url(kind, tmp_path))
    marker = uuid.uuid4().hex
    sessions, messages = f"s_{marker[:12]}", f"m_{marker[:12]}"

    def open_session(session_id: str) -> AdvancedSQLAlchemySession:
        return AdvancedSQLAlchemySession(
            f"{marker}-{session_id}",
            engine=engine,
            create_tables=True,
            sessions_table=sessions,
            messages_table=messages,
        )

    async def cleanup() -> None:
        await _drop_tables(engine, marker[:12], messages)
        await engine.dispose()

    return Harness(name=f"advanced-sqlalchemy-{kind}", open=open_session, cleanup=[cleanup])


OURS_KNOWN_FAILURES: dict[str, str] = {}
"""Where our advanced classes fall short of the suite: bugs, each named, to fix in the backend."""

SDK_KNOWN_FAILURES = {
    "check_unknown_branch_refused": (
        "the SDK returns [] for an unknown branch; ours raises ValueError (docs/compatibility.md)"
    ),
    "check_second_object_sees_switch": (
        "the SDK keeps the current branch per object in memory; ours stores it in the database "
        "for every object (docs/compatibility.md)"
    ),
    "check_clear_on_branch_keeps_main": (
        "the SDK's clear_session deletes the whole session, every branch included, even on a "
        "branch; ours clears only the current branch (AdvancedSQLiteSession.clear_session)"
    ),
}
"""Where the SDK's class differs from ours on purpose; methods it lacks skip instead."""

VARIANTS = {
    "advanced-file": Variant(
        partial(_sqlite, AdvancedSQLiteSession, "advanced-file"), OURS_KNOWN_FAILURES
    ),
    "advanced-memory": Variant(_memory, OURS_KNOWN_FAILURES),
    "sdk-advanced": Variant(
        partial(_sqlite, SDKAdvancedSQLiteSession, "sdk-advanced"), SDK_KNOWN_FAILURES
    ),
    "advanced-sqlalchemy-sqlite": Variant(partial(_sqlalchemy, "sqlite"), OURS_KNOWN_FAILURES),
    "advanced-sqlalchemy-postgres": Variant(partial(_sqlalchemy, "postgres"), OURS_KNOWN_FAILURES),
    "advanced-sqlalchemy-mariadb": Variant(partial(_sqlalchemy, "mariadb"), OURS_KNOWN_FAILURES),
}

MARKS = {
    "advanced-file": pytest.mark.sqlite,
    "advanced-memory": pytest.mark.sqlite,
    "sdk-advanced": pytest.mark.sdk,
    "advanced-sqlalchemy-sqlite": pytest.mark.sqlite,
    "advanced-sqlalchemy-postgres": pytest.mark.postgres,
    "advanced-sqlalchemy-mariadb": pytest.mark.mariadb,
}


@pytest.fixture(params=[pytest.param(name, marks=MARKS[name]) for name in VARIANTS])
async def advanced(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness for each advanced session on a fresh database; its sessions are closed after."""
    variant = VARIANTS[request.param]
    check_name = request.node.callspec.params["check"].__name__
    if check_name in variant.known_failures:
        request.node.add_marker(
            pytest.mark.xfail(reason=variant.known_failures[check_name], strict=True)
        )
    harness = variant.build(tmp_path)
    yield harness
    await harness.close_all()


@pytest.mark.parametrize("check", ADVANCED_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_advanced_conformance(check: Check, advanced: Harness) -> None:
    """The advanced session keeps the promise that the check's docstring states."""
    try:
        await check(advanced)
    except Unsupported as exc:
        pytest.skip(str(exc))

"""AsyncSQLiteSession: the SDK's constructor and tables, files shared both ways with the SDK."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AsyncSQLiteSession as SDKAsyncSQLiteSession
from agents.memory import Session

from agent_sessions import AsyncSQLiteSession, SQLiteSession

pytestmark = pytest.mark.sqlite

TURN: list[Any] = [
    {"role": "user", "content": "Hi ünïcødé 🙂"},
    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1"},
    {"type": "function_call_output", "call_id": "c1", "output": "ok"},
]


def test_the_constructor_takes_the_sdks_arguments() -> None:
    """The SDK's parameters come first, in its order, with its defaults."""
    sdk = list(inspect.signature(SDKAsyncSQLiteSession).parameters.values())
    ours = list(inspect.signature(AsyncSQLiteSession).parameters.values())[: len(sdk)]
    assert [(p.name, p.default, p.kind) for p in ours] == [(p.name, p.default, p.kind) for p in sdk]


async def test_reads_a_file_the_sdk_wrote_and_the_sdk_reads_ours(tmp_path: Path) -> None:
    """A file written by the SDK's AsyncSQLiteSession reads back, and the SDK reads our rows."""
    path = tmp_path / "async.db"
    sdk = SDKAsyncSQLiteSession("chat", path, "s_table", "m_table")
    await sdk.add_items(TURN)
    async with AsyncSQLiteSession("chat", path, "s_table", "m_table") as ours:
        assert isinstance(ours, Session)
        assert await ours.get_items() == TURN
        await ours.add_items([{"role": "user", "content": "more"}])
    assert await sdk.get_items(2) == [TURN[-1], {"role": "user", "content": "more"}]
    assert await sdk.pop_item() == {"role": "user", "content": "more"}
    await sdk.close()


async def test_shares_the_file_store_with_sqlite_session(tmp_path: Path) -> None:
    """On one file, AsyncSQLiteSession and SQLiteSession share one store and see each other."""
    path = tmp_path / "shared.db"
    ours = AsyncSQLiteSession("s", path)
    plain = SQLiteSession("s", path)
    assert ours.store is plain.store
    await plain.add_items(TURN)
    assert await ours.get_items() == TURN
    await ours.close()
    await plain.close()


async def test_memory_databases_are_private() -> None:
    """The default ':memory:' database belongs to one session object, as in the SDK."""
    first = AsyncSQLiteSession("m")
    second = AsyncSQLiteSession("m")
    await first.add_items(TURN)
    assert await second.get_items() == []
    assert first.db_path == ":memory:"
    await first.close()
    await second.close()

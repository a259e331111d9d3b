"""What get_metadata and update_metadata refuse, and what they never overwrite.

The private state calls are used on purpose: to plant what a session would never write.
"""

# ruff: noqa: SLF001

from __future__ import annotations

from pathlib import Path

import agents
import pytest

from agent_sessions import EncryptedSession, SQLiteSession
from agent_sessions.errors import CorruptItemError
from agent_sessions.metadata import METADATA_STATE


async def test_stored_non_object_is_refused_and_kept(tmp_path: Path) -> None:
    """Metadata stored as something other than an object raises on read and on update, and stays."""
    session = SQLiteSession("s", tmp_path / "m.db")
    await session._write_state(METADATA_STATE, [1, 2])
    with pytest.raises(CorruptItemError, match="not a JSON object"):
        await session.get_metadata()
    with pytest.raises(CorruptItemError, match="not a JSON object"):
        await session.update_metadata(plan="pro")
    assert await session._read_state(METADATA_STATE) == [1, 2]
    session.close()


async def test_encrypted_over_the_sdk_class_is_a_clear_error(tmp_path: Path) -> None:
    """EncryptedSession over the SDK's SQLiteSession has no state to keep metadata in: TypeError."""
    inner = agents.SQLiteSession("s", str(tmp_path / "sdk.db"))
    session = EncryptedSession("s", inner, b"k" * 32)
    with pytest.raises(TypeError, match="agent_sessions' sessions underneath"):
        await session.update_metadata(plan="pro")
    inner.close()


async def test_encrypted_metadata_is_sealed_at_rest(tmp_path: Path) -> None:
    """Under EncryptedSession the stored metadata holds no plaintext value."""
    inner = SQLiteSession("s", tmp_path / "e.db")
    session = EncryptedSession("s", inner, b"k" * 32)
    assert await session.update_metadata(user="alice-secret") == {"user": "alice-secret"}
    assert await session.get_metadata() == {"user": "alice-secret"}
    stored = await inner._read_state(METADATA_STATE)
    assert isinstance(stored, dict)
    assert "__enc__" in stored
    assert "alice-secret" not in str(stored)
    inner.close()

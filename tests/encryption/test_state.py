"""Per-session state under EncryptedSession: sealed, bound to its session and its name."""

# ruff: noqa: SLF001 - the state API is private; these tests hold its encryption to account
from __future__ import annotations

import sqlite3
from pathlib import Path

import agents
import pytest

from agent_sessions import EncryptedSession, SQLiteSession
from agent_sessions.errors import DecryptionError
from tests.encryption_kit import new_key

pytestmark = pytest.mark.sqlite


def _values(path: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT session_id, name, value FROM agent_messages_state")
        return {(sid, name): value for sid, name, value in rows}


def _plant(path: Path, session_id: str, name: str, value: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO agent_messages_state (session_id, name, value) "
            "VALUES (?, ?, ?)",
            (session_id, name, value),
        )


async def test_state_is_sealed_on_disk(tmp_path: Path) -> None:
    """The stored value holds no plaintext; the session reads it back."""
    path, key = tmp_path / "s.db", new_key()
    async with EncryptedSession("s", SQLiteSession("s", path), key) as session:
        await session._write_state("pending", {"card": "4242"})
        assert await session._read_state("pending") == {"card": "4242"}
        assert await session._update_state("pending", lambda v: {**v, "n": 1}) == {
            "card": "4242",
            "n": 1,
        }
    stored = _values(path)[("s", "pending")]
    assert "4242" not in stored
    assert "pending" not in stored


async def test_a_value_copied_to_another_name_or_session_is_not_returned(tmp_path: Path) -> None:
    """Moved to another name or session, a sealed value reads as None (strict: raises)."""
    path, key = tmp_path / "s.db", new_key()
    async with EncryptedSession("s", SQLiteSession("s", path), key) as session:
        await session._write_state("approved", False)
    sealed = _values(path)[("s", "approved")]
    _plant(path, "s", "other", sealed)
    _plant(path, "t", "approved", sealed)
    async with (
        EncryptedSession("s", SQLiteSession("s", path), key) as same,
        EncryptedSession("t", SQLiteSession("t", path), key) as other,
        EncryptedSession("s", SQLiteSession("s", path), key, strict=True) as strict,
    ):
        assert await same._read_state("other") is None
        assert await other._read_state("approved") is None
        with pytest.raises(DecryptionError):
            await strict._read_state("other")
        with pytest.raises(DecryptionError):  # never overwritten, strict or not
            await same._update_state("other", lambda v: True)
    assert _values(path)[("s", "other")] == sealed


async def test_a_tampered_value_is_never_returned(tmp_path: Path) -> None:
    """A value whose ciphertext was altered is refused, and stays stored."""
    path, key = tmp_path / "s.db", new_key()
    async with EncryptedSession("s", SQLiteSession("s", path), key) as session:
        await session._write_state("k", "secret")
    sealed = _values(path)[("s", "k")]
    tampered = sealed.replace('"ct":"', '"ct":"AAAA', 1)
    _plant(path, "s", "k", tampered)
    async with EncryptedSession("s", SQLiteSession("s", path), key, strict=True) as session:
        with pytest.raises(DecryptionError):
            await session._read_state("k")
    assert _values(path)[("s", "k")] == tampered


async def test_over_the_sdks_session_state_is_refused(tmp_path: Path) -> None:
    """Over the SDK's SQLiteSession the state calls raise TypeError naming the need."""
    sdk = agents.SQLiteSession("s", tmp_path / "sdk.db")
    session = EncryptedSession("s", sdk, new_key())
    with pytest.raises(TypeError, match="agent_sessions' sessions"):
        await session._write_state("k", 1)
    sdk.close()

"""Small helpers the EncryptedSession tests share: keys, a hand-set clock, raw rows of a file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cryptography.fernet import Fernet


def new_key() -> str:
    """Return a fresh Fernet master key as text."""
    return Fernet.generate_key().decode()


class Clock:
    """A clock the test sets by hand, for TTL decisions."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        """Return the time the test set."""
        return self.now


def raw_rows(path: Path, session_id: str = "s") -> list[tuple[int, str]]:
    """Return a session's stored rows as ``(id, text)``, oldest first, bypassing every class."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT id, message_data FROM agent_messages WHERE session_id = ? ORDER BY id",
            (session_id,),
        ).fetchall()
    finally:
        conn.close()
    return [(int(row_id), str(text)) for row_id, text in rows]

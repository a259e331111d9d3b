"""Fixtures shared by every test: raw access to SQLite files and the database-server switch.

Tests that need PostgreSQL or MariaDB call :func:`require_server`. On a developer's machine with
no server they are skipped with the reason; with ``AGENT_SESSIONS_REQUIRE_SERVERS=1`` (set by
``.ci/run``) a missing server is a failure instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

REQUIRE_SERVERS_VARIABLE = "AGENT_SESSIONS_REQUIRE_SERVERS"


def servers_required() -> bool:
    """True when a missing database server must fail the run rather than skip."""
    return os.environ.get(REQUIRE_SERVERS_VARIABLE, "") not in ("", "0", "false", "no")


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, when servers are required, fail) unless ``host:port`` accepts connections."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if servers_required():
        pytest.fail(f"{reason}; {REQUIRE_SERVERS_VARIABLE} is set, so this is a failure")
    pytest.skip(f"{reason}; start it or set {REQUIRE_SERVERS_VARIABLE}=1 to make this fail")


def write_raw_sqlite(path: Path, session_id: str, text: str, table: str = "agent_messages") -> None:
    """Append a row to a SQLite session table as-is, bypassing every session class."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"INSERT INTO {table} (session_id, message_data) VALUES (?, ?)", (session_id, text)
        )
    conn.close()


def count_rows_sqlite(path: Path, session_id: str, table: str = "agent_messages") -> int:
    """Count a session's rows in a SQLite file, decodable or not."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(
            f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,)
        ).fetchone()
    finally:
        conn.close()
    return int(count)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path in a temporary directory."""
    return tmp_path / "sessions.db"

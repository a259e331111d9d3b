"""Table names, the identifier check every name passes before DDL, and the ordered migrations.

Only validated identifiers are ever formatted into SQL; every value is a bound parameter. The
schema version of each pair of tables is kept in a small version table, and ``MIGRATIONS[i]``
takes a database from version ``i`` to ``i + 1``, so an existing database (including one written
by the SDK's own ``SQLiteSession``) is brought up to date in order, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidIdentifierError

__all__ = [
    "DEFAULT_MESSAGES_TABLE",
    "DEFAULT_SESSIONS_TABLE",
    "SQLITE_MIGRATIONS",
    "VERSION_TABLE",
    "TableNames",
    "validate_identifier",
]

DEFAULT_SESSIONS_TABLE = "agent_sessions"
DEFAULT_MESSAGES_TABLE = "agent_messages"
VERSION_TABLE = "agent_sessions_schema"
"""Holds one row per messages table: the migration version its tables are at."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def validate_identifier(name: object, what: str = "table name") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise.

    Args:
        name: The candidate identifier.
        what: What the name is for, used in the error message.

    Raises:
        InvalidIdentifierError: ``name`` is not 1-63 letters, digits or underscores starting
            with a letter or underscore. It is a ``ValueError``.
    """
    if not isinstance(name, str) or _IDENTIFIER.fullmatch(name) is None:
        raise InvalidIdentifierError(
            f"{what} {name!r} is not a valid identifier: use 1-63 letters, digits and "
            "underscores, starting with a letter or underscore"
        )
    return name


@dataclass(frozen=True)
class TableNames:
    """The two tables a session lives in, validated on construction."""

    sessions: str = DEFAULT_SESSIONS_TABLE
    messages: str = DEFAULT_MESSAGES_TABLE

    def __post_init__(self) -> None:
        validate_identifier(self.sessions, "sessions_table")
        validate_identifier(self.messages, "messages_table")
        if self.sessions == self.messages:
            raise InvalidIdentifierError("sessions_table and messages_table must differ")

    @property
    def index(self) -> str:
        """Name of the (session_id, id) index, the same name the SDK gives it."""
        return f"idx_{self.messages}_session_id"


Migration = Callable[[TableNames], list[str]]


def _v1_sdk_tables(t: TableNames) -> list[str]:
    # Same columns and index as the SDK's SQLiteSession, so either class opens the other's file.
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.sessions} (
            session_id TEXT PRIMARY KEY,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
        )""",
        f"""CREATE TABLE IF NOT EXISTS {t.messages} (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL,
            message_data TEXT NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
            FOREIGN KEY (session_id) REFERENCES {t.sessions} (session_id) ON DELETE CASCADE
        )""",
        f"CREATE INDEX IF NOT EXISTS {t.index} ON {t.messages} (session_id, id)",
    ]


SQLITE_MIGRATIONS: list[Migration] = [_v1_sdk_tables]
"""SQLite schema steps; the position of a step is the version it upgrades from."""

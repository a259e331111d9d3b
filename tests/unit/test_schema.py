"""Table names: the identifier check every name passes before DDL, and the SDK's defaults."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path

import agents
import pytest

from agent_sessions.errors import InvalidIdentifierError
from agent_sessions.schema import (
    DEFAULT_MESSAGES_TABLE,
    DEFAULT_SESSIONS_TABLE,
    TableNames,
    validate_identifier,
)

VALID = ["agent_messages", "a", "_", "_private", "Mixed_Case_9", "t" + "x" * 62]
INVALID: dict[str, object] = {
    "injection": "x; DROP TABLE y",
    "double-quote": 'my"table',
    "single-quote": "my'table",
    "backtick": "my`table",
    "bracket": "[table]",
    "space": "my table",
    "trailing-space": "table ",
    "newline": "table\n",
    "dot": "main.table",
    "dash": "my-table",
    "leading-digit": "1table",
    "non-ascii": "tablé",
    "empty": "",
    "none": None,
    "int": 42,
    "bytes": b"table",
    "64-chars": "t" * 64,
    "long": "t" * 500,
}


@pytest.mark.parametrize("name", VALID)
def test_plain_identifier_is_returned_unchanged(name: str) -> None:
    """Accepts a plain identifier of up to 63 characters and returns it as given."""
    assert validate_identifier(name) == name


@pytest.mark.parametrize("name", INVALID.values(), ids=INVALID.keys())
def test_unsafe_identifier_is_refused(name: object) -> None:
    """Refuses a name that is not 1-63 letters, digits and underscores starting with a non-digit."""
    with pytest.raises(InvalidIdentifierError):
        validate_identifier(name)


def test_invalid_identifier_error_is_a_value_error() -> None:
    """Raises an error that callers catch as ``ValueError``."""
    with pytest.raises(ValueError, match="DROP TABLE"):
        validate_identifier("x; DROP TABLE y")


def test_error_names_what_the_identifier_is_for() -> None:
    """Names the role of the refused identifier in the error message."""
    with pytest.raises(InvalidIdentifierError, match="messages_table"):
        validate_identifier("bad name", "messages_table")


@pytest.mark.parametrize("name", INVALID.values(), ids=INVALID.keys())
def test_table_names_validates_the_sessions_table(name: object) -> None:
    """Refuses an unsafe sessions table name on construction."""
    with pytest.raises(InvalidIdentifierError, match="sessions_table"):
        TableNames(sessions=name, messages="messages")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", INVALID.values(), ids=INVALID.keys())
def test_table_names_validates_the_messages_table(name: object) -> None:
    """Refuses an unsafe messages table name on construction."""
    with pytest.raises(InvalidIdentifierError, match="messages_table"):
        TableNames(sessions="sessions", messages=name)  # type: ignore[arg-type]


def test_table_names_refuses_one_table_for_both() -> None:
    """Refuses equal sessions and messages table names."""
    with pytest.raises(InvalidIdentifierError, match="differ"):
        TableNames(sessions="same", messages="same")


def test_table_names_keeps_valid_names() -> None:
    """Keeps valid custom names as given."""
    names = TableNames(sessions="my_sessions", messages="my_messages")
    assert (names.sessions, names.messages) == ("my_sessions", "my_messages")


def test_defaults_are_the_sdk_defaults() -> None:
    """Defaults to the table names the SDK's ``SQLiteSession`` uses."""
    parameters = inspect.signature(agents.SQLiteSession).parameters
    sdk_defaults = (parameters["sessions_table"].default, parameters["messages_table"].default)
    assert sdk_defaults == (DEFAULT_SESSIONS_TABLE, DEFAULT_MESSAGES_TABLE)
    assert (TableNames().sessions, TableNames().messages) == sdk_defaults


def test_index_name_has_the_sdk_format() -> None:
    """Names the index ``idx_<messages>_session_id``."""
    assert TableNames().index == "idx_agent_messages_session_id"
    assert TableNames("s", "chat_items").index == "idx_chat_items_session_id"


async def test_index_name_is_the_one_the_sdk_creates(tmp_path: Path) -> None:
    """Names the index exactly as the SDK's ``SQLiteSession`` creates it on custom tables."""
    path = tmp_path / "sdk.db"
    sdk = agents.SQLiteSession("s", path, sessions_table="my_sessions", messages_table="my_items")
    try:
        await sdk.add_items([{"role": "user", "content": "hi"}])
    finally:
        sdk.close()
    conn = sqlite3.connect(path)
    try:
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'my_items' "
                "AND sql IS NOT NULL"
            )
        }
    finally:
        conn.close()
    assert indexes == {TableNames("my_sessions", "my_items").index}

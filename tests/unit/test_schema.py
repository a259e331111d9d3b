"""Table names: the identifier check every name passes before DDL, and the SDK's defaults."""

from __future__ import annotations

import inspect
import sqlite3
from contextlib import closing
from pathlib import Path

import agents
import pytest

from agent_sessions import SQLiteSession
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


# --- reserved words and the package's own tables ---------------------------------------------


@pytest.mark.parametrize(
    "name", ["select", "order", "SELECT", "Order", "group", "table", "user", "key", "values"]
)
def test_reserved_word_is_refused(name: str) -> None:
    """Refuses an SQL reserved word (in any case) that would fail on first use."""
    with pytest.raises(InvalidIdentifierError, match="reserved word"):
        validate_identifier(name)
    with pytest.raises(InvalidIdentifierError, match="reserved word"):
        TableNames(messages=name)


@pytest.mark.parametrize("name", ["agent_sessions_schema", "AGENT_SESSIONS_SCHEMA"])
def test_own_schema_table_is_refused(name: str) -> None:
    """Refuses the name of the package's own schema-version table."""
    with pytest.raises(InvalidIdentifierError, match="own schema table"):
        TableNames(sessions=name)


@pytest.mark.parametrize("name", ["select", "order", "where", "group", "index", "from"])
def test_refused_reserved_words_really_fail_on_sqlite(name: str) -> None:
    """Each refused sample word is one SQLite cannot use as a table name unquoted."""
    with closing(sqlite3.connect(":memory:")) as conn, pytest.raises(sqlite3.OperationalError):
        conn.execute(f"CREATE TABLE {name} (x INTEGER)")


@pytest.mark.parametrize("name", ["orders", "selected", "user_sessions", "app_order", "my_key"])
def test_names_that_merely_contain_a_reserved_word_are_accepted(name: str) -> None:
    """Accepts a name that contains a reserved word without being one."""
    assert validate_identifier(name) == name


def test_reserved_table_name_is_refused_before_the_file_is_created(tmp_path: Path) -> None:
    """``SQLiteSession`` with ``messages_table="order"`` raises at once and creates no file."""
    path = tmp_path / "never.db"
    with pytest.raises(InvalidIdentifierError, match="'order'"):
        SQLiteSession("s", path, messages_table="order")
    assert not path.exists()

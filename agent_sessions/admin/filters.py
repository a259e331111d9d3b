"""The listing's filters that look inside a session: who wrote to it, and its metadata, in SQL.

``agent=`` keeps sessions with at least one row that agent wrote: an ``EXISTS`` on the messages
table's ``agent_name`` column (schema version 4; a database without it has no such session).

``where=`` keeps sessions whose plaintext metadata has each top-level key equal to the value
given, by JSON equality (``1 == 1.0``, ``true != 1``, objects by their keys, arrays in order).
The comparison is an ``EXISTS`` on the state table with the dialect's JSON functions:

- PostgreSQL: ``jsonb`` equality, for every value (its equality is JSON equality);
- SQLite (JSON1) and MariaDB: scalars (strings byte for byte after unescaping, numbers by value,
  ``true``/``false``/``null`` by type); an object or array value is compared in Python, because
  neither dialect compares JSON documents by value (SQLite compares text; MariaDB's
  ``JSON_EQUALS`` tells ``"\u00e9"`` from ``"é"``);
- MySQL, and keys holding a quote, a backslash or a control character (no path syntax spells
  them on every dialect): in Python, over the metadata rows, as before.

Metadata sealed by ``EncryptedSession`` (an object with the reserved key), a value that is not a
JSON object, and text that is not JSON never match, on either path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    select,
)
from sqlalchemy.exc import DBAPIError

from ..metadata import METADATA_STATE, RESERVED_KEY
from .db import Database

__all__ = ["agent_condition", "malformed_json", "split_where", "where_condition"]

_BAD_JSON = frozenset({"22P02", "22P05", "22032"})
"""PostgreSQL's errors for text that ``::jsonb`` cannot read (not JSON, or a NUL escape)."""
_INT64 = 2**63
_UNSPELLABLE = frozenset('"\\') | frozenset(map(chr, range(32)))


def _sql_dialect(db: Database) -> str | None:
    """``sqlite``, ``postgresql`` or ``mariadb`` when the dialect compares JSON; else None."""
    if db.dialect in ("sqlite", "postgresql"):
        return db.dialect
    if db.dialect == "mysql" and getattr(db.engine.dialect, "is_mariadb", False):
        return "mariadb"
    return None


def _in_sql(dialect: str | None, key: str, value: Any) -> bool:
    """Whether ``key == value`` is compared in SQL on this dialect (else in Python)."""
    if dialect is None or _UNSPELLABLE.intersection(key):
        return False
    if dialect == "postgresql":
        return True
    if isinstance(value, (dict, list)):
        return False
    return not (isinstance(value, int) and not -_INT64 <= value < _INT64)


def split_where(db: Database, where: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter's keys compared in SQL on this database, and those compared in Python."""
    dialect = _sql_dialect(db)
    in_sql = {k: v for k, v in where.items() if _in_sql(dialect, k, v)}
    return in_sql, {k: v for k, v in where.items() if k not in in_sql}


def _path(key: str) -> str:
    return f'$."{key}"'


def _state_table(db: Database) -> Table:
    return Table(
        db.names.state,
        MetaData(),
        Column("session_id", String),
        Column("name", String),
        Column("value", Text),
    )


def _sqlite(value_column: Any, where: Mapping[str, Any]) -> ColumnElement[bool]:
    kind = func.json_type
    terms: list[ColumnElement[bool]] = [
        kind(value_column) == "object",
        kind(value_column, _path(RESERVED_KEY)).is_(None),
    ]
    for key, value in where.items():
        path, found = _path(key), kind(value_column, _path(key))
        if value is None:
            terms.append(found == "null")
        elif isinstance(value, bool):
            terms.append(found == ("true" if value else "false"))
        elif isinstance(value, (int, float)):
            terms.append(found.in_(("integer", "real")))
            terms.append(func.json_extract(value_column, path) == literal(value))
        else:
            terms.append(found == "text")
            terms.append(func.json_extract(value_column, path) == literal(str(value)))
    # CASE is the one construct SQLite evaluates in order: JSON1 raises on malformed text.
    inner = case((and_(*terms), 1), else_=0)
    return case((func.json_valid(value_column) == 1, inner), else_=0) == 1


def _postgresql(value_column: Any, where: Mapping[str, Any]) -> ColumnElement[bool]:
    # Imported here: a listing of a SQLite file never loads the PostgreSQL dialect.
    from sqlalchemy.dialects.postgresql import JSONB  # noqa: PLC0415

    document = cast(value_column, JSONB)
    terms: list[ColumnElement[bool]] = [
        func.jsonb_typeof(document) == "object",
        document.op("->")(literal(RESERVED_KEY, String)).is_(None),
    ]
    for key, value in where.items():
        wanted = cast(literal(json.dumps(value, allow_nan=False), Text), JSONB)
        terms.append(document.op("->")(literal(key, String)).op("=")(wanted))
    return and_(*terms)


def _mariadb(value_column: Any, where: Mapping[str, Any]) -> ColumnElement[bool]:
    terms: list[ColumnElement[bool]] = [
        func.json_valid(value_column) == 1,
        func.json_type(value_column) == "OBJECT",
        func.json_extract(value_column, _path(RESERVED_KEY)).is_(None),
    ]
    for key, value in where.items():
        found = func.json_extract(value_column, _path(key))
        kind = func.json_type(found)
        if value is None:
            terms.append(kind == "NULL")
        elif isinstance(value, bool):
            terms.append(kind == "BOOLEAN")
            terms.append(found == ("true" if value else "false"))  # JSON spells them so
        elif isinstance(value, (int, float)):
            terms.append(kind.in_(("INTEGER", "DOUBLE")))
            terms.append(func.json_equals(found, literal(json.dumps(value))) == 1)
        else:
            # Compared as UTF-8 bytes: the column's collation would fold case and spaces.
            unquoted = func.hex(func.json_unquote(found))  # the column is utf8mb4
            terms.append(kind == "STRING")
            terms.append(unquoted == str(value).encode("utf-8").hex().upper())
    return and_(*terms)


def where_condition(db: Database, session_id: Any, where: Mapping[str, Any]) -> ColumnElement[bool]:
    """``EXISTS`` a metadata row of the session that matches every key of ``where``.

    ``where`` holds only keys :func:`split_where` gave to SQL on this database.
    """
    state = _state_table(db).alias("meta")
    dialect = _sql_dialect(db)
    match = {"sqlite": _sqlite, "postgresql": _postgresql, "mariadb": _mariadb}[str(dialect)]
    return exists(
        select(literal(1)).where(
            state.c.session_id == session_id,
            state.c.name == METADATA_STATE,
            state.c.value.is_not(None),
            match(state.c.value, where),
        )
    )


def agent_condition(db: Database, session_id: Any, agent: str) -> ColumnElement[bool]:
    """``EXISTS`` a row of the session that ``agent`` wrote (never, without the columns)."""
    if not db.provenance:
        return false()
    m = db.tagged_messages.alias("by_agent")
    return exists(select(literal(1)).where(m.c.session_id == session_id, m.c.agent_name == agent))


def malformed_json(error: DBAPIError) -> bool:
    """Whether PostgreSQL refused a metadata row as JSON (the filter then runs in Python)."""
    origin = error.orig
    code = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    cause = getattr(origin, "__cause__", None)
    code = code or getattr(cause, "sqlstate", None)
    return code in _BAD_JSON

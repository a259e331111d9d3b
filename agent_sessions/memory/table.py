"""The memories table as SQLAlchemy sees it, with column types that compare the same everywhere."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    inspect,
    text,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from .fulltext import backfill
from .keys import KEY_MAX, NAMESPACE_MAX, SEPARATOR
from .schema import fts_table, index_name, sqlite_fulltext_statements

__all__ = ["PG_DOCUMENT", "add_fulltext", "memory_table"]

PG_DOCUMENT = "to_tsvector('english', coalesce(search_text, ''))"
"""What PostgreSQL's GIN index holds; a query must use the same expression to use it."""


class _ExactText(TypeDecorator[str]):
    """Text compared byte by byte, so prefix ranges and equality mean the same on every server.

    PostgreSQL's default collation orders by locale, so the column uses ``"C"``. MariaDB and
    MySQL use ``utf8mb4_bin``, which still ignores trailing spaces (``"k"`` equals ``"k "``);
    there a ``terminated`` column stores each value followed by U+001F (which no name holds),
    so a stored value never ends in a space. Stored namespaces already end that way.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int, *, terminated: bool = False) -> None:
        super().__init__(length + 1)
        self.length = length + 1  # room for the terminator
        self.terminated = terminated

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        length = self.length
        if dialect.name in ("mysql", "mariadb"):
            column = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
            return dialect.type_descriptor(column)
        if dialect.name == "postgresql":
            return dialect.type_descriptor(String(length, collation="C"))
        return dialect.type_descriptor(String(length))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and self.terminated and dialect.name in ("mysql", "mariadb"):
            return value + SEPARATOR
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is not None and self.terminated and dialect.name in ("mysql", "mariadb"):
            return str(value).removesuffix(SEPARATOR)
        return None if value is None else str(value)


_NAMESPACE = _ExactText(NAMESPACE_MAX)
_KEY = _ExactText(KEY_MAX, terminated=True)
_VALUE = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


class _Vectors(TypeDecorator[bytes]):
    """Packed vectors: a binary column, or base64 text on MySQL/MariaDB.

    aiomysql (0.3) cannot bind ``bytes`` with PyMySQL >= 1.2 (it imports a helper PyMySQL
    removed), so on those servers the blob travels, and is kept, as base64 text.
    """

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.LONGTEXT(charset="ascii"))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> Any:
        if value is None or dialect.name not in ("mysql", "mariadb"):
            return value
        return base64.b64encode(value).decode("ascii")

    def process_result_value(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if dialect.name in ("mysql", "mariadb"):
            return base64.b64decode(value)
        return bytes(value)


_VECTORS = _Vectors()
_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: an alias of the rowid


def memory_table(name: str, metadata: MetaData | None = None) -> Table:
    """The SQLAlchemy definition of a memories table; ``name`` must be validated already."""
    return Table(
        name,
        metadata or MetaData(),
        Column("id", _ID, primary_key=True, autoincrement=True),
        Column("namespace", _NAMESPACE, nullable=False),
        Column("key", _KEY, nullable=False),
        Column("value", _VALUE, nullable=False),
        Column("created_at", Double(), nullable=False),
        Column("updated_at", Double(), nullable=False),
        Column("expires_at", Double(), nullable=True),
        Column("ttl", Double(), nullable=True),
        Column("embedding", _VECTORS, nullable=True),
        Column("search_text", _VALUE, nullable=True),
        UniqueConstraint("namespace", "key", name=index_name("uq", name)),
        Index(index_name("idx_expires", name), "expires_at"),
        Index(index_name("idx_recent", name), "namespace", "updated_at", "id"),
        mysql_charset="utf8mb4",
    )


def add_fulltext(conn: Connection, table: Table) -> None:
    """Upgrade a memories table to version 2: ``search_text``, its index, and its words.

    Idempotent (each step checks what is there), because MariaDB commits every DDL statement
    by itself: a crash half way is finished by the next start. Existing rows get their words
    once; an undecodable value keeps NULL.
    """
    name, dialect = table.name, conn.dialect.name
    if "search_text" not in {column["name"] for column in inspect(conn).get_columns(name)}:
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN search_text {_TEXT_DDL[dialect]}"))
    rows = conn.execute(text(f"SELECT id, value FROM {name} WHERE search_text IS NULL")).all()
    words = backfill((int(row_id), str(value)) for row_id, value in rows)
    if words:
        upgrade = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(search_text=bindparam("words"))
        )
        conn.execute(upgrade, [{"words": w, "row_id": i} for w, i in words])
    # The index comes last: SQLite's triggers must never see a row its index has not seen.
    index = index_name("idx_fts", name)
    if dialect == "sqlite":
        if not conn.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = :fts"), {"fts": fts_table(name)}
        ).first():
            for statement in sqlite_fulltext_statements(name):
                conn.execute(text(statement))
    elif dialect == "postgresql":
        conn.execute(
            text(f"CREATE INDEX IF NOT EXISTS {index} ON {name} USING GIN ({PG_DOCUMENT})")
        )
    elif index not in {found["name"] for found in inspect(conn).get_indexes(name)}:
        conn.execute(text(f"ALTER TABLE {name} ADD FULLTEXT INDEX {index} (search_text)"))


_TEXT_DDL = {"sqlite": "TEXT", "postgresql": "TEXT", "mysql": "LONGTEXT", "mariadb": "LONGTEXT"}

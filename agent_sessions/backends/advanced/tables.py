"""The branch tables on a database server (PostgreSQL, MySQL/MariaDB), created through SQLAlchemy.

They hold what the SQLite branch tables hold, column for column (see :mod:`.sql`), under the
names a pair of tables uses when it does not share the SDK's (``<messages>_structure`` and so
on), so many pairs share a database. Two differences: the branches table numbers its rows with
an identity column (``position``; SQLite has ``rowid``) to list branches in creation order, and
on MySQL/MariaDB every key is a bounded ``VARCHAR`` compared byte for byte, like the sessions
table's. A SQLite database opened through SQLAlchemy keeps the SQLite layout and migrations, so
``AdvancedSQLiteSession`` and ``AdvancedSQLAlchemySession`` read one file.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from .._sqlalchemy_schema import SessionTables, binary_collation
from .bridge import Bridge, StatementCache
from .sql import MIGRATIONS, AdvancedStatements, bind_existing
from .write import Schema

__all__ = ["create_branch_tables", "find_branch_tables"]


_FORGET = "agent_sessions_forget_records"
"""The PostgreSQL trigger function that deletes deleted items' structure rows (one per database)."""
_FORGET_FUNCTION = f"""
CREATE FUNCTION {_FORGET}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    EXECUTE format('DELETE FROM %s WHERE message_id IN (SELECT id FROM agent_sessions_gone)',
        TG_ARGV[0]);
    RETURN NULL;
END
$body$"""
_TRIGGER = "agent_sessions_forget"


def _forget_by_trigger(conn: Connection, messages: str, structure: str) -> None:
    """On PostgreSQL, delete an item's structure rows with it by a trigger, not a foreign key.

    A foreign key from ``message_id`` checks its item for every structure row stored, and that
    check locks the item row (a WAL record each): about 5% of an append on PostgreSQL. One
    statement-level trigger on the items table does the key's other job, deleting the records
    of deleted items (the SDK's or a plain session's pop and clear, a cascade from the
    session), once per statement. Tables made before keep their key; the trigger is harmless
    beside it.
    """
    # Made once per database and never replaced: another role's tables may use it already
    # (only its owner may replace it; everyone may call it).
    if conn.execute(text(f"SELECT to_regprocedure('{_FORGET}()')")).scalar() is None:
        conn.execute(text(_FORGET_FUNCTION))
    exists = conn.execute(
        text(
            "SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = CAST(:table AS regclass)"
        ),
        {"name": _TRIGGER, "table": messages},
    ).first()
    if exists is None:
        conn.execute(
            text(
                f"CREATE TRIGGER {_TRIGGER} AFTER DELETE ON {messages} "
                "REFERENCING OLD TABLE AS agent_sessions_gone FOR EACH STATEMENT "
                f"EXECUTE PROCEDURE {_FORGET}('{structure}')"
            )
        )


def _tables(
    tables: SessionTables,
    sql: AdvancedStatements,
    key: TypeEngine[str],
    row: TypeEngine[str],
    *,
    message_key: bool,
) -> list[Table]:
    """Return the branch tables of one pair, for a server (names from ``sql.n``).

    ``message_key``: whether structure rows have a foreign key to their item (not on
    PostgreSQL, where a trigger deletes them, see :func:`_forget_by_trigger`).
    """
    names, st, us = sql.tables, sql.n.structure, sql.n.usage
    metadata = MetaData()
    # The SDK's two tables, for the foreign keys to find (they are not created here).
    tables.sessions.to_metadata(metadata)
    tables.messages.to_metadata(metadata)
    now = text("CURRENT_TIMESTAMP")
    # No foreign key from a structure row's session_id: its message ties it to the session
    # (deleting the session deletes its messages, and they their records: by the message_id
    # key, or on PostgreSQL by the trigger), and a second check per record was measurable on
    # PostgreSQL's append. Tables made before keep it.
    Table(
        st,
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("session_id", key, nullable=False),
        Column(
            "message_id",
            Integer,
            *([ForeignKey(f"{names.messages}.id", ondelete="CASCADE")] if message_key else []),
            nullable=False,
        ),
        Column("branch_id", key, nullable=False, server_default="main"),
        Column("message_type", String(64), nullable=False),
        Column("sequence_number", BigInteger, nullable=False),
        Column("user_turn_number", Integer),
        Column("branch_turn_number", Integer),
        Column("tool_name", row),
        Column("created_at", TIMESTAMP(timezone=False), server_default=now),
        Index(f"idx_{st}_session_seq", "session_id", "sequence_number"),
        # No (session_id, branch_id, sequence_number) index, which SQLite files have: only the
        # SDK's queries use it, and they never run on a server; a branch's rows are found by
        # the (session_id, branch_id, message_id) index. Tables made before keep theirs.
        # Turn first: a planner without statistics (a table that just grew) might otherwise
        # take it for the branch's walks in id order, which share the (session, branch) prefix.
        Index(f"idx_{st}_turn", "session_id", "user_turn_number", "branch_id"),
        Index(f"idx_{st}_branch_message", "session_id", "branch_id", "message_id"),
        Index(f"idx_{st}_message", "message_id", "branch_id"),
    )
    Table(
        us,
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column(
            "session_id",
            key,
            ForeignKey(f"{names.sessions}.session_id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("branch_id", key, nullable=False, server_default="main"),
        Column("user_turn_number", Integer, nullable=False),
        *(
            Column(name, BigInteger, server_default="0")
            for name in ("requests", "input_tokens", "output_tokens", "total_tokens")
        ),
        Column("input_tokens_details", row),
        Column("output_tokens_details", row),
        Column("created_at", TIMESTAMP(timezone=False), server_default=now),
        UniqueConstraint("session_id", "branch_id", "user_turn_number"),
    )
    Table(
        sql.n.reservations,
        metadata,
        Column("session_id", key, primary_key=True),
        Column("branch_id", key, primary_key=True),
    )
    Table(
        sql.n.generations,
        metadata,
        Column("session_id", key, primary_key=True),
        Column("generation", BigInteger, nullable=False, server_default="0"),
    )
    Table(
        sql.n.branches,
        metadata,
        Column("position", BigInteger, primary_key=True),
        Column("session_id", key, nullable=False),
        Column("branch_id", key, nullable=False),
        Column("parent_id", key),
        Column("inherit_below", BigInteger, nullable=False),
        Column("created_at", TIMESTAMP(timezone=False), server_default=now),
        UniqueConstraint("session_id", "branch_id"),
    )
    Table(
        sql.n.current,
        metadata,
        Column("session_id", key, primary_key=True),
        Column("branch_id", key, nullable=False),
    )
    sdk = (names.sessions, names.messages)
    return [table for table in metadata.sorted_tables if table.name not in sdk]


def _server_types(conn: Connection) -> tuple[TypeEngine[str], TypeEngine[str]]:
    """The key and long-text column types of this server (byte-for-byte keys on MySQL)."""
    if conn.dialect.name in ("mysql", "mariadb"):
        collation = binary_collation(conn)
        return mysql.VARCHAR(255, charset="utf8mb4", collation=collation), mysql.LONGTEXT()
    return String(), Text()


def create_branch_tables(
    conn: Connection,
    tables: SessionTables,
    sql: AdvancedStatements,
    cache: StatementCache,
    classify_text: Callable[[str], tuple[str, str | None]],
) -> None:
    """Create (or upgrade) a pair's branch tables, inside ``create_schema``'s lock and transaction.

    SQLite runs the SQLite steps (``AdvancedSQLiteSession``'s tables); a server gets the tables
    above and records the latest version, so later versions can upgrade it. ``classify_text``
    classifies the rows an upgrade of an old SQLite file gives structure rows to.
    """
    if conn.dialect.name == "sqlite":
        Schema(sql, classify_text).ensure(Bridge(conn, cache))
        return
    sql.bind(shared=False)
    key, row = _server_types(conn)
    postgres = conn.dialect.name == "postgresql"
    branch_tables = _tables(tables, sql, key, row, message_key=not postgres)
    branch_tables[0].metadata.create_all(conn, tables=branch_tables, checkfirst=True)
    if postgres:
        _forget_by_trigger(conn, sql.tables.messages, sql.n.structure)
    versions = tables.versions
    found = conn.execute(
        select(versions.c.version).where(versions.c.name == sql.version_name)
    ).first()
    if found is None:
        conn.execute(versions.insert().values(name=sql.version_name, version=len(MIGRATIONS)))
    elif found[0] < len(MIGRATIONS):
        # Tables made by an earlier version: create_all skips their new indexes.
        for table in branch_tables:
            for index in table.indexes:
                index.create(conn, checkfirst=True)
        conn.execute(
            versions.update()
            .where(versions.c.name == sql.version_name)
            .values(version=len(MIGRATIONS))
        )


def find_branch_tables(conn: Connection, sql: AdvancedStatements, cache: StatementCache) -> None:
    """Point the statements at the branch tables the database has (SQLite may share the SDK's)."""
    if conn.dialect.name == "sqlite":
        bind_existing(Bridge(conn, cache), sql)
    else:
        sql.bind(shared=False)

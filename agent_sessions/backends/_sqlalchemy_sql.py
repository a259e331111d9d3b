"""The SQL the SQLAlchemy store runs, built once per pair of tables and dialect.

Core statements carry bound parameters, so SQLAlchemy compiles each once and caches it. The hot
paths are also driver SQL: reads and a one-statement append on PostgreSQL (asyncpg), reads on
SQLite (aiosqlite).
"""

from __future__ import annotations

import zlib

from sqlalchemy import BigInteger, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import BindParameter

from ..errors import StorageError
from ._sqlalchemy_schema import SessionTables

__all__ = ["StateSQL", "Statements"]


class Statements:
    """Every statement the store runs, built once with bound parameters (SQLAlchemy caches them)."""

    def __init__(self, tables: SessionTables, dialect: str) -> None:
        s, m = tables.sessions, tables.messages
        sid: BindParameter[str] = bindparam("sid")
        self.read_all = select(m.c.message_data).where(m.c.session_id == sid).order_by(m.c.id)
        self.read_latest = (
            select(m.c.message_data)
            .where(m.c.session_id == sid)
            .order_by(m.c.id.desc())
            .limit(bindparam("n", type_=BigInteger))
        )
        self.newest = (
            select(m.c.id, m.c.message_data)
            .where(m.c.session_id == sid)
            .order_by(m.c.id.desc())
            .limit(bindparam("n", type_=BigInteger))
        )
        self.older = self.newest.where(m.c.id < bindparam("before"))
        self.insert = insert(m).values(session_id=sid, message_data=bindparam("text"))
        self.insert_at = insert(m).values(
            id=bindparam("id"), session_id=sid, message_data=bindparam("text")
        )
        self.delete_row = delete(m).where(m.c.id == bindparam("id"))
        self.rows = select(m.c.id, m.c.message_data).where(m.c.session_id == sid).order_by(m.c.id)
        in_session = (m.c.id == bindparam("rid"), m.c.session_id == sid)
        self.update_row = update(m).where(*in_session).values(message_data=bindparam("text"))
        self.delete_session_row = delete(m).where(*in_session)
        self.delete_messages = delete(m).where(m.c.session_id == sid)
        self.delete_session = delete(s).where(s.c.session_id == sid)
        # The session record a pop saw: a restore puts rows back only into that same record.
        self.record = select(s.c.created_at).where(s.c.session_id == sid)
        # Locks an existing session row without creating one (pop and clear).
        self.lock_session = update(s).where(s.c.session_id == sid).values(updated_at=s.c.updated_at)
        # That UPDATE locks nothing while the session has no row yet (its first write, or the
        # first after a clear), so on PostgreSQL pops and clears also take a transaction-scoped
        # advisory lock on (this messages table, the session id), which always exists. InnoDB
        # needs none: its UPDATE of a missing key holds a gap lock that the insert waits on.
        self.lock_key: Executable | None = None
        if dialect == "postgresql":
            self.lock_key = text(
                "SELECT pg_advisory_xact_lock(:table_key, hashtext(:sid))"
            ).bindparams(table_key=_signed32(zlib.crc32(tables.names.messages.encode())))
        self.touch_session = _upsert_session(tables, dialect)
        self.state = StateSQL(tables, dialect)
        self.pg = _AsyncpgSQL(tables) if dialect == "postgresql" else None
        self.sqlite = _AiosqliteSQL(tables) if dialect == "sqlite" else None


class StateSQL:
    """The statements of the state table (and the archive's clear), for one dialect."""

    def __init__(self, tables: SessionTables, dialect: str) -> None:
        st, ar = tables.state, tables.archive
        sid: BindParameter[str] = bindparam("sid")
        key = (st.c.session_id == sid, st.c.name == bindparam("sname"))
        self.read = select(st.c.value).where(*key)
        self.delete = delete(st).where(*key)
        self.delete_session = delete(st).where(st.c.session_id == sid)
        self.delete_archive = delete(ar).where(ar.c.session_id == sid)
        self.next_batch = select(func.coalesce(func.max(ar.c.batch), 0) + 1).where(
            ar.c.session_id == sid
        )
        self.archive = insert(ar).values(
            session_id=sid,
            batch=bindparam("abatch"),
            kind=bindparam("akind"),
            role=bindparam("arole"),
            message_data=bindparam("atext"),
        )
        self.archived = (
            select(ar.c.batch, ar.c.kind, ar.c.role, ar.c.message_data, ar.c.archived_at)
            .where(ar.c.session_id == sid)
            .order_by(ar.c.batch, ar.c.id)
        )
        self.delete_batch = delete(ar).where(
            ar.c.session_id == sid, ar.c.batch == bindparam("abatch")
        )
        self.set = update(st).where(*key).values(value=bindparam("sval"), updated_at=func.now())
        row = {"session_id": sid, "name": bindparam("sname"), "value": bindparam("sval")}
        # `upsert` stores a value; `claim` locks the row, making an empty one if there is none,
        # so a read-modify-write holds the row whether or not it existed (rows that stay empty
        # are deleted before the commit).
        self.upsert: Executable
        self.claim: Executable
        if dialect == "postgresql":
            pg = postgresql.insert(st).values(row)
            self.upsert = pg.on_conflict_do_update(
                index_elements=[st.c.session_id, st.c.name],
                set_={"value": pg.excluded.value, "updated_at": func.now()},
            )
            claimed = postgresql.insert(st).values(row)
            self.claim = claimed.on_conflict_do_update(
                index_elements=[st.c.session_id, st.c.name], set_={"value": st.c.value}
            )
        elif dialect == "sqlite":
            lite = sqlite.insert(st).values(row)
            self.upsert = lite.on_conflict_do_update(
                index_elements=[st.c.session_id, st.c.name],
                set_={"value": lite.excluded.value, "updated_at": func.current_timestamp()},
            )
            # The first write of a transaction takes the file's write lock: that is the claim.
            self.claim = sqlite.insert(st).values(row).on_conflict_do_nothing()
        elif dialect in ("mysql", "mariadb"):
            my = mysql.insert(st).values(row)
            self.upsert = my.on_duplicate_key_update(
                value=my.inserted.value, updated_at=func.now(6)
            )
            # An update of the duplicate row (even to itself) takes its exclusive lock at once.
            self.claim = mysql.insert(st).values(row).on_duplicate_key_update(value=st.c.value)
        else:
            raise StorageError(f"SQLAlchemySession does not support the {dialect!r} dialect yet")


class _AiosqliteSQL:
    """SQLite's reads and append as driver SQL, for as few aiosqlite calls as possible."""

    def __init__(self, tables: SessionTables) -> None:
        s, m = tables.names.sessions, tables.names.messages
        self.touch = (
            f"INSERT INTO {s} (session_id) VALUES (?) "
            "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
        )
        self.insert = f"INSERT INTO {m} (session_id, message_data) VALUES (?, ?)"
        self.read_all = f"SELECT message_data FROM {m} WHERE session_id = ? ORDER BY id"
        self.read_latest = (
            f"SELECT message_data FROM {m} WHERE session_id = ? ORDER BY id DESC LIMIT ?"
        )
        # Provenance (schema v4): tagged rows get their time in UTC to the millisecond.
        self.insert_tagged = (
            f"INSERT INTO {m} (session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (?, ?, ?, ?, ?, ?, "
            "strftime('%Y-%m-%d %H:%M:%f', 'now'))"
        )


class _AsyncpgSQL:
    """PostgreSQL's hot paths as driver SQL, for one asyncpg call each."""

    def __init__(self, tables: SessionTables) -> None:
        s, m = tables.names.sessions, tables.names.messages
        self.read_all = f"SELECT message_data FROM {m} WHERE session_id = $1 ORDER BY id"
        self.read_latest = (
            f"SELECT message_data FROM {m} WHERE session_id = $1 ORDER BY id DESC LIMIT $2"
        )
        # Lock-or-create the session row and insert every item in one statement. The items are
        # drawn from the session row's CTE, so their ids are taken only after its row lock is
        # held: writers of one session still get ids in commit order.
        self.append = (
            f"WITH touched AS ("
            f"INSERT INTO {s} (session_id) VALUES ($1) ON CONFLICT (session_id) "
            f"DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING session_id) "
            f"INSERT INTO {m} (session_id, message_data) "
            f"SELECT touched.session_id, item.data FROM touched, "
            f"unnest($2::text[]) WITH ORDINALITY AS item(data, position) ORDER BY item.position"
        )
        # The same for a fresh tagged batch (no stored row of its run to look for): $3 the
        # run id, then per item its agent, position and digest; the time in UTC.
        self.append_tagged = (
            f"WITH touched AS ("
            f"INSERT INTO {s} (session_id) VALUES ($1) ON CONFLICT (session_id) "
            f"DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING session_id) "
            f"INSERT INTO {m} (session_id, message_data, agent_name, run_id, run_position, "
            f"item_digest, created_at) "
            f"SELECT touched.session_id, item.data, item.agent, $3, item.position, item.digest, "
            f"timezone('UTC', now()) FROM touched, "
            f"unnest($2::text[], $4::text[], $5::integer[], $6::text[]) WITH ORDINALITY "
            f"AS item(data, agent, position, digest, n) ORDER BY item.n"
        )


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _upsert_session(tables: SessionTables, dialect: str) -> Executable:
    """Create the session's row, or lock it and bump ``updated_at`` if it exists."""
    s, now = tables.sessions, func.current_timestamp()
    values: dict[str, BindParameter[str]] = {"session_id": bindparam("sid")}
    if dialect == "postgresql":
        return (
            postgresql.insert(s)
            .values(values)
            .on_conflict_do_update(index_elements=[s.c.session_id], set_={"updated_at": now})
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(s)
            .values(values)
            .on_conflict_do_update(index_elements=[s.c.session_id], set_={"updated_at": now})
        )
    if dialect in ("mysql", "mariadb"):
        # DATETIME(6) since schema v2: keep the microseconds.
        return mysql.insert(s).values(values).on_duplicate_key_update(updated_at=func.now(6))
    raise StorageError(f"SQLAlchemySession does not support the {dialect!r} dialect yet")

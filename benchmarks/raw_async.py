"""The floors of the SQLAlchemy suite: the SQL our ``SQLAlchemyStore`` runs, on the bare driver.

``RawAsyncpg`` runs it on bare ``asyncpg`` connections (PostgreSQL), ``RawAiosqlite`` on one
``aiosqlite`` connection (SQLite). Both create the tables in our layout (the SDK's columns plus
the ``(session_id, id)`` index), encode with ``json.dumps`` and decode with ``json.loads``; there
is no validation, no error translation and no SQLAlchemy. Per call:

- ``add_items``: on PostgreSQL our one statement (its own transaction, one round trip): a CTE
  that upserts the session row (``INSERT ... ON CONFLICT (session_id) DO UPDATE SET updated_at
  = CURRENT_TIMESTAMP``) and inserts the items from ``unnest($2::text[])``. On SQLite one
  transaction: that upsert, then the message inserts (``executemany``).
- ``get_items(n)``: ``SELECT message_data ... WHERE session_id = $1 ORDER BY id DESC LIMIT $2``
  (or every row ``ORDER BY id``).
- ``pop_item``: one transaction: lock the session row (``UPDATE ... SET updated_at =
  updated_at``), select the newest row, delete it by id.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiosqlite
import asyncpg

__all__ = ["RawAiosqlite", "RawAsyncpg", "RawSession"]


def _schema(s: str, m: str, serial: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE {s} (
            session_id VARCHAR NOT NULL PRIMARY KEY,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL,
            updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
        )""",
        f"""CREATE TABLE {m} (
            id {serial},
            session_id VARCHAR NOT NULL REFERENCES {s} (session_id) ON DELETE CASCADE,
            message_data TEXT NOT NULL,
            created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
        )""",
        f"CREATE INDEX idx_{m}_session_seq ON {m} (session_id, id)",
        f"CREATE INDEX idx_{m}_session_time ON {m} (session_id, created_at)",
    )


class _Sql:
    """The statements, for one pair of tables, with ``$n`` or ``?`` placeholders."""

    def __init__(self, s: str, m: str, style: str) -> None:
        def p(n: int) -> str:
            return f"${n}" if style == "dollar" else "?"

        self.touch = (
            f"INSERT INTO {s} (session_id) VALUES ({p(1)}) "
            "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
        )
        self.insert = f"INSERT INTO {m} (session_id, message_data) VALUES ({p(1)}, {p(2)})"
        self.read_all = f"SELECT message_data FROM {m} WHERE session_id = {p(1)} ORDER BY id"
        self.read_latest = (
            f"SELECT message_data FROM {m} WHERE session_id = {p(1)} ORDER BY id DESC LIMIT {p(2)}"
        )
        self.lock = f"UPDATE {s} SET updated_at = updated_at WHERE session_id = {p(1)}"
        self.newest = (
            f"SELECT id, message_data FROM {m} WHERE session_id = {p(1)} ORDER BY id DESC LIMIT 1"
        )
        self.delete_row = f"DELETE FROM {m} WHERE id = {p(1)}"
        self.delete_messages = f"DELETE FROM {m} WHERE session_id = {p(1)}"
        self.delete_session = f"DELETE FROM {s} WHERE session_id = {p(1)}"


def _pg_append(s: str, m: str) -> str:
    """Our store's append on PostgreSQL (``_AsyncpgSQL.append``): one statement."""
    return (
        f"WITH touched AS ("
        f"INSERT INTO {s} (session_id) VALUES ($1) ON CONFLICT (session_id) "
        f"DO UPDATE SET updated_at = CURRENT_TIMESTAMP RETURNING session_id) "
        f"INSERT INTO {m} (session_id, message_data) "
        f"SELECT touched.session_id, item.data FROM touched, "
        f"unnest($2::text[]) WITH ORDINALITY AS item(data, position) ORDER BY item.position"
    )


class _Connections:
    """Bare ``asyncpg`` connections, reused last-in first-out, at most ``limit`` open.

    Calls one after another use one connection; concurrent calls open more, up to the cap of
    our ``from_url`` pool (15), and every one is kept. Unlike ``asyncpg.Pool`` a connection is
    not reset (a round trip) when it is given back.
    """

    def __init__(self, dsn: str, limit: int = 15) -> None:
        self.dsn = dsn
        self.idle: list[asyncpg.Connection] = []
        self.every: list[asyncpg.Connection] = []
        self.slots = asyncio.Semaphore(limit)

    async def acquire(self) -> asyncpg.Connection:
        await self.slots.acquire()
        if self.idle:
            return self.idle.pop()
        try:
            conn = await asyncpg.connect(self.dsn)
        except BaseException:
            self.slots.release()
            raise
        self.every.append(conn)
        return conn

    def release(self, conn: asyncpg.Connection) -> None:
        self.idle.append(conn)
        self.slots.release()

    async def close(self) -> None:
        for conn in self.every:
            await conn.close()
        self.every.clear()
        self.idle.clear()


class _Using:
    def __init__(self, connections: _Connections) -> None:
        self.connections = connections
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self.conn = await self.connections.acquire()
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.connections.release(self.conn)


class RawAsyncpg:
    """Bare ``asyncpg`` connections for every session of a run: one while calls come one
    after another (``chat``, ``long_read``), up to 15 while they run at once (``concurrent``)."""

    def __init__(self, dsn: str, sessions_table: str, messages_table: str) -> None:
        self.dsn = dsn
        self.tables = (sessions_table, messages_table)
        self.sql = _Sql(sessions_table, messages_table, "dollar")
        self.append_sql = _pg_append(sessions_table, messages_table)
        self._connections: _Connections | None = None

    def _use(self) -> _Using:
        if self._connections is None:
            raise RuntimeError("RawAsyncpg is not open")
        return _Using(self._connections)

    async def open(self) -> None:
        """Open the first connection and create the tables (not timed)."""
        self._connections = _Connections(self.dsn)
        async with self._use() as conn, conn.transaction():
            for statement in _schema(*self.tables, "SERIAL PRIMARY KEY"):
                await conn.execute(statement)

    def session(self, session_id: str) -> RawSession:
        return RawSession(session_id, self)

    async def read(self, session_id: str, limit: int | None) -> list[Any]:
        async with self._use() as conn:
            if limit is None:
                rows = await conn.fetch(self.sql.read_all, session_id)
                return [json.loads(row[0]) for row in rows]
            rows = await conn.fetch(self.sql.read_latest, session_id, limit)
        return [json.loads(row[0]) for row in reversed(rows)]

    async def append(self, session_id: str, items: list[Any]) -> None:
        texts = [json.dumps(item) for item in items]
        async with self._use() as conn:
            await conn.execute(self.append_sql, session_id, texts)

    async def pop(self, session_id: str) -> Any:
        async with self._use() as conn, conn.transaction():
            await conn.execute(self.sql.lock, session_id)
            row = await conn.fetchrow(self.sql.newest, session_id)
            if row is None:
                return None
            await conn.execute(self.sql.delete_row, row[0])
        return json.loads(row[1])

    async def clear(self, session_id: str) -> None:
        async with self._use() as conn, conn.transaction():
            await conn.execute(self.sql.lock, session_id)
            await conn.execute(self.sql.delete_messages, session_id)
            await conn.execute(self.sql.delete_session, session_id)

    async def close(self) -> None:
        if self._connections is not None:
            await self._connections.close()
            self._connections = None


class RawAiosqlite:
    """One ``aiosqlite`` connection for every session of a run, one call at a time (a lock).

    No pragmas: SQLite's defaults, as on our ``SQLAlchemySession`` (which sets none).
    """

    def __init__(self, path: str, sessions_table: str, messages_table: str) -> None:
        self.path = path
        self.tables = (sessions_table, messages_table)
        self.sql = _Sql(sessions_table, messages_table, "qmark")
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("RawAiosqlite is not open")
        return self._conn

    async def open(self) -> None:
        """Open the connection and create the tables (not timed)."""
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self._conn.execute("BEGIN")
        for statement in _schema(*self.tables, "INTEGER PRIMARY KEY AUTOINCREMENT"):
            await self._conn.execute(statement)
        await self._conn.execute("COMMIT")

    def session(self, session_id: str) -> RawSession:
        return RawSession(session_id, self)

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def read(self, session_id: str, limit: int | None) -> list[Any]:
        async with self._lock:
            if limit is None:
                rows = await self._fetch(self.sql.read_all, (session_id,))
                return [json.loads(row[0]) for row in rows]
            rows = await self._fetch(self.sql.read_latest, (session_id, limit))
        return [json.loads(row[0]) for row in reversed(rows)]

    async def append(self, session_id: str, items: list[Any]) -> None:
        rows = [(session_id, json.dumps(item)) for item in items]
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN")
            try:
                await conn.execute(self.sql.touch, (session_id,))
                await conn.executemany(self.sql.insert, rows)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def pop(self, session_id: str) -> Any:
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN")
            try:
                await conn.execute(self.sql.lock, (session_id,))
                rows = await self._fetch(self.sql.newest, (session_id,))
                if rows:
                    await conn.execute(self.sql.delete_row, (rows[0][0],))
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        return json.loads(rows[0][1]) if rows else None

    async def clear(self, session_id: str) -> None:
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN")
            try:
                for sql in (self.sql.lock, self.sql.delete_messages, self.sql.delete_session):
                    await conn.execute(sql, (session_id,))
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class RawSession:
    """A session-shaped handle on a raw floor; closing it is a no-op (the floor owns the pool)."""

    def __init__(self, session_id: str, floor: RawAsyncpg | RawAiosqlite) -> None:
        self.session_id = session_id
        self.floor = floor

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.floor.read(self.session_id, limit)

    async def add_items(self, items: list[Any]) -> None:
        await self.floor.append(self.session_id, items)

    async def pop_item(self) -> Any:
        return await self.floor.pop(self.session_id)

    async def clear_session(self) -> None:
        await self.floor.clear(self.session_id)

"""SQLAlchemy memory backend: any async engine (PostgreSQL, MariaDB/MySQL, SQLite via aiosqlite).

The table is created on first use under a database-wide lock (an advisory lock on PostgreSQL, a
named lock on MariaDB, the write lock on SQLite), so many processes may start at once. Every
value is a bound parameter; the table name is a validated identifier. Vector search is exact
and runs in this process over the scope's vectors, read fresh on every search.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    func,
    or_,
    select,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ColumnElement, Executable

from ..backends._sqlalchemy_engine import shared_connection_lock
from ..backends._sqlalchemy_schema import begin_sqlite
from ..errors import StorageError, StorageUnavailableError
from ..schema import VERSION_TABLE, validate_identifier
from .fulltext import Term, boolean_query, fts5_query, tsquery
from .keys import prefix_bounds
from .schema import FULLTEXT_VERSION, fts_table
from .table import PG_DOCUMENT, add_fulltext, memory_table
from .types import Entry, Hint, Record, Row, Tally
from .vectors import rank

__all__ = ["SQLAlchemyMemoryBackend"]

T = TypeVar("T")
_THREAD_RANKING = 2048
"""Scopes with more vectors are ranked in a worker thread, off the event loop."""


def _versions() -> Table:
    return Table(
        VERSION_TABLE,
        MetaData(),
        Column("name", String(255), primary_key=True),
        Column("version", Integer, nullable=False),
    )


def _create(conn: Connection, table: Table) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(VERSION_TABLE.encode())
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect in ("mysql", "mariadb"):
        conn.execute(text("SELECT GET_LOCK(:name, 60)"), {"name": VERSION_TABLE})
    try:
        versions = _versions()
        versions.create(conn, checkfirst=True)
        found = conn.execute(
            select(versions.c.version).where(versions.c.name == table.name)
        ).first()
        if found is None:
            table.create(conn, checkfirst=True)
            add_fulltext(conn, table)
            conn.execute(versions.insert().values(name=table.name, version=FULLTEXT_VERSION))
        elif found[0] < FULLTEXT_VERSION:
            add_fulltext(conn, table)
            conn.execute(
                sql_update(versions)
                .where(versions.c.name == table.name)
                .values(version=FULLTEXT_VERSION)
            )
    finally:
        if dialect in ("mysql", "mariadb"):
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": VERSION_TABLE})


class SQLAlchemyMemoryBackend:
    """The memory rows of one database behind an ``AsyncEngine``.

    Args:
        engine: The engine; disposed of by :meth:`aclose` only when ``owns_engine``.
        table: The memories table; a validated identifier.
        create_tables: Create the table on first use (safe from many processes at once).
        owns_engine: Dispose of the engine on close.
    """

    def __init__(
        self, engine: AsyncEngine, table: str, *, create_tables: bool, owns_engine: bool
    ) -> None:
        self.engine = engine
        self.owns_engine = owns_engine
        self.where = engine.url.render_as_string(hide_password=True)
        self.table = memory_table(validate_identifier(table, "memory table name"))
        self._pending = create_tables
        self._lock: asyncio.Lock | None = None
        self._dialect = engine.dialect.name
        if self._dialect not in ("postgresql", "sqlite", "mysql", "mariadb"):
            raise StorageError(f"MemoryStore does not support the {self._dialect!r} dialect")
        if self._dialect == "sqlite":
            from ..backends._sqlalchemy_engine import use_wal  # noqa: PLC0415 - SQLite only

            use_wal(engine)

    async def _ready(self) -> None:
        if not self._pending:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pending:

                async def create() -> None:
                    async with self.engine.begin() as conn:
                        if self._dialect == "sqlite":
                            await begin_sqlite(conn)
                        await conn.run_sync(_create, self.table)

                await self._guard("create table", create)
                self._pending = False

    async def _guard(self, what: str, run: Callable[[], Awaitable[T]]) -> T:
        serial = shared_connection_lock(self.engine)  # in-memory SQLite: take turns
        try:
            if serial is None:
                return await run()
            async with serial:
                return await run()
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, OSError):
                raise StorageUnavailableError(
                    f"memory {what} failed: cannot reach {self.where}: {exc.orig!r}"
                ) from exc
            raise StorageError(f"memory {what} on {self.where} failed: {exc.orig!r}") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StorageUnavailableError(
                f"memory {what} failed: cannot use {self.where}: {exc!r}"
            ) from exc

    async def _rows(self, what: str, statement: Executable) -> list[Any]:
        await self._ready()

        async def read() -> list[Any]:
            async with self.engine.connect() as conn:
                return list((await conn.execute(statement)).all())

        return await self._guard(what, read)

    async def _write(self, what: str, statement: Executable) -> int:
        await self._ready()

        async def write() -> int:
            async with self.engine.begin() as conn:
                return int((await conn.execute(statement)).rowcount)

        return await self._guard(what, write)

    def _live(self, now: float) -> ColumnElement[bool]:
        expires = self.table.c.expires_at
        return or_(expires.is_(None), expires > now)

    def _scope(self, prefix: str) -> list[ColumnElement[bool]]:
        bounds = prefix_bounds(prefix)
        if bounds is None:
            return []
        namespace = self.table.c.namespace
        return [namespace >= bounds[0], namespace < bounds[1]]

    def _columns(self) -> list[Any]:
        c = self.table.c
        return [c.id, c.namespace, c.key, c.value, c.created_at, c.updated_at]

    async def put(self, record: Record) -> None:
        """Insert or replace one memory in one statement."""
        t = self.table
        values = {
            "namespace": record.namespace,
            "key": record.key,
            "value": record.value,
            "created_at": record.now,
            "updated_at": record.now,
            "expires_at": record.expires_at,
            "ttl": record.ttl,
            "embedding": record.embedding,
            "search_text": record.words,
        }
        stale = and_(t.c.expires_at.is_not(None), t.c.expires_at <= record.now)
        statement: Executable
        if self._dialect in ("mysql", "mariadb"):
            insert = mysql.insert(t).values(values)
            # MySQL applies assignments left to right: created_at must read the old expiry.
            statement = insert.on_duplicate_key_update(
                [
                    ("created_at", func.IF(stale, insert.inserted.created_at, t.c.created_at)),
                    ("value", insert.inserted.value),
                    ("updated_at", insert.inserted.updated_at),
                    ("expires_at", insert.inserted.expires_at),
                    ("ttl", insert.inserted.ttl),
                    ("embedding", insert.inserted.embedding),
                    ("search_text", insert.inserted.search_text),
                ]
            )
        else:
            dialect = postgresql if self._dialect == "postgresql" else sqlite
            insert = dialect.insert(t).values(values)
            statement = insert.on_conflict_do_update(
                index_elements=[t.c.namespace, t.c.key],
                set_={
                    "created_at": case((stale, insert.excluded.created_at), else_=t.c.created_at),
                    "value": insert.excluded.value,
                    "updated_at": insert.excluded.updated_at,
                    "expires_at": insert.excluded.expires_at,
                    "ttl": insert.excluded.ttl,
                    "embedding": insert.excluded.embedding,
                    "search_text": insert.excluded.search_text,
                },
            )
        await self._write("put", statement)

    async def get(self, namespace: str, key: str, now: float) -> Row | None:
        """Return one live memory, or None."""
        c = self.table.c
        statement = select(*self._columns()).where(
            c.namespace == namespace, c.key == key, self._live(now)
        )
        rows = await self._rows("get", statement)
        return Row(*rows[0]) if rows else None

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete one memory; True if it was stored."""
        c = self.table.c
        statement = delete(self.table).where(c.namespace == namespace, c.key == key)
        return await self._write("delete", statement) > 0

    async def scan(
        self,
        prefix: str,
        now: float,
        *,
        limit: int | None,
        offset: int,
        vectors: bool,
        hints: Sequence[Hint] = (),
    ) -> list[Row]:
        """Return the live memories under ``prefix``, most recently updated first.

        ``hints`` are not used: values are text here, and the store filters in process.
        """
        c = self.table.c
        columns = [*self._columns(), c.embedding] if vectors else self._columns()
        statement = (
            select(*columns)
            .where(self._live(now), *self._scope(prefix))
            .order_by(c.updated_at.desc(), c.id.desc())
            .offset(offset)
        )
        if limit is not None:
            statement = statement.limit(limit)
        elif offset and self._dialect in ("mysql", "mariadb"):
            statement = statement.limit(2**63 - 1)  # MySQL allows OFFSET only after a LIMIT
        return [Row(*row) for row in await self._rows("search", statement)]

    async def fulltext(self, prefix: str, terms: Sequence[Term], now: float) -> list[Row] | None:
        """Return the live memories under ``prefix`` the database's full-text index matches."""
        t = self.table
        columns = [f"m.{c}" for c in ("id", "namespace", "key", "value", "created_at")]
        params: dict[str, object] = {"now": now}
        if self._dialect == "sqlite":
            fts = fts_table(t.name)
            source = f"{fts} JOIN {t.name} AS m ON m.id = {fts}.rowid"
            match, order = f"{fts} MATCH :query", f"bm25({fts})"
            params["query"] = fts5_query(terms)
        elif self._dialect == "postgresql":
            source = f"{t.name} AS m"
            match = f"{PG_DOCUMENT.replace('search_text', 'm.search_text')} @@ query"
            source += ", to_tsquery('english', :query) AS query"
            order = f"ts_rank({PG_DOCUMENT.replace('search_text', 'm.search_text')}, query) DESC"
            params["query"] = tsquery(terms)
        else:
            boolean = boolean_query(terms)
            if boolean is None:
                return None
            match = "MATCH (m.search_text) AGAINST (:query IN BOOLEAN MODE)"
            source, order = f"{t.name} AS m", f"{match} DESC"
            params["query"] = boolean
        where = f"{match} AND (m.expires_at IS NULL OR m.expires_at > :now)"
        bounds = prefix_bounds(prefix)
        if bounds is not None:
            where += " AND m.namespace >= :low AND m.namespace < :high"
            params["low"], params["high"] = bounds
        selected = ", ".join([*columns, "m.updated_at"])
        sql = f"SELECT {selected} FROM {source} WHERE {where} ORDER BY {order}"
        statement = text(sql).bindparams(**params).columns(*self._columns())
        return [Row(*row) for row in await self._rows("search", statement)]

    async def fetch(self, ids: Sequence[int], now: float) -> list[Row]:
        """Return the live memories with these row ids."""
        if not ids:
            return []
        statement = select(*self._columns()).where(self.table.c.id.in_(list(ids)), self._live(now))
        return [Row(*row) for row in await self._rows("search", statement)]

    async def nearest(
        self, prefix: str, query: Sequence[float], now: float, k: int, dims: int
    ) -> list[tuple[int, float]]:
        """Read the scope's vectors and rank them exactly, in a thread when there are many."""
        c = self.table.c
        statement = select(c.id, c.embedding).where(
            self._live(now), c.embedding.is_not(None), *self._scope(prefix)
        )
        found = await self._rows("search", statement)
        rows = [(int(row_id), bytes(blob)) for row_id, blob in found]
        if len(rows) > _THREAD_RANKING:
            return await asyncio.to_thread(rank, query, rows, k, dims)
        return rank(query, rows, k, dims)

    async def refresh(self, ids: Sequence[int], now: float) -> None:
        """Restart the TTL of these memories from ``now``."""
        if not ids:
            return
        c = self.table.c
        statement = (
            sql_update(self.table)
            .where(c.id.in_(list(ids)), c.ttl.is_not(None))
            .values(expires_at=c.ttl + now)
        )
        await self._write("refresh", statement)

    async def namespaces(self, prefix: str, now: float) -> list[str]:
        """Return the distinct namespaces holding live memories under ``prefix``."""
        c = self.table.c
        statement = select(c.namespace).where(self._live(now), *self._scope(prefix)).distinct()
        return [row[0] for row in await self._rows("list_namespaces", statement)]

    async def tallies(self, prefix: str, now: float) -> list[Tally]:
        """Count the memories of every namespace under ``prefix``, sorted by namespace."""
        c = self.table.c
        live = self._live(now)
        statement = (
            select(
                c.namespace,
                func.sum(case((live, 1), else_=0)),
                func.sum(case((live, 0), else_=1)),
                func.max(c.updated_at),
            )
            .where(*self._scope(prefix))
            .group_by(c.namespace)
            .order_by(c.namespace)
        )
        rows = await self._rows("list", statement)
        return [Tally(ns, int(live), int(gone), float(last)) for ns, live, gone, last in rows]

    async def entries(self, prefix: str, key: str | None = None) -> list[Entry]:
        """Every stored memory under ``prefix`` (or the one ``key`` of that namespace)."""
        c = self.table.c
        columns = [c.namespace, c.key, c.value, c.created_at, c.updated_at, c.expires_at, c.ttl]
        if key is not None:
            statement = select(*columns).where(c.namespace == prefix, c.key == key)
        else:
            statement = select(*columns).where(*self._scope(prefix)).order_by(c.namespace, c.key)
        return [Entry(*row) for row in await self._rows("export", statement)]

    async def sweep(self, now: float) -> int:
        """Delete every expired memory; return how many."""
        c = self.table.c
        statement = delete(self.table).where(c.expires_at.is_not(None), c.expires_at <= now)
        return await self._write("sweep", statement)

    async def aclose(self) -> None:
        """Dispose of the engine if this backend created it; idempotent."""
        if self.owns_engine:
            self.owns_engine = False
            await self.engine.dispose()

"""SQLite memory backend: stdlib ``sqlite3`` on the store's own worker thread, like the sessions.

The memories live in their own table (``agent_memories`` by default), so they can share a file
with sessions. The file is opened the sessions' way: WAL, ``synchronous=FULL`` unless
``durable=False``, writers queued on the ``<file>-lock`` lock and ``BEGIN IMMEDIATE``. Reads of a
file run on a read-only connection on the loop (a WAL reader never waits); writes, TTL refreshes
and vector searches run on the worker thread.

Large vector scopes are searched from a :class:`~agent_sessions.memory.vectors.VectorCache`
that lives on the worker thread. Our own writes patch it; a commit by any other connection
changes ``PRAGMA data_version`` on ours, and the caches are then dropped and reloaded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .._worker import ConnectionWorker
from ..backends._sqlite_connection import (
    MEMORY,
    ReaderSlot,
    close_connections,
    open_worker_connection,
    retry_busy,
    transaction,
)
from ..errors import StorageError
from ..schema import VERSION_TABLE, validate_identifier
from .fulltext import Term, backfill, fts5_query
from .keys import prefix_bounds
from .schema import FULLTEXT_VERSION, fts_table, sqlite_fulltext_statements, sqlite_statements
from .types import Entry, Hint, Record, Row, Tally
from .vectors import VectorCache, numpy_or_none, rank

__all__ = ["SQLiteMemoryBackend"]

T = TypeVar("T")
CACHE_MIN_ROWS = 1024
"""Scopes with fewer vectors are read fresh on every search: that is cheaper than a cache."""
CACHE_SCOPES = 4
"""At most this many scopes are cached (the least recently searched is dropped first)."""
_COLUMNS = "id, namespace, key, value, created_at, updated_at, NULL"  # NULL: no vectors
_PAGE = "LIMIT :limit OFFSET :offset"
_WITH_VECTORS = "id, namespace, key, value, created_at, updated_at, embedding"


def _migrate(conn: sqlite3.Connection, table: str) -> None:
    steps = sqlite_statements(table)
    with transaction(conn):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
            "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = conn.execute(f"SELECT version FROM {VERSION_TABLE} WHERE name = ?", (table,))
        found = row.fetchone()
        version = 0 if found is None else int(found[0])
        for step in steps[version:]:
            for statement in step:
                conn.execute(statement)
        if version < FULLTEXT_VERSION <= len(steps):
            # Rows stored before keyword indexing get their words once, then the index is built.
            rows = conn.execute(f"SELECT id, value FROM {table}").fetchall()
            conn.executemany(f"UPDATE {table} SET search_text = ? WHERE id = ?", backfill(rows))
            for statement in sqlite_fulltext_statements(table):
                conn.execute(statement)
        if version < len(steps):
            conn.execute(
                f"INSERT INTO {VERSION_TABLE} (name, version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                (table, len(steps)),
            )


def _configure(conn: sqlite3.Connection, path: str, table: str, durable: bool) -> None:
    if path != MEMORY:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    _migrate(conn, table)


def _open(
    path: str, table: str, durable: bool, busy_timeout: float, reader: ReaderSlot
) -> sqlite3.Connection:
    return open_worker_connection(
        path, busy_timeout, reader, lambda c: _configure(c, path, table, durable)
    )


class _Caches:
    """The vector caches of one store, touched only on its worker thread."""

    def __init__(self) -> None:
        self.by_prefix: dict[str, VectorCache] = {}
        self.data_version: int | None = None

    def check(self, conn: sqlite3.Connection) -> None:
        """Drop every cache if another connection committed since the last look."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if version != self.data_version:
            self.by_prefix.clear()
            self.data_version = version

    def keep(self, prefix: str, cache: VectorCache) -> None:
        """Cache a scope, dropping the least recently searched one beyond the limit."""
        self.by_prefix[prefix] = cache
        while len(self.by_prefix) > CACHE_SCOPES:
            del self.by_prefix[next(iter(self.by_prefix))]

    def covering(self, namespace: str) -> list[VectorCache]:
        return [cache for cache in self.by_prefix.values() if cache.covers(namespace)]


class SQLiteMemoryBackend:
    """The memory rows of one SQLite file (or ``:memory:`` database), on a worker thread.

    Args:
        db_path: A file path, or ``":memory:"``.
        table: The memories table; a validated identifier.
        durable: ``synchronous=FULL`` (True) or ``NORMAL``.
        busy_timeout: Seconds a write waits for another connection's lock.
    """

    def __init__(
        self, db_path: str | Path, table: str, *, durable: bool = True, busy_timeout: float = 30.0
    ) -> None:
        self.table = validate_identifier(table, "memory table name")
        self.where = repr(str(db_path))
        self.busy_timeout = busy_timeout
        self._reader = ReaderSlot()
        self._caches = _Caches()
        self._numpy = numpy_or_none() is not None
        self._worker: ConnectionWorker[sqlite3.Connection] = ConnectionWorker(
            partial(_open, str(db_path), self.table, durable, busy_timeout, self._reader),
            partial(close_connections, self._reader),
            label=f"MemoryStore({str(db_path)!r})",
        )
        self._worker.start()
        t = self.table
        self._upsert = (
            f"INSERT INTO {t} (namespace, key, value, created_at, updated_at, expires_at, ttl, "
            "embedding, search_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) "
            "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
            f"created_at = CASE WHEN {t}.expires_at IS NOT NULL AND {t}.expires_at <= "
            f"excluded.updated_at THEN excluded.created_at ELSE {t}.created_at END, "
            "expires_at = excluded.expires_at, ttl = excluded.ttl, embedding = excluded.embedding, "
            "search_text = excluded.search_text"
        )
        self._live = "(expires_at IS NULL OR expires_at > ?)"
        self._get = (
            f"SELECT {_COLUMNS} FROM {t} WHERE namespace = ? AND key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)"
        )

    async def _call(self, what: str, call: Callable[[sqlite3.Connection], T]) -> T:
        def guarded(conn: sqlite3.Connection) -> T:
            try:
                return retry_busy(call, conn, self.busy_timeout)
            except sqlite3.Error as exc:
                raise StorageError(f"SQLite memory {what} on {self.where} failed: {exc}") from exc

        return await self._worker.run(guarded)

    async def _read(
        self, what: str, sql: str, params: Sequence[object] | dict[str, object]
    ) -> list[Any]:
        reader = self._reader.connection
        if reader is not None:
            try:
                return reader.execute(sql, params).fetchall()
            except sqlite3.OperationalError:
                pass  # rare: recovery or a schema change in progress; the worker waits it out
        return await self._call(what, lambda conn: conn.execute(sql, params).fetchall())

    def _scope(self, prefix: str) -> tuple[str, list[object]]:
        bounds = prefix_bounds(prefix)
        if bounds is None:
            return "", []
        return " AND namespace >= ? AND namespace < ?", list(bounds)

    async def put(self, record: Record) -> None:
        """Insert or replace one memory, and patch the vector caches that cover it."""
        caches = self._caches
        table = self.table

        def put(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    self._upsert,
                    (record.namespace, record.key, record.value, record.now, record.now,
                     record.expires_at, record.ttl, record.embedding, record.words),
                )  # fmt: skip
                covering = caches.covering(record.namespace)
                if covering:
                    (row_id,) = conn.execute(
                        f"SELECT id FROM {table} WHERE namespace = ? AND key = ?",
                        (record.namespace, record.key),
                    ).fetchone()
            for cache in covering:
                cache.add(row_id, record.embedding, record.expires_at)

        await self._call("put", put)

    async def get(self, namespace: str, key: str, now: float) -> Row | None:
        """Return one live memory, or None."""
        reader = self._reader.connection
        if reader is not None:
            # The hottest read: inline, without the general path's extra awaits.
            try:
                found = reader.execute(self._get, (namespace, key, now)).fetchone()
            except sqlite3.OperationalError:
                pass
            else:
                return None if found is None else Row._make(found)
        rows = await self._read("get", self._get, (namespace, key, now))
        return Row._make(rows[0]) if rows else None

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete one memory; True if it was stored."""
        caches, table = self._caches, self.table

        def delete(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                found = conn.execute(
                    f"DELETE FROM {table} WHERE namespace = ? AND key = ? RETURNING id",
                    (namespace, key),
                ).fetchall()
            for cache in caches.covering(namespace):
                for (row_id,) in found:
                    cache.remove(row_id)
            return bool(found)

        return await self._call("delete", delete)

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

        Each hint becomes a ``json_extract`` condition, so SQLite skips rows that cannot match
        before they are read, sorted and decoded. ``json_extract`` answers a JSON number,
        true/false (as 1/0) or string with the SQL value it equals, so no match is lost.
        """
        columns = _WITH_VECTORS if vectors else _COLUMNS
        params: dict[str, object] = {"now": now, "limit": -1 if limit is None else limit}
        params["offset"] = offset
        where = "(expires_at IS NULL OR expires_at > :now)"
        for number, hint in enumerate(hints):
            where += f" AND json_extract(value, :path{number}) = :value{number}"
            params[f"path{number}"] = f"$.{'.'.join(hint.path)}"
            params[f"value{number}"] = hint.scalar
        order = "ORDER BY updated_at DESC, id DESC"
        bounds = prefix_bounds(prefix)
        if bounds is None:
            sql = f"SELECT {columns} FROM {self.table} WHERE {where} {order} {_PAGE}"
        else:
            params["low"], params["high"] = bounds
            # The namespace itself, read newest first along its (namespace, updated_at) index
            # and stopping at the page's end; then its sub-namespaces, which are usually empty.
            # Sorting the whole scope instead reads every row of it: 10x more at 100 per user.
            top = "LIMIT :limit + :offset" if limit is not None else ""
            sql = (
                f"SELECT * FROM (SELECT {columns} FROM {self.table} WHERE namespace = :low "
                f"AND {where} {order} {top}) UNION ALL SELECT * FROM (SELECT {columns} FROM "
                f"{self.table} WHERE namespace > :low AND namespace < :high AND {where} {order} "
                f"{top}) {order} {_PAGE}"
            )
        try:
            rows = await self._read("search", sql, params)
        except StorageError:
            if not hints:
                raise
            # json_extract refuses a row that is not JSON; scan plainly, and the store skips it.
            return await self.scan(prefix, now, limit=limit, offset=offset, vectors=vectors)
        return list(map(Row._make, rows))

    async def fulltext(self, prefix: str, terms: Sequence[Term], now: float) -> list[Row] | None:
        """Return the live memories under ``prefix`` the FTS5 index matches, newest first.

        The scope's rows are read along the namespace index and kept if their id is among the
        matches: reading a row per match, in every namespace, made a common word 3x slower than
        a plain scan of one user's 100 memories among 20,000 (measured).
        """
        fts = fts_table(self.table)
        sql = (
            f"SELECT {_COLUMNS} FROM {self.table} WHERE (expires_at IS NULL OR expires_at > ?) "
            # "+id": read the scope along the namespace index, never a row per match.
            f"AND +id IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)"
        )
        params: list[object] = [now, fts5_query(terms)]
        bounds = prefix_bounds(prefix)
        if bounds is not None:
            sql += " AND namespace >= ? AND namespace < ?"
            params += bounds
        rows = await self._read("search", sql + " ORDER BY updated_at DESC, id DESC", params)
        return list(map(Row._make, rows))

    async def fetch(self, ids: Sequence[int], now: float) -> list[Row]:
        """Return the live memories with these row ids."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        sql = f"SELECT {_COLUMNS} FROM {self.table} WHERE id IN ({marks}) AND {self._live}"
        return list(map(Row._make, await self._read("search", sql, [*ids, now])))

    async def nearest(
        self, prefix: str, query: Sequence[float], now: float, k: int, dims: int
    ) -> list[tuple[int, float]]:
        """Rank the scope's vectors on the worker thread, from a cache when the scope is large."""
        caches, use_cache = self._caches, self._numpy
        scope, params = self._scope(prefix)
        sql = f"SELECT id, embedding, expires_at FROM {self.table} WHERE embedding IS NOT NULL"
        live_sql = f"SELECT id, embedding FROM {self.table} WHERE {self._live}{scope}"
        live_sql += " AND embedding IS NOT NULL"
        # Counts every row in scope (an index-only scan) to decide whether to cache it.
        count_sql = f"SELECT count(*) FROM {self.table} WHERE 1 = 1{scope}"
        reader = self._reader.connection
        if use_cache and reader is not None:
            # A small scope (one user's memories) is read and ranked right here, like any
            # other read: numpy scores a few hundred vectors faster than a hop to the worker.
            try:
                (count,) = reader.execute(count_sql, params).fetchone()
                if count < CACHE_MIN_ROWS:
                    return rank(query, reader.execute(live_sql, [now, *params]).fetchall(), k, dims)
            except sqlite3.OperationalError:
                pass  # the worker waits out whatever held the reader back

        def nearest(conn: sqlite3.Connection) -> list[tuple[int, float]]:
            if use_cache:
                caches.check(conn)
                cache = caches.by_prefix.pop(prefix, None)
                if cache is not None and cache.dims == dims and not cache.worn:
                    caches.by_prefix[prefix] = cache  # now the most recently used
                    return cache.nearest(query, now, k)
            if use_cache:
                (count,) = conn.execute(count_sql, params).fetchone()
                if count >= CACHE_MIN_ROWS:
                    cache = VectorCache(prefix, dims)
                    cache.load(conn.execute(sql + scope, params).fetchall())
                    caches.keep(prefix, cache)
                    return cache.nearest(query, now, k)
            return rank(query, conn.execute(live_sql, [now, *params]).fetchall(), k, dims)

        return await self._call("search", nearest)

    async def refresh(self, ids: Sequence[int], now: float) -> None:
        """Restart the TTL of these memories from ``now``."""
        caches, table = self._caches, self.table

        def refresh(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(ids))
            with transaction(conn):
                changed = conn.execute(
                    f"UPDATE {table} SET expires_at = ? + ttl WHERE ttl IS NOT NULL "
                    f"AND id IN ({marks}) RETURNING id, namespace, expires_at",
                    [now, *ids],
                ).fetchall()
            for row_id, namespace, expires_at in changed:
                for cache in caches.covering(namespace):
                    cache.expire(row_id, expires_at)

        if ids:
            await self._call("refresh", refresh)

    async def namespaces(self, prefix: str, now: float) -> list[str]:
        """Return the distinct namespaces holding live memories under ``prefix``."""
        scope, params = self._scope(prefix)
        sql = f"SELECT DISTINCT namespace FROM {self.table} WHERE {self._live}{scope}"
        return [row[0] for row in await self._read("list_namespaces", sql, [now, *params])]

    async def tallies(self, prefix: str, now: float) -> list[Tally]:
        """Count the memories of every namespace under ``prefix``, sorted by namespace."""
        scope, params = self._scope(prefix)
        sql = (
            f"SELECT namespace, sum({self._live}), sum(NOT {self._live}), max(updated_at) "
            f"FROM {self.table} WHERE 1 = 1{scope} GROUP BY namespace ORDER BY namespace"
        )
        rows = await self._read("list", sql, [now, now, *params])
        return [Tally(ns, int(live), int(expired), float(last)) for ns, live, expired, last in rows]

    async def entries(self, prefix: str, key: str | None = None) -> list[Entry]:
        """Every stored memory under ``prefix`` (or the one ``key`` of that namespace)."""
        columns = "namespace, key, value, created_at, updated_at, expires_at, ttl"
        if key is not None:
            sql = f"SELECT {columns} FROM {self.table} WHERE namespace = ? AND key = ?"
            return list(map(Entry._make, await self._read("show", sql, [prefix, key])))
        scope, params = self._scope(prefix)
        sql = f"SELECT {columns} FROM {self.table} WHERE 1 = 1{scope} ORDER BY namespace, key"
        return list(map(Entry._make, await self._read("export", sql, params)))

    async def sweep(self, now: float) -> int:
        """Delete every expired memory; return how many."""
        caches, table = self._caches, self.table

        def sweep(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
                ).rowcount
            if deleted:
                caches.by_prefix.clear()
            return int(deleted)

        return await self._call("sweep", sweep)

    async def aclose(self) -> None:
        """Finish queued calls and close the connections; idempotent."""
        self._reader.close()
        await self._worker.aclose()

    def close(self) -> None:
        """Like :meth:`aclose`, blocking until the worker thread has finished."""
        self._reader.close()
        self._worker.close()

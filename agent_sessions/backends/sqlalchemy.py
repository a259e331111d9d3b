"""SQLAlchemy: any async engine — PostgreSQL (asyncpg), SQLite (aiosqlite), MySQL/MariaDB.

Rows are ordered by their id alone, never by a clock. Every write transaction starts by touching
the session's row in the sessions table, which locks it (a row lock on PostgreSQL and MariaDB,
the write lock on SQLite) before any message id is drawn: writers of one session queue there, so
ids come out in commit order, and two pops can never claim the same item.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import warnings
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from functools import partial
from typing import Any, Self, TypeVar

import asyncpg
from agents.memory.session_settings import SessionSettings
from sqlalchemy import inspect as sql_inspect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable
from sqlalchemy.sql import text as sql_text
from sqlalchemy.util import await_only, greenlet_spawn

from .._lifecycle import AsyncClosing
from ..core import (
    MAX_LIMIT,
    StoreSession,
    check_session_id,
    coerce_settings,
    is_tail,
    run_to_completion,
    tail_fetch,
    tail_window,
)
from ..errors import (
    ProvenanceConflictError,
    SessionClosedError,
    StorageError,
    StorageUnavailableError,
)
from ..schema import PROVENANCE_COLUMNS, TableNames
from ..serialization import logger
from ..store import (
    ArchiveBatch,
    ArchivedRow,
    Popped,
    RowTag,
    StoredRecord,
    Taker,
    always,
    tag_columns,
    tag_time,
    tagged_values,
    unstored,
)
from ._restore import ClearLog, Provenance, provenance_of, with_mark, with_provenance
from ._sqlalchemy_cache import engine_state
from ._sqlalchemy_engine import (
    SESSION_POOL,
    connection_trouble,
    engine_from_url,
    is_connection_failure,
    is_missing_table,
    shared_connection_lock,
    use_wal,
)
from ._sqlalchemy_schema import create_schema

__all__ = ["SQLAlchemySession", "SQLAlchemyStore"]

T = TypeVar("T")


class SQLAlchemyStore(AsyncClosing):
    """The :class:`~agent_sessions.store.Store` of one database behind an ``AsyncEngine``.

    Args:
        engine: An async engine (``postgresql+asyncpg``, ``sqlite+aiosqlite``,
            ``mysql+aiomysql``, ...).
        tables: The table names to use.
        create_tables: Create (or upgrade) the tables on first use. Safe when many processes
            do it at once.
        owns_engine: Dispose of the engine on close (True for engines made by ``from_url``).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        tables: TableNames | None = None,
        create_tables: bool = False,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        # Tables, statements and whether the schema was checked are the engine's, shared by
        # every store on it: a new session object costs no DDL round trip and no compilation.
        self._state = state = engine_state(engine)
        names = tables or TableNames()
        self.tables, self._sql = state.statements(names)
        self._names = names
        self._clears = ClearLog()
        self._create_tables = create_tables
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._where = state.where
        self._finalizer: weakref.finalize[..., object] | None = None
        self.owns_engine = owns_engine
        # On PostgreSQL a lone statement in autocommit mode saves the BEGIN and the ROLLBACK or
        # COMMIT round trips; aiosqlite and aiomysql are slower in that mode, so they keep theirs.
        dialect = engine.dialect.name
        self._autocommit = state.autocommit(engine) if dialect == "postgresql" else engine
        if dialect == "sqlite":
            use_wal(engine)

    async def _ensure_schema(self) -> None:
        await self._check_loop()
        if not self._create_tables or self._schema_key in self._state.ready:
            return
        # One check per engine and pair of tables: the first caller runs it, the others of
        # this loop wait for it. Creators on different loops or engines are safe anyway
        # (create_schema takes a database-wide lock).
        async with self._state.schema_lock(self._names):
            if self._schema_key not in self._state.ready:
                # Run to its end even if the caller is cancelled: a DDL transaction abandoned
                # midway would leave a connection (and on SQLite the write lock) behind.
                _, cancelled = await run_to_completion(
                    self._guard("create tables", self._create_schema)
                )
                self._state.ready.add(self._schema_key)
                self._state.provenance[self._names] = True  # the newest schema has them
                if cancelled:
                    raise asyncio.CancelledError

    @property
    def _schema_key(self) -> Hashable:
        """What the engine's ready set notes this store's tables under, once checked."""
        return self._names

    async def _create_schema(self) -> None:
        """Create or upgrade this store's tables (under ``create_schema``'s lock)."""
        await create_schema(self.engine, self.tables)

    async def _has_provenance(self) -> bool:
        """Whether the messages table has the provenance columns (schema v4); looked up once.

        Tables this package created or upgraded have them. Tables the SDK made, used with
        ``create_tables=False``, may not: then rows are stored and read without provenance
        (logged once) rather than failing, as the schema is not ours to change.
        """
        known = self._state.provenance.get(self._names)
        if known is None:
            table = self._names.messages

            def columns(conn: Any) -> set[str] | None:
                inspector = sql_inspect(conn)
                if not inspector.has_table(table):
                    return None
                return {column["name"] for column in inspector.get_columns(table)}

            async def look() -> set[str] | None:
                async with self.engine.connect() as conn:
                    return await conn.run_sync(columns)

            found = await self._call("open", look)
            if found is None:  # no table: the call itself will say so (and how to make it)
                return True
            known = self._state.provenance[self._names] = found >= PROVENANCE_COLUMNS
            if not known:
                logger.info(
                    "%s: table %s has no provenance columns (made by the SDK?): rows are stored "
                    "without agent and run; create_tables=True or `agent-sessions migrate` adds "
                    "them",
                    self._where,
                    table,
                )
        return known

    async def _call(self, operation: str, run: Callable[[], Awaitable[T]]) -> T:
        """Check the schema if needed, then run one database call through :meth:`_guard`.

        If the call finds a table missing although the schema was checked (someone dropped the
        tables since), the check runs again and, with ``create_tables``, the call once more.
        A call that failed on a missing table wrote nothing, so it is safe to repeat.
        """
        await self._ensure_schema()
        try:
            return await self._guard(operation, run)
        except _NoTablesError:
            if not self._create_tables:
                raise
        await self._ensure_schema()
        return await self._guard(operation, run)

    async def _check_loop(self) -> None:
        """Follow the session to a new event loop, or refuse at once; never hang.

        An engine's pool and connections serve one loop at a time: used from two running loops
        at once (two threads) SQLAlchemy's pool hangs, so while the previous loop still runs
        the call is refused. When it has stopped (``asyncio.run`` called twice), the session
        moves: aiosqlite's connections serve any loop; a network driver's belong to the loop
        that opened them, so they are dropped unclosed (their loop cannot close them; Python
        may warn about their sockets) and new ones are opened on this loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        previous, self._loop = self._loop, loop
        if previous is None:
            return
        if previous.is_running():
            self._loop = previous
            raise StorageError(
                f"SQLAlchemySession on {self._where} is in use on another running event loop; "
                "an engine's connections belong to one loop: give each loop its own engine"
            )
        if self.engine.dialect.name != "sqlite":
            await self.engine.dispose(close=False)

    def _fast_path(self) -> bool:
        """Whether driver SQL may bypass SQLAlchemy: not when anyone listens to statements."""
        dispatch = self.engine.sync_engine.dispatch
        return not (dispatch.before_cursor_execute or dispatch.after_cursor_execute)

    async def _guard(self, operation: str, run: Callable[[], Awaitable[T]]) -> T:
        """Run one database call: refuse after close, take turns if needed, translate errors."""
        if self._closed:
            raise SessionClosedError(f"SQLAlchemyStore({self._where}) is closed")
        serial = shared_connection_lock(self.engine)
        try:
            if serial is None:
                return await run()
            async with serial:
                return await run()
        except DBAPIError as exc:
            if exc.connection_invalidated or is_connection_failure(exc):
                raise StorageUnavailableError(
                    f"{operation} failed: cannot reach the database at {self._where}: {exc.orig!r}"
                ) from exc
            self._raise_if_no_tables(operation, exc)
            raise StorageError(f"{operation} on {self._where} failed: {exc.orig!r}") from exc
        except connection_trouble(also=(SQLAlchemyError,)) as exc:
            raise StorageUnavailableError(
                f"{operation} failed: cannot use the database at {self._where}: {exc!r}"
            ) from exc
        except (asyncpg.PostgresError, sqlite3.Error) as exc:
            self._raise_if_no_tables(operation, exc)
            raise StorageError(f"{operation} on {self._where} failed: {exc!r}") from exc

    def _raise_if_no_tables(self, operation: str, exc: BaseException) -> None:
        if is_missing_table(exc):
            self._state.ready.discard(self._schema_key)  # dropped since they were checked
            self._state.provenance.pop(self._names, None)
            names = self.tables.names
            raise _NoTablesError(
                f"{operation} on {self._where} failed: no tables ({names.sessions}, "
                f"{names.messages}); pass create_tables=True or run agent-sessions migrate"
            ) from exc

    async def _read(self, operation: str, statement: Executable, params: dict[str, Any]) -> Any:
        async def read() -> Any:
            # Autocommit: a lone SELECT needs no BEGIN and ROLLBACK round trips.
            async with self._autocommit.connect() as conn:
                return (await conn.execute(statement, params)).all()

        try:
            return await self._call(operation, read)
        except StorageUnavailableError:
            # A pooled connection that died with a server restart is replaced: try once more.
            return await self._call(operation, read)

    async def _write(self, operation: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def write() -> T:
            async with self.engine.begin() as conn:
                return await work(conn)

        return await self._call(operation, write)

    async def _on_driver(self, operation: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """Fast path: one driver call (asyncpg, aiosqlite) on a pooled connection.

        This skips SQLAlchemy's execution layers; aiosqlite also does the whole call in one hop
        to its thread instead of several. The connection is checked out of the engine's pool
        as a bare pooled connection, used and checked in again, all in one greenlet (one hop
        instead of the three an ``AsyncConnection`` takes). The driver runs outside any
        transaction: on PostgreSQL a lone statement is its own transaction, and a SQLite call
        opens its own. A connection that failed is invalidated.
        """
        pool_connect = self.engine.sync_engine.raw_connection
        dialect = self.engine.dialect

        def run() -> T:
            try:
                pooled = pool_connect()
            except dialect.loaded_dbapi.Error as exc:
                # The pool does not wrap a failed connect as Connection does: wrap it the same
                # way, so it is translated like any other (StorageUnavailableError).
                raise DBAPIError.instance(
                    None,
                    None,
                    exc,
                    dialect.loaded_dbapi.Error,
                    connection_invalidated=dialect.is_disconnect(exc, None, None),
                    dialect=dialect,
                ) from exc
            try:
                result: T = await_only(call(pooled.driver_connection))
            except connection_trouble():
                pooled.invalidate()  # also checks it in
                raise
            except BaseException:
                pooled.close()
                raise
            pooled.close()
            return result

        return await self._call(operation, lambda: greenlet_spawn(run))

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of a session (all if None), oldest first."""
        if self._sql.pg is not None and self._fast_path():
            pg = self._sql.pg
            if limit is None:
                rows = await self._on_driver("read", lambda c: c.fetch(pg.read_all, session_id))
                return [row[0] for row in rows]
            rows = await self._on_driver(
                "read", lambda c: c.fetch(pg.read_latest, session_id, limit)
            )
            return [row[0] for row in reversed(rows)]
        if self._sql.sqlite is not None and self._fast_path():
            lite = self._sql.sqlite
            if limit is None:
                rows = await self._on_driver(
                    "read", lambda c: c.execute_fetchall(lite.read_all, (session_id,))
                )
                return [row[0] for row in rows]
            rows = await self._on_driver(
                "read", lambda c: c.execute_fetchall(lite.read_latest, (session_id, limit))
            )
            return [row[0] for row in reversed(rows)]
        if limit is None:
            rows = await self._read("read", self._sql.read_all, {"sid": session_id})
            return [row[0] for row in rows]
        rows = await self._read("read", self._sql.read_latest, {"sid": session_id, "n": limit})
        return [row[0] for row in reversed(rows)]

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows after the session's newest row, in one transaction."""
        if self._sql.pg is not None and self._fast_path():
            # One statement is one transaction: a single round trip.
            sql, texts_list = self._sql.pg.append, list(texts)
            await self._on_driver("append", lambda c: c.execute(sql, session_id, texts_list))
            return

        if self._sql.sqlite is not None and self._fast_path():
            lite, rows = self._sql.sqlite, [(session_id, text) for text in texts]
            await self._on_driver(
                "append", partial(_append_sqlite, lite.touch, lite.insert, session_id, rows)
            )
            return

        async def append(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.touch_session, {"sid": session_id})
            await conn.execute(self._sql.insert, [{"sid": session_id, "text": t} for t in texts])

        await self._write("append", append)

    @functools.cached_property
    def _tagged_sql(self) -> _TaggedStatements:
        return _TaggedStatements(self.tables.names.messages, self.engine.dialect.name)

    async def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> int:
        """Append rows with their provenance in one transaction, skipping a run's stored ones.

        See :meth:`agent_sessions.store.ProvenanceStore.append_tagged`. The check and the
        insert run under the lock of the session's row, so concurrent retries from any engine
        or process store one copy (the unique run index backs it). A fresh batch has nothing to
        check: it is written as a plain append is (one statement on PostgreSQL).
        """
        rows = list(zip(texts, tags, strict=True))
        if not rows:
            return 0
        if not await self._has_provenance():
            await self.append(session_id, texts)
            return len(rows)
        if fresh:
            await self._append_fresh(session_id, rows)
            return len(rows)
        run_id = rows[0][1].run_id
        positions = [tag.position for _, tag in rows]
        look, insert = self._tagged_sql.look, self._tagged_sql.insert

        async def append(conn: AsyncConnection) -> int:
            # The upsert locks the session's row, creating it if need be, as a plain append's
            # does: concurrent retries queue on it. (Locking a missing row with an UPDATE first
            # would deadlock on InnoDB: both hold a gap lock the other's insert waits on.)
            await conn.execute(self._sql.touch_session, {"sid": session_id})
            found = await conn.execute(
                look,
                {"sid": session_id, "run": run_id, "low": min(positions), "high": max(positions)},
            )
            stored = {int(position): str(digest) for position, digest in found.all()}
            new, refused = unstored(rows, stored)
            if refused is not None:
                raise ProvenanceConflictError(session_id, run_id, refused.position)
            if new:
                await conn.execute(insert, self._tagged_params(session_id, new))
            return len(new)

        return await self._write("append", append)

    async def _append_fresh(self, session_id: str, rows: list[tuple[str, RowTag]]) -> None:
        """Append tagged rows none of whose positions its run can have stored."""
        if self._sql.pg is not None and self._fast_path():
            sql = self._sql.pg.append_tagged
            run_id = rows[0][1].run_id
            texts = [text for text, _ in rows]
            columns = tag_columns([tag for _, tag in rows])
            await self._on_driver(
                "append", lambda c: c.execute(sql, session_id, texts, run_id, *columns)
            )
            return
        if self._sql.sqlite is not None and self._fast_path():
            lite = self._sql.sqlite
            values = tagged_values(session_id, rows)
            write = partial(_append_sqlite, lite.touch, lite.insert_tagged, session_id, values)
            await self._on_driver("append", write)
            return
        params = self._tagged_params(session_id, rows)

        async def append(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.touch_session, {"sid": session_id})
            await conn.execute(self._tagged_sql.insert, params)

        await self._write("append", append)

    def _tagged_params(
        self, session_id: str, rows: Sequence[tuple[str, RowTag]]
    ) -> list[dict[str, Any]]:
        """The parameters of the tagged insert, with the time now in UTC."""
        now = tag_time(as_text=self.engine.dialect.name == "sqlite")
        keys = ("sid", "text", "agent", "run", "position", "digest")
        values = tagged_values(session_id, rows)
        return [dict(zip(keys, row, strict=True), at=now) for row in values]

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the newest ``limit`` rows with their provenance (all if None), oldest first."""
        if not await self._has_provenance():
            return [
                StoredRecord(text, None, None, None, None)
                for text in await self.read(session_id, limit)
            ]
        params: dict[str, Any] = {"sid": session_id}
        statement = self._tagged_sql.records_all
        if limit is not None:
            statement = self._tagged_sql.records_latest
            params["n"] = min(limit, MAX_LIMIT)
        rows = list(await self._read("read", statement, params))
        if limit is not None:
            rows.reverse()
        return [StoredRecord.from_columns(*row) for row in rows]

    async def _lock(self, conn: AsyncConnection, session_id: str) -> None:
        """Queue behind the session's other writers, whether or not its row exists yet."""
        if self._sql.lock_key is not None:
            await conn.execute(self._sql.lock_key, {"sid": session_id})
        await conn.execute(self._sql.lock_session, {"sid": session_id})

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove and return the newest row ``decode`` accepts; others stay stored."""
        taken = await self.pop_through(session_id, decode, always)
        return taken[0] if taken else None

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove the newest rows down to the first item ``stop`` accepts, in one transaction."""
        tagged_sql = self._tagged_sql if await self._has_provenance() else None

        async def pop_through(conn: AsyncConnection) -> list[Popped[T]]:
            await self._lock(conn, session_id)
            record = (await conn.execute(self._sql.record, {"sid": session_id})).first()
            mark = self._clears.mark(session_id, None if record is None else record[0])
            taker = Taker(decode, stop)
            tagged: dict[int, Provenance] = {}
            newest, older = (
                (self._sql.newest, self._sql.older)
                if tagged_sql is None
                else (tagged_sql.pop_newest, tagged_sql.pop_older)
            )
            statement, batch = newest, 1
            params: dict[str, object] = {"sid": session_id, "n": batch}
            while True:
                rows = (await conn.execute(statement, params)).all()
                if tagged_sql is not None:
                    tagged.update((row[0], tuple(row[2:])) for row in rows if row[3] is not None)
                if any(taker.feed(row[0], row[1]) for row in rows) or len(rows) < batch:
                    break
                statement, batch = older, min(batch * 4, 256)
                params = {"sid": session_id, "before": rows[-1][0], "n": batch}
            taken = taker.result()
            if taken:
                await conn.execute(self._sql.delete_row, [{"id": p.row_id} for p in taken])
            return with_provenance(with_mark(taken, mark), tagged)

        return await self._write("pop", pop_through)

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Put popped rows back under their original ids, in one transaction.

        Rows a clear removed meanwhile stay removed: a restore never brings back a session that
        was cleared after the pop, by this store or by anyone (its session record is gone or new).
        """
        if not popped:
            return

        async def restore(conn: AsyncConnection) -> None:
            await self._lock(conn, session_id)
            record = (await conn.execute(self._sql.record, {"sid": session_id})).first()
            current = None if record is None else record[0]
            back = [p for p in popped if self._clears.may_restore(p, current)]
            if not back:
                return
            await conn.execute(self._sql.touch_session, {"sid": session_id})
            plain, tagged = [], []
            for p in back:
                row: dict[str, object] = {"id": p.row_id, "sid": session_id, "text": p.text}
                tags = provenance_of(p)
                if tags is None:
                    plain.append(row)
                else:
                    keys = ("agent", "run", "position", "digest", "at")
                    tagged.append(row | dict(zip(keys, tags, strict=True)))
            if plain:
                await conn.execute(self._sql.insert_at, plain)
            if tagged:
                await conn.execute(self._tagged_sql.insert_at, tagged)

        await self._write("restore", restore)

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the newest ``limit`` rows as ``(row_id, text)``, oldest first.

        Returns:
            The rows, and whether they are all of the session's rows.
        """
        rows = await self._read(
            "read", self._sql.newest, {"sid": session_id, "n": tail_fetch(limit)}
        )
        return tail_window(rows, limit)

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the newest rows for ``texts`` if they are exactly ``expected``, in one transaction.

        The check and the swap run under the session's lock (the one pops and clears take), so
        no writer of the session can slip in between.

        Returns:
            Whether the rows were swapped (False if the tail changed meanwhile).
        """
        return await self._swap_tail("replace tail", session_id, expected, texts, None)

    async def _swap_tail(
        self,
        operation: str,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        after: Callable[[AsyncConnection], Awaitable[None]] | None,
    ) -> bool:
        """``replace_tail``, with ``after`` run in the same transaction once rows were swapped."""
        want = [(int(row_id), text) for row_id, text in expected]
        if not want:
            return False

        async def replace_tail(conn: AsyncConnection) -> bool:
            await self._lock(conn, session_id)
            params = {"sid": session_id, "n": len(want)}
            newest = (await conn.execute(self._sql.newest, params)).all()
            if not is_tail(newest, want):
                return False
            await conn.execute(self._sql.delete_row, [{"id": row_id} for row_id, _ in want])
            await conn.execute(self._sql.touch_session, {"sid": session_id})
            if texts:
                rows = [{"sid": session_id, "text": text} for text in texts]
                await conn.execute(self._sql.insert, rows)
            if after is not None:
                await after(conn)
            return True

        return await self._write(operation, replace_tail)

    async def _add_batch(self, conn: AsyncConnection, session_id: str, batch: ArchiveBatch) -> None:
        sql = self._sql.state
        number = (await conn.execute(sql.next_batch, {"sid": session_id})).scalar_one()
        rows = [
            {"sid": session_id, "abatch": number, "akind": batch.kind, "arole": role, "atext": t}
            for role, texts in (("item", batch.items), ("summary", batch.summary))
            for t in texts
        ]
        if rows:
            await conn.execute(sql.archive, rows)

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows, oldest batch first."""
        rows = await self._read("read archive", self._sql.state.archived, {"sid": session_id})
        return [
            ArchivedRow(int(b), str(k), str(r), str(t), str(at)[:19]) for b, k, r, t, at in rows
        ]

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """Swap the newest rows (see ``replace_tail``) and archive ``batch``, in one transaction."""

        async def after(conn: AsyncConnection) -> None:
            await self._add_batch(conn, session_id, batch)

        return await self._swap_tail("compact", session_id, expected, texts, after)

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """Swap the newest rows (see ``replace_tail``) and drop archive ``batch``, at once."""

        async def after(conn: AsyncConnection) -> None:
            await conn.execute(self._sql.state.delete_batch, {"sid": session_id, "abatch": batch})

        return await self._swap_tail("uncompact", session_id, expected, texts, after)

    async def clear(self, session_id: str) -> None:
        """Delete a session's rows and its session record in one transaction."""

        async def clear(conn: AsyncConnection) -> None:
            await self._lock(conn, session_id)
            await conn.execute(self._sql.delete_messages, {"sid": session_id})
            await conn.execute(self._sql.delete_session, {"sid": session_id})
            await conn.execute(self._sql.state.delete_session, {"sid": session_id})
            await conn.execute(self._sql.state.delete_archive, {"sid": session_id})

        await self._write("clear", clear)
        self._clears.note(session_id)

    async def read_state(self, session_id: str, name: str) -> str | None:
        """Return the text stored under ``name`` for the session, or None."""
        rows = await self._read(
            "read state", self._sql.state.read, {"sid": session_id, "sname": name}
        )
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    async def write_state(self, session_id: str, name: str, text: str | None) -> None:
        """Store ``text`` under ``name`` (None deletes it), in one transaction."""
        sql, params = self._sql.state, {"sid": session_id, "sname": name, "sval": text}

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(sql.delete if text is None else sql.upsert, params)

        await self._write("write state", write)

    async def update_state(
        self, session_id: str, name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read, change and write one value in one transaction that holds its row locked."""
        sql, key = self._sql.state, {"sid": session_id, "sname": name}

        async def update(conn: AsyncConnection) -> str | None:
            await conn.execute(sql.claim, {**key, "sval": None})
            row = (await conn.execute(sql.read, key)).first()
            new = change(None if row is None else row[0])
            if new is None:
                await conn.execute(sql.delete, key)
            else:
                await conn.execute(sql.set, {**key, "sval": new})
            return new

        return await self._write("update state", update)

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Return every row of a session as ``(row_id, text)``, oldest first."""
        rows = await self._read("rows", self._sql.rows, {"sid": session_id})
        return [(row_id, text) for row_id, text in rows]

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text, or delete the rows whose new text is None, in one transaction.

        Returns:
            How many of the session's rows were changed or deleted.
        """
        return await self._rewrite("rewrite", session_id, changes, None)

    async def rewrite_archiving(
        self, session_id: str, changes: Mapping[int, str | None], batch: ArchiveBatch
    ) -> int:
        """``rewrite``, archiving ``batch`` in the same transaction."""
        return await self._rewrite("prune", session_id, changes, batch)

    async def _rewrite(
        self,
        operation: str,
        session_id: str,
        changes: Mapping[int, str | None],
        batch: ArchiveBatch | None,
    ) -> int:
        async def rewrite(conn: AsyncConnection) -> int:
            await self._lock(conn, session_id)
            changed = 0
            for row_id, text in changes.items():
                params = {"sid": session_id, "rid": row_id, "text": text}
                statement = self._sql.delete_session_row if text is None else self._sql.update_row
                changed += (await conn.execute(statement, params)).rowcount
            if batch is not None:
                await self._add_batch(conn, session_id, batch)
            return changed

        return await self._write(operation, rewrite)

    @property
    def owns_engine(self) -> bool:
        """Whether closing the store disposes of the engine (and leaking it warns)."""
        return self._finalizer is not None

    @owns_engine.setter
    def owns_engine(self, owns: bool) -> None:
        if owns and self._finalizer is None:
            label = f"SQLAlchemy session store on {self._where}"
            self._finalizer = weakref.finalize(self, _warn_unclosed, label)
            self._finalizer.atexit = False
        elif not owns and self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    async def aclose(self) -> None:
        """Refuse further calls, and dispose of the engine if this store created it."""
        if self._closed:
            return
        self._closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
            await self.engine.dispose()


class _NoTablesError(StorageError):
    """A call found the store's tables missing (never created, or dropped since)."""


def _warn_unclosed(label: str) -> None:
    warnings.warn(
        f"{label} was never closed, so its connection pool stays open; call close() or use "
        "'async with'",
        ResourceWarning,
        stacklevel=1,
    )


PING_TIMEOUT = 5.0
"""Seconds ``ping()`` waits for its round trip by default."""


class SQLAlchemySession(StoreSession):
    """A drop-in for ``agents.extensions.memory.SQLAlchemySession`` over any async engine.

    Args:
        session_id: The conversation this object reads and writes.
        engine: An async engine. It is never disposed of by this session.
        create_tables: Create (or upgrade) the tables on first use; safe from many processes.
        sessions_table: Table of session records.
        messages_table: Table of items.
        session_settings: Defaults for reads, such as ``SessionSettings(limit=50)``.
        ensure_ascii: Accepted for compatibility; rows are always stored as ASCII JSON, which
            every database and both classes read.
        strict: Raise :class:`~agent_sessions.errors.CorruptItemError` on an undecodable row
            instead of skipping it with a logged warning.

    Sessions on one engine share its connection pool, the built statements and the schema
    check (``create_tables`` runs it once per engine and pair of tables, and again if a call
    finds the tables dropped). An engine you pass in keeps its own pool: for many sessions
    used at once, make it with ``pool_size`` at least the number of concurrent calls and
    ``max_overflow=0`` (e.g. ``create_async_engine(url, pool_size=20, max_overflow=0)``);
    with SQLAlchemy's default (5 kept, 10 more opened on demand) every call beyond the fifth
    opens and closes a connection of its own.

    Example:
        >>> async def chat() -> None:
        ...     url = "postgresql+asyncpg://app@db/agents"
        ...     async with SQLAlchemySession.from_url("user-42", url=url) as session:
        ...         await session.add_items([{"role": "user", "content": "Hi"}])
    """

    _store_type: type[SQLAlchemyStore] = SQLAlchemyStore
    """The store each object makes on its engine (a subclass for advanced sessions)."""

    def __init__(
        self,
        session_id: str,
        *,
        engine: AsyncEngine,
        create_tables: bool = False,
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: SessionSettings | dict[str, Any] | None = None,
        ensure_ascii: bool = True,
        strict: bool = False,
    ) -> None:
        check_session_id(session_id)
        # Checked before the store exists, so a bad setting leaves no engine work behind.
        session_settings = coerce_settings(session_settings)
        del ensure_ascii  # rows are always ASCII JSON (see the docstring)
        self._sqlalchemy = self._store_type(
            engine, tables=TableNames(sessions_table, messages_table), create_tables=create_tables
        )
        super().__init__(
            session_id,
            self._sqlalchemy,
            owns_store=True,
            session_settings=session_settings,
            strict=strict,
        )

    @classmethod
    def from_url(
        cls,
        session_id: str,
        *,
        url: str,
        engine_kwargs: dict[str, Any] | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Open a session on a database URL; closing the session disposes of the engine.

        Args:
            session_id: The conversation this object reads and writes.
            url: An async SQLAlchemy URL, e.g. ``postgresql+asyncpg://user@host/db``.
            engine_kwargs: Passed to ``create_async_engine``. Connections the server closed
                (after a restart) are replaced when they are next checked out. On a database
                server the pool keeps up to 15 connections open (``pool_size=15,
                max_overflow=0``): as many as SQLAlchemy's default allows at once, but none is
                closed and reopened while calls run concurrently. Passing ``poolclass``,
                ``pool_size`` or ``max_overflow`` replaces that sizing.
            session_settings: Defaults for reads.
            **kwargs: Passed to the constructor (``create_tables``, table names, ``strict``).

        Raises:
            ValueError: the URL cannot be parsed or names no installed async driver.
        """
        engine = engine_from_url(url, engine_kwargs, pool=SESSION_POOL)
        session = cls(session_id, engine=engine, session_settings=session_settings, **kwargs)
        session._sqlalchemy.owns_engine = True
        return session

    @property
    def engine(self) -> AsyncEngine:
        """The engine this session runs on."""
        return self._sqlalchemy.engine

    async def ping(self, *, within: float = PING_TIMEOUT) -> bool:
        """Check that the database answers: one ``SELECT 1`` round trip.

        Args:
            within: Seconds to wait for the connection and the reply.

        Returns:
            True if the reply came within ``within`` seconds; False if the server could not be
            reached, refused the connection or did not answer in time. Never raises for an
            unreachable server.

        Raises:
            SessionClosedError: the session is closed (a ``RuntimeError``).
        """
        self._check_open("ping")

        async def round_trip() -> None:
            async with self._sqlalchemy.engine.connect() as conn:
                await conn.execute(sql_text("SELECT 1"))

        try:
            await asyncio.wait_for(round_trip(), within)
        except (SQLAlchemyError, OSError, TimeoutError, asyncpg.PostgresError):
            return False
        return True


async def _append_sqlite(
    touch: str, insert: str, session_id: str, rows: list[tuple[Any, ...]], driver: Any
) -> None:
    """Touch the session and insert rows in one aiosqlite transaction (the driver fast path).

    The write lock first, so writers queue on the busy timeout and never deadlock.
    """
    await driver.execute("BEGIN IMMEDIATE")
    try:
        await driver.execute(touch, (session_id,))
        await driver.executemany(insert, rows)
        await driver.commit()
    except BaseException:
        await driver.rollback()
        raise


class _TaggedStatements:
    """The provenance statements of one messages table, made once per store."""

    def __init__(self, m: str, dialect: str) -> None:
        # A pop reads the rows' provenance too, so that a restore puts it back; a restored row
        # its run stored again meanwhile (a retry) stays out, so the history keeps one copy.
        pop = (
            "SELECT id, message_data, agent_name, run_id, run_position, item_digest, created_at "
            f"FROM {m} WHERE session_id = :sid"
        )
        order = " ORDER BY id DESC LIMIT :n"
        self.pop_newest = sql_text(pop + order)
        self.pop_older = sql_text(pop + " AND id < :before" + order)
        verb, tolerant = "INSERT", " ON CONFLICT DO NOTHING"
        if dialect in ("mysql", "mariadb"):
            verb, tolerant = "INSERT IGNORE", ""
        self.insert_at = sql_text(
            f"{verb} INTO {m} (id, session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (:id, :sid, :text, :agent, :run, :position, :digest, "
            f":at){tolerant}"
        )
        self.look = sql_text(
            f"SELECT run_position, item_digest FROM {m} WHERE session_id = :sid "
            "AND run_id = :run AND run_position BETWEEN :low AND :high"
        )
        self.insert = sql_text(
            f"INSERT INTO {m} (session_id, message_data, agent_name, run_id, run_position, "
            "item_digest, created_at) VALUES (:sid, :text, :agent, :run, :position, :digest, :at)"
        )
        columns = "message_data, agent_name, run_id, run_position, created_at"
        self.records_all = sql_text(
            f"SELECT {columns} FROM {m} WHERE session_id = :sid ORDER BY id"
        )
        self.records_latest = sql_text(
            f"SELECT {columns} FROM {m} WHERE session_id = :sid ORDER BY id DESC LIMIT :n"
        )

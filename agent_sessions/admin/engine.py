"""What the admin layer runs its statements on: SQLAlchemy's async engine, or a thread engine.

The queries are SQLAlchemy Core, written once; two engines run them behind one small interface
(:class:`Engine`, :class:`Connection`, :class:`Rows`):

- a database server (PostgreSQL, MariaDB/MySQL), an in-memory SQLite URL and a SQLite file the
  admin layer creates (import and migrate destinations, whose schema is made by the SQLAlchemy
  backend's ``create_schema``) use SQLAlchemy's ``AsyncEngine``, which satisfies the interface
  as it is;
- a SQLite file that exists (``ls``, ``show``, ``search``, ``stats``, ``export``, ``purge``, a
  migration's source) uses :class:`ThreadEngine`: a sync engine on stdlib ``sqlite3``
  (``sqlite+pysqlite``) whose every connection lives on its own worker thread, as aiosqlite's
  do. A command on a file therefore never imports ``sqlalchemy.ext.asyncio`` (which imports
  ``sqlalchemy.orm``), greenlet's bridge or aiosqlite: about a third of its start-up.

The event loop only waits: each statement runs on its connection's thread, and its rows are
fetched there before the loop resumes, so a slow query on a large file blocks no application
that uses :class:`~agent_sessions.admin.SessionDatabase`. One thread per connection (not one
per engine) keeps two of the caller's transactions from waiting on each other's SQLite lock on
one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.exc import MultipleResultsFound, NoResultFound

from .._worker import ConnectionWorker

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, CursorResult, Dialect
    from sqlalchemy.engine import Connection as SyncConnection
    from sqlalchemy.engine import Engine as SyncEngine
    from sqlalchemy.sql.base import Executable

__all__ = ["BufferedRows", "Connection", "Engine", "Rows", "ThreadConnection", "ThreadEngine"]

T = TypeVar("T")


class Rows(Protocol):
    """What the admin layer reads of a statement's result (all of it is already fetched)."""

    @property
    def rowcount(self) -> int:
        """Rows an UPDATE or DELETE matched."""
        ...

    def __iter__(self) -> Iterator[Any]: ...

    def scalar(self) -> Any:
        """The first column of the first row; None if there is none."""
        ...

    def scalar_one(self) -> Any:
        """The first column of the only row."""
        ...

    def one(self) -> Any:
        """The only row."""
        ...

    def first(self) -> Any:
        """The first row; None if there is none."""
        ...


class Connection(Protocol):
    """A connection as the admin layer uses it: ``AsyncConnection`` or :class:`ThreadConnection`."""

    async def execute(self, statement: Executable, parameters: Any = None, /) -> Rows:
        """Run a Core statement."""
        ...

    async def exec_driver_sql(self, statement: str, /) -> Rows:
        """Run SQL text as the driver takes it."""
        ...

    async def run_sync(self, fn: Callable[[SyncConnection], T], /) -> T:
        """Run ``fn`` with the underlying sync connection (for ``inspect``)."""
        ...

    async def start(self) -> Connection:
        """Connect."""
        ...

    async def rollback(self) -> None:
        """End the transaction, if one is open, discarding its writes."""
        ...

    async def close(self) -> None:
        """Give the connection back."""
        ...

    async def __aenter__(self) -> Connection: ...

    async def __aexit__(self, kind: Any, error: Any, trace: Any, /) -> None: ...


class Engine(Protocol):
    """An engine as the admin layer uses it: ``AsyncEngine`` or :class:`ThreadEngine`."""

    @property
    def url(self) -> URL:
        """The database URL."""
        ...

    @property
    def dialect(self) -> Dialect:
        """SQLAlchemy's dialect."""
        ...

    @property
    def sync_engine(self) -> SyncEngine:
        """The sync engine underneath (events are listened for on it)."""
        ...

    def connect(self) -> Connection:
        """A connection, opened by ``start()`` or ``async with``."""
        ...

    def begin(self) -> AbstractAsyncContextManager[Connection]:
        """A connection in a transaction, committed on success, rolled back on error."""
        ...

    async def dispose(self) -> None:
        """Close the pooled connections."""
        ...


class BufferedRows:
    """A result whose rows were fetched on the connection's thread.

    Args:
        result: The result, read to the end here (call this on the connection's thread).
    """

    __slots__ = ("_rows", "rowcount")

    def __init__(self, result: CursorResult[Any]) -> None:
        self.rowcount: int = result.rowcount
        self._rows: list[Any] = list(result) if result.returns_rows else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def scalar(self) -> Any:
        """The first column of the first row; None if there is none."""
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        """The first column of the only row.

        Raises:
            NoResultFound: there is no row.
            MultipleResultsFound: there is more than one.
        """
        return self.one()[0]

    def one(self) -> Any:
        """The only row.

        Raises:
            NoResultFound: there is no row.
            MultipleResultsFound: there is more than one.
        """
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def first(self) -> Any:
        """The first row; None if there is none."""
        return self._rows[0] if self._rows else None


def _opened(conn: SyncConnection) -> None:
    """A job that does nothing: it returns once the connection is open (or raises why not)."""


def _close(conn: SyncConnection) -> None:
    conn.close()  # back to the pool, rolled back if a transaction was left open


class ThreadConnection:
    """One pooled connection of a sync engine, on a worker thread of its own.

    Every call is a job on that thread; the loop awaits its outcome. The connection is checked
    out of the pool when the thread starts and checked back in when it is closed.

    Args:
        engine: The sync engine whose pool the connection comes from.
    """

    def __init__(self, engine: SyncEngine) -> None:
        self._worker: ConnectionWorker[SyncConnection] = ConnectionWorker(
            engine.connect, _close, label=f"agent-sessions admin connection to {engine.url}"
        )

    async def start(self) -> ThreadConnection:
        """Check a connection out of the pool, on the thread.

        Raises:
            sqlalchemy.exc.DBAPIError: the database cannot be opened (the thread has ended).
        """
        try:
            await self._worker.run(_opened)
        except BaseException:
            await self._worker.aclose()
            raise
        return self

    async def close(self) -> None:
        """Give the connection back to the pool and end the thread; idempotent."""
        await self._worker.aclose()

    async def __aenter__(self) -> ThreadConnection:
        return await self.start()

    async def __aexit__(self, kind: Any, error: Any, trace: Any, /) -> None:
        await self.close()

    async def execute(self, statement: Executable, parameters: Any = None, /) -> BufferedRows:
        """Run a Core statement (``parameters`` may be a list: executemany)."""
        return await self._worker.run(lambda c: BufferedRows(c.execute(statement, parameters)))

    async def exec_driver_sql(self, statement: str, /) -> BufferedRows:
        """Run SQL text as the driver takes it."""
        return await self._worker.run(lambda c: BufferedRows(c.exec_driver_sql(statement)))

    async def run_sync(self, fn: Callable[[SyncConnection], T], /) -> T:
        """Run ``fn`` with the sync connection, on its thread."""
        return await self._worker.run(fn)

    async def begin(self) -> None:
        """Begin a transaction (the driver emits ``BEGIN`` with the first write)."""
        await self._worker.run(lambda c: c.begin())

    async def commit(self) -> None:
        """Commit the transaction."""
        await self._worker.run(lambda c: c.commit())

    async def rollback(self) -> None:
        """Roll the transaction back."""
        await self._worker.run(lambda c: c.rollback())


class ThreadEngine:
    """A sync SQLAlchemy engine whose connections each run on their own worker thread.

    Args:
        url: A SQLite URL; its driver becomes ``pysqlite`` (stdlib ``sqlite3``), whatever it
            names.
    """

    def __init__(self, url: URL) -> None:
        self._engine = create_engine(url.set(drivername="sqlite+pysqlite"))

    @property
    def url(self) -> URL:
        """The database URL (``sqlite+pysqlite``)."""
        return self._engine.url

    @property
    def dialect(self) -> Dialect:
        """SQLAlchemy's dialect."""
        return self._engine.dialect

    @property
    def sync_engine(self) -> SyncEngine:
        """The sync engine (events are listened for on it)."""
        return self._engine

    def connect(self) -> ThreadConnection:
        """A connection, opened by ``start()`` or ``async with``."""
        return ThreadConnection(self._engine)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[ThreadConnection]:
        """A connection in a transaction, committed on success, rolled back on error."""
        async with self.connect() as conn:
            await conn.begin()
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def dispose(self) -> None:
        """Close the pooled connections, off the loop (closing a WAL file checkpoints it)."""
        await asyncio.to_thread(self._engine.dispose)

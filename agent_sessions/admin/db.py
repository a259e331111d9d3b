"""One session database as the admin API sees it: where it is, its tables, and safe calls.

Every database is opened through SQLAlchemy, so a single Core-based implementation serves
SQLite, PostgreSQL and MariaDB: an existing SQLite file on a sync engine on worker threads, the
rest on SQLAlchemy's async engine (see :mod:`.engine`). Rows are moved as their stored text,
untouched. Timestamps are naive values in the database's own clock; on SQLite they are read and
written as text, so a file's values are never reinterpreted by a type adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    TIMESTAMP,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from ..backends._sqlalchemy_engine import ASYNC_DRIVERS as _ASYNC_DRIVERS  # the one mapping
from ..backends._sqlalchemy_engine import asyncpg_errors, engine_from_url, redact, use_wal
from ..errors import AgentSessionsError, StorageError, StorageUnavailableError
from ..schema import PROVENANCE_COLUMNS, TableNames
from .engine import Connection, Engine, ThreadEngine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "PROVENANCE_COLUMNS",
    "Database",
    "Location",
    "Stamp",
    "canonical_time",
    "locate",
    "parse_time",
]

T = TypeVar("T")
Stamp = datetime | str | None
"""A timestamp as a database returns it: a datetime, SQLite text, or NULL."""

_CONNECT_TIMEOUT = 10
_ORIGIN_PREFIX = re.compile(r"^<class '[\w.]+'>: ")  # asyncpg errors as SQLAlchemy wraps them


def parse_time(value: Stamp) -> datetime | None:
    """Return a stored timestamp as a naive datetime; None if NULL or unreadable."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def canonical_time(value: Stamp) -> str | None:
    """Return a timestamp as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (SQLite's own format).

    Text that is not a timestamp is returned unchanged, so an odd SQLite value survives an
    export and re-import into SQLite.
    """
    moment = parse_time(value)
    if moment is None:
        return None if value is None else str(value)
    return moment.isoformat(sep=" ")


@dataclass(frozen=True)
class Location:
    """Where a database is: its async URL, a label for messages, and its SQLite file."""

    url: URL
    label: str
    path: Path | None


def locate(target: str | os.PathLike[str]) -> Location:
    """Tell a SQLite path from a database URL, and give the URL its async driver.

    Raises:
        ValueError: the URL cannot be parsed.
    """
    if isinstance(target, os.PathLike) or "://" not in target:
        path = Path(target)
        return Location(URL.create("sqlite+aiosqlite", database=str(path)), str(path), path)
    try:
        url = make_url(target)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"invalid database URL {redact(target)!r}: {exc}") from exc
    if url.drivername in _ASYNC_DRIVERS:
        url = url.set(drivername=_ASYNC_DRIVERS[url.drivername])
    file: Path | None = None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        file = Path(str(url.database))
    return Location(url, url.render_as_string(hide_password=True), file)


def _busy_timeout(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
    finally:
        cursor.close()


def _reason(exc: BaseException) -> str:
    """The driver's own words for a failure, on one line."""
    origin = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    words = _ORIGIN_PREFIX.sub("", str(origin)).strip() or type(origin).__name__
    return " ".join(words.split())


class Database:
    """An engine on one session database, its table objects, and error translation.

    Args:
        target: A SQLite file path, or a SQLAlchemy URL (``postgresql://``, ``mysql://``, ...;
            the async driver is added when the URL names none).
        tables: The table names.
        create: Create the file and the tables when missing (destinations of imports and
            migrations). Otherwise a missing file or missing tables is an error.

    Raises:
        StorageUnavailableError: ``create`` is False and the SQLite file does not exist, or
            the directory for a new file does not exist.
        ValueError: the URL cannot be parsed or names an unknown dialect.
        MissingDependencyError: the URL's driver is not installed.
    """

    def __init__(self, target: str | os.PathLike[str], tables: TableNames, *, create: bool) -> None:
        where = locate(target)
        self.label = where.label
        self.path = where.path
        self.names = tables
        self.create = create
        if self.path is not None:
            if self.path.is_dir():
                raise StorageUnavailableError(f"{self.path} is a directory, not a database file")
            if not create and not self.path.is_file():
                raise StorageUnavailableError(f"no such database file: {self.path}")
            if create and not self.path.parent.is_dir():
                raise StorageUnavailableError(f"no such directory: {self.path.parent}")
        self._async_engine: AsyncEngine | None = None
        self._snapshots: Engine | None = None
        self.engine: Engine
        if self.path is not None and not create and where.url.drivername == "sqlite+aiosqlite":
            self.engine = ThreadEngine(where.url)  # no asyncio bridge to load: see .engine
        else:
            dialect = where.url.get_backend_name()
            timeouts = {"postgresql": {"timeout": _CONNECT_TIMEOUT}}
            timeouts["mysql"] = timeouts["mariadb"] = {"connect_timeout": _CONNECT_TIMEOUT}
            self._async_engine = engine_from_url(
                where.url.render_as_string(hide_password=False),
                {"connect_args": timeouts[dialect]} if dialect in timeouts else None,
            )
            self.engine = self._async_engine
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            # Readers only wait for writers; WAL is set only where we write, as our sessions do.
            if create and self._async_engine is not None:
                use_wal(self._async_engine)
            else:
                event.listen(self.engine.sync_engine, "connect", _busy_timeout)
        stamp: Any = String() if self.dialect == "sqlite" else TIMESTAMP(timezone=False)
        metadata = MetaData()
        self.sessions = Table(
            tables.sessions,
            metadata,
            Column("session_id", String, primary_key=True),
            Column("created_at", stamp),
            Column("updated_at", stamp),
        )
        self.messages = Table(
            tables.messages,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("session_id", String),
            Column("message_data", Text),
            Column("created_at", stamp),
        )
        self.tagged_messages = Table(
            tables.messages,
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("session_id", String),
            Column("message_data", Text),
            Column("created_at", stamp),
            *(Column(name, String) for name in ("agent_name", "run_id", "item_digest")),
            Column("run_position", Integer),
        )
        self.provenance = False
        """Whether the messages table has the provenance columns (schema v4); set when ready."""
        self._ready = False
        self._ready_lock = asyncio.Lock()

    def async_engine(self) -> AsyncEngine:
        """SQLAlchemy's async engine on this database (every database but an existing file).

        Raises:
            StorageError: the database is an existing SQLite file, opened on a thread engine.
        """
        if self._async_engine is None:
            raise StorageError(f"{self.label} is open on a thread engine, not an async one")
        return self._async_engine

    def snapshot_engine(self) -> Engine:
        """The engine for reads that must see one state: ``REPEATABLE READ`` on a server.

        On SQLite the reader opens the transaction itself (``BEGIN``), on the same engine.
        """
        if self._snapshots is None:
            if self._async_engine is None or self.is_sqlite:
                self._snapshots = self.engine
            else:
                self._snapshots = self._async_engine.execution_options(
                    isolation_level="REPEATABLE READ"
                )
        return self._snapshots

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite (a file path or a ``sqlite`` URL)."""
        return self.dialect == "sqlite"

    def same_tables_as(self, other: Database) -> bool:
        """Whether both objects name the same tables of the same database."""
        if self.path is not None and other.path is not None:
            same = self.path.resolve() == other.path.resolve()
        else:
            same = self.engine.url == other.engine.url
        return same and self.names == other.names

    def stamp_value(self, value: Stamp, default: datetime) -> Any:
        """Return a timestamp as this database stores it; NULL or unreadable is ``default``."""
        if self.is_sqlite:
            return canonical_time(value) or canonical_time(default)
        return parse_time(value) or default

    async def ensure_ready(self) -> None:
        """Create the tables (``create``), or check that they exist; once."""
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self._prepare()
                self._ready = True

    async def _prepare(self) -> None:
        if self.create and self._async_engine is not None:
            # The schema code imports the asyncio extension: only destinations load it.
            from ..backends._sqlalchemy_schema import SessionTables, create_schema  # noqa: PLC0415

            tables, engine = SessionTables(self.names), self._async_engine
            await self.call("create tables", lambda: create_schema(engine, tables))
            self.provenance = await self.call("open", self._has_provenance)
            return
        try:
            missing = await self.call("open", self._missing_tables)
        except StorageError as exc:
            cause = exc.__cause__
            origin = cause.orig if isinstance(cause, DBAPIError) else cause
            if self.path is not None and isinstance(origin, sqlite3.DatabaseError):
                # sqlite3 only says "file is not a database": name the file and what it is not.
                raise StorageError(
                    f"{self.path} is not a SQLite database ({_reason(origin)})"
                ) from cause
            raise
        if missing:
            raise StorageError(
                f"{self.label} has no table {', '.join(missing)}: is it a session "
                "database? (--sessions-table/--messages-table name other tables)"
            )
        self.provenance = await self.call("open", self._has_provenance)

    async def upgrade_schema(self) -> None:
        """Bring the tables to this package's newest schema version (state, archive, provenance).

        The upgrade is the one a session of this package makes on opening the database (the
        ordered migrations, safe against concurrent openers); the SDK's classes still read it.
        An import or migrate runs it when what it writes needs tables or columns the
        destination lacks (an SDK-made database, say).
        """
        if self.path is not None:
            from ..backends.sqlite import SQLiteStore  # noqa: PLC0415 - only an upgrade loads it

            store = SQLiteStore(self.path, tables=self.names)
            try:
                await store.records("", 0)  # the first call waits for the open, which migrates
            finally:
                await store.aclose()
        else:
            from ..backends._sqlalchemy_schema import SessionTables, create_schema  # noqa: PLC0415

            engine, tables = self.async_engine(), SessionTables(self.names)
            await self.call("upgrade", lambda: create_schema(engine, tables))
        self.provenance = await self.call("open", self._has_provenance)

    async def _has_provenance(self) -> bool:
        """Whether the messages table has all four provenance columns (schema version 4)."""
        table = self.names.messages
        async with self.engine.connect() as conn:
            names = await conn.run_sync(
                lambda c: {column["name"] for column in inspect(c).get_columns(table)}
            )
        return names >= PROVENANCE_COLUMNS

    async def _missing_tables(self) -> list[str]:
        present = await self.table_names()
        return [name for name in (self.names.sessions, self.names.messages) if name not in present]

    async def table_names(self) -> set[str]:
        """The names of the tables in the database (its default schema)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))

    async def call(self, operation: str, run: Callable[[], Awaitable[T]]) -> T:
        """Run database work, turning driver errors into the package's errors.

        Raises:
            StorageUnavailableError: the database cannot be reached or opened.
            StorageError: the database refused the work.
        """
        try:
            return await run()
        except AgentSessionsError:
            raise
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, OSError):
                raise StorageUnavailableError(
                    f"cannot reach the database at {self.label}: {_reason(exc)}"
                ) from exc
            raise StorageError(f"{operation} on {self.label} failed: {_reason(exc)}") from exc
        except asyncpg_errors("PostgresError", also=(sqlite3.Error,)) as exc:
            raise StorageError(f"{operation} on {self.label} failed: {_reason(exc)}") from exc
        except asyncpg_errors(
            "InterfaceError", also=(TimeoutError, SQLAlchemyError, OSError)
        ) as exc:
            raise StorageUnavailableError(
                f"cannot reach the database at {self.label}: {_reason(exc)}"
            ) from exc

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[Connection]:
        """One write transaction; on SQLite it takes the write lock first, so writers queue."""
        async with self.engine.begin() as conn:
            if self.is_sqlite:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    async def now(self, conn: Connection) -> datetime:
        """The database's current time, in the clock its column defaults use."""
        query = "SELECT CURRENT_TIMESTAMP" if self.is_sqlite else "SELECT LOCALTIMESTAMP"
        value = (await conn.execute(text(query))).scalar_one()
        moment = parse_time(value)
        if moment is None:
            raise StorageError(f"{self.label} returned an unreadable time {value!r}")
        return moment

    def stamp_param(self, moment: datetime) -> Any:
        """A time to compare with this database's timestamp columns."""
        return moment.isoformat(sep=" ", timespec="seconds") if self.is_sqlite else moment

    async def remove_file(self) -> None:
        """Close the connections and delete the SQLite file and its companions.

        For a file this object created and must not leave behind (a failed import).
        """
        await self.engine.dispose()
        self._ready = False
        if self.path is None:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(Path(f"{self.path}{suffix}").unlink)

    async def aclose(self) -> None:
        """Release the engine's connections."""
        await self.engine.dispose()

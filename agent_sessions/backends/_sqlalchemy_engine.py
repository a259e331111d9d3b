"""Engine set-up for the SQLAlchemy backend: URLs, pragmas, turns, and driver-error kinds.

Driver errors are classified here: a dead connection, a missing table.

A SQLite file that an engine we write through creates is readable and writable by its owner
only (``0600``), like the files of the stdlib-``sqlite3`` backends; SQLite gives its ``-wal``,
``-shm`` and ``-journal`` files the database's mode. A file that already exists keeps its mode.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.pool import StaticPool

from ..errors import MissingDependencyError
from ._sqlite_connection import create_owner_only  # the one creation helper

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "ASYNC_DRIVERS",
    "SESSION_POOL",
    "async_url",
    "asyncpg_errors",
    "connection_trouble",
    "engine_from_url",
    "is_connection_failure",
    "is_memory_sqlite",
    "is_missing_table",
    "redact",
    "shared_connection_lock",
    "sqlite_file_to_create",
    "use_wal",
]

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}
"""URLs without a driver (as operators usually write them) get the async driver we ship with.

The one mapping: ``from_url`` of the sessions and of ``MemoryStore``, and the CLI, all use it.
"""

_EXTRAS = {
    "mysql": "for MySQL/MariaDB run pip install 'agent-sessions[mysql]' (aiomysql)",
    "mariadb": "for MySQL/MariaDB run pip install 'agent-sessions[mysql]' (aiomysql)",
    "postgresql": "agent-sessions ships asyncpg: use postgresql+asyncpg://",
    "sqlite": "agent-sessions ships aiosqlite: use sqlite+aiosqlite://",
}


def async_url(url: str | URL) -> URL:
    """Parse ``url`` and give a driverless one (``postgresql://``) the async driver we ship.

    Raises:
        ValueError: the URL cannot be parsed.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        shown = redact(url) if isinstance(url, str) else "<URL>"
        raise ValueError(f"invalid database URL {shown!r}: {exc}") from exc
    if parsed.drivername in ASYNC_DRIVERS:
        parsed = parsed.set(drivername=ASYNC_DRIVERS[parsed.drivername])
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database (one per connection by default)."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or ":memory:" in database or url.query.get("mode") == "memory"
    )


def asyncpg_errors(
    *names: str, also: tuple[type[BaseException], ...] = ()
) -> tuple[type[BaseException], ...]:
    """The asyncpg exception classes of these names (none while it is not loaded), then ``also``.

    asyncpg is imported by SQLAlchemy only for a PostgreSQL URL, and none of its errors can be
    raised before it is, so a SQLite-only program (the CLI on a file) never pays its import.
    """
    module = sys.modules.get("asyncpg")
    if module is None:
        return also
    return (*(cast(type[BaseException], getattr(module, name)) for name in names), *also)


def connection_trouble(
    also: tuple[type[BaseException], ...] = (),
) -> tuple[type[BaseException], ...]:
    """The errors of a connection that is gone or broken (not of a refused statement).

    asyncpg's last two are ``PostgresError`` subclasses raised while a server shuts down or
    starts up. ``also`` is appended.
    """
    return asyncpg_errors(
        "InterfaceError",
        "InternalClientError",
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        also=(OSError, *also),
    )


def is_missing_table(exc: BaseException) -> bool:
    """An undefined-table error of PostgreSQL, SQLite or MySQL/MariaDB (1146)."""
    original = getattr(exc, "orig", None) or exc
    undefined_table = asyncpg_errors("UndefinedTableError")
    for error in (original, getattr(original, "__cause__", None), exc):
        if isinstance(error, undefined_table):
            return True
        if isinstance(error, sqlite3.OperationalError) and "no such table" in str(error):
            return True
        args = getattr(error, "args", ())
        if args and args[0] == 1146:  # noqa: PLR2004 - ER_NO_SUCH_TABLE
            return True
    return False


def is_connection_failure(exc: DBAPIError) -> bool:
    original = exc.orig
    causes = (original, getattr(original, "__cause__", None), exc.__cause__)
    trouble = connection_trouble()
    return any(isinstance(cause, trouble) for cause in causes)


_SERIAL_ATTRIBUTE = "_agent_sessions_serial"
"""Where a one-connection pool keeps the lock its users queue on: state of that engine only."""


def shared_connection_lock(engine: AsyncEngine) -> asyncio.Lock | None:
    """The lock of an engine with one shared connection (in-memory SQLite), else None.

    Such an engine hands the same connection to concurrent users, whose transactions would
    interleave; they take turns instead. The lock lives on the engine's pool, so every session
    and memory store of that engine shares it, and a new one is made for a new event loop.
    """
    pool = engine.sync_engine.pool
    if not isinstance(pool, StaticPool):
        return None
    held: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = getattr(
        pool, _SERIAL_ATTRIBUTE, None
    )
    loop = asyncio.get_running_loop()
    if held is None or held[0] is not loop:
        held = (loop, asyncio.Lock())
        setattr(pool, _SERIAL_ATTRIBUTE, held)
    return held[1]


def use_wal(engine: AsyncEngine) -> None:
    """SQLite, on every connection: WAL, a busy timeout, and TEXT that need not be UTF-8.

    Also, before each connection, a database file that does not exist yet is created empty
    with mode ``0600`` (the connection would create it anyway, with the process umask).
    Only engines we write through get this; read-only opens never create a file.
    """
    if not event.contains(engine.sync_engine, "connect", _configure_sqlite):
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    if not event.contains(engine.sync_engine, "do_connect", _create_file_owner_only):
        event.listen(engine.sync_engine, "do_connect", _create_file_owner_only)


def sqlite_file_to_create(cargs: Any, cparams: Mapping[str, Any]) -> str | None:
    """The file a SQLite connection with these arguments would create; None for none.

    In-memory databases and ``file:`` URIs opened ``mode=ro`` (or ``memory``) create no file.
    """
    database = cargs[0] if cargs else cparams.get("database")
    if not isinstance(database, str) or database in ("", ":memory:"):
        return None
    if not cparams.get("uri") or not database.startswith("file:"):
        return database
    parts = urlsplit(database)
    mode = parse_qs(parts.query).get("mode", ["rwc"])[-1]
    path = unquote(parts.path)
    return None if mode != "rwc" or path in ("", ":memory:") else path


def _create_file_owner_only(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """``do_connect`` hook: create a missing database file owner-only before SQLite does."""
    path = sqlite_file_to_create(cargs, cparams)
    if path is not None:
        create_owner_only(path)


def _tolerant_text(data: bytes) -> str | bytes:
    """TEXT that is not UTF-8 comes back as bytes, which the codec reports as undecodable.

    With the default factory one such row fails the whole query, so none of the session's other
    rows could be read or popped.
    """
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _configure_sqlite(dbapi_connection: Any, record: Any) -> None:
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and hasattr(driver, "text_factory"):  # aiosqlite
        driver.text_factory = _tolerant_text
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")  # a no-op answer ("memory") in memory
    finally:
        cursor.close()


def _replace_if_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Pool checkout hook: refuse a connection whose socket the server already closed."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)  # asyncpg
    closed = is_closed() if callable(is_closed) else getattr(driver, "closed", False)  # aiomysql
    if closed is True:
        raise DisconnectionError("the server closed this connection")


def redact(url: str | URL) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


SESSION_POOL: Mapping[str, Any] = {"pool_size": 15, "max_overflow": 0}
"""The pool of an engine ``SQLAlchemySession.from_url`` makes for a database server.

SQLAlchemy's default (5 kept, up to 10 more) caps a pool at 15 connections too, but closes every
connection beyond the fifth as soon as it is checked in: with more than five concurrent calls,
connections are opened and closed all the time (a few milliseconds each). Keeping all 15 costs
nothing until the calls are concurrent (connections open lazily) and opens no more than the
default would; a 16th concurrent call waits for a free connection instead of opening one.
"""


def engine_from_url(
    url: str,
    engine_kwargs: dict[str, Any] | None,
    *,
    pool: Mapping[str, Any] | None = None,
) -> AsyncEngine:
    """Create an engine whose pool replaces connections the server closed (after a restart).

    That check is local, so it costs no round trip, unlike ``pool_pre_ping``. A driverless URL
    gets the async driver we ship (:data:`ASYNC_DRIVERS`); an in-memory SQLite URL gets one
    shared connection (``StaticPool``), so all its sessions see one database.

    Args:
        url: An async SQLAlchemy URL (or one without a driver).
        engine_kwargs: Passed to ``create_async_engine``.
        pool: Pool options (such as :data:`SESSION_POOL`) for a database server's engine,
            used only if ``engine_kwargs`` sets none of ``poolclass``, ``pool_size`` and
            ``max_overflow``. SQLite keeps SQLAlchemy's own pool.

    Raises:
        ValueError: the URL cannot be parsed or names an unknown dialect or driver.
        MissingDependencyError: the URL's driver is known but not installed.
    """
    # The asyncio extension imports sqlalchemy.orm (about 0.1 s): loaded by the first engine,
    # so the admin layer on a SQLite file, which needs only the helpers above, never pays it.
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    parsed = async_url(url)
    kwargs = dict(engine_kwargs or {})
    if is_memory_sqlite(parsed) and "poolclass" not in kwargs:
        # One connection, so every session of this engine sees the same in-memory database.
        kwargs["poolclass"] = StaticPool
    sized = {"poolclass", "pool_size", "max_overflow"}
    if pool and parsed.get_backend_name() != "sqlite" and not sized & kwargs.keys():
        kwargs.update(pool)
    try:
        engine = create_async_engine(parsed, **kwargs)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"invalid database URL {redact(url)!r}: {exc}") from exc
    except ImportError as exc:
        hint = _EXTRAS.get(parsed.get_backend_name(), "install its async driver")
        raise MissingDependencyError(
            f"no installed driver for {redact(url)!r} ({exc}); {hint}"
        ) from exc
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine

"""Engine set-up for the SQLAlchemy backend: SQLite pragmas, dead-connection checks, URLs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import MissingDependencyError

__all__ = ["engine_from_url", "redact", "use_wal"]


def use_wal(engine: AsyncEngine) -> None:
    """SQLite: WAL (readers never wait for the writer) and a busy timeout, on every connection."""
    if not event.contains(engine.sync_engine, "connect", _configure_sqlite):
        event.listen(engine.sync_engine, "connect", _configure_sqlite)


def _configure_sqlite(dbapi_connection: Any, record: Any) -> None:
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


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def engine_from_url(url: str, engine_kwargs: dict[str, Any] | None) -> AsyncEngine:
    """Create an engine whose pool replaces connections the server closed (after a restart).

    That check is local, so it costs no round trip, unlike ``pool_pre_ping``.

    Raises:
        ValueError: the URL cannot be parsed or names an unknown dialect or driver.
        MissingDependencyError: the URL's driver is known but not installed.
    """
    try:
        engine = create_async_engine(url, **(engine_kwargs or {}))
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"invalid database URL {redact(url)!r}: {exc}") from exc
    except ImportError as exc:
        raise MissingDependencyError(
            f"no installed driver for {redact(url)!r} ({exc}); for MySQL/MariaDB run "
            "pip install 'agent-sessions[mysql]'"
        ) from exc
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine

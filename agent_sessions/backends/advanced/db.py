"""The connection the branch logic runs on: sqlite3's, or a SQLAlchemy one behind a bridge.

:mod:`~agent_sessions.backends.advanced.chain` and :mod:`~agent_sessions.backends.advanced.write`
are written once against the small DB-API subset below, which ``sqlite3.Connection`` has as it
is and :class:`~agent_sessions.backends.advanced.bridge.Bridge` gives any SQLAlchemy
connection. Statements use ``?`` or ``:name`` parameters.

Transactions differ: a sqlite3 connection is in autocommit mode and the logic opens its own
(``BEGIN IMMEDIATE`` to write, ``BEGIN`` for a read snapshot); a bridge runs inside a transaction
its store opened (with the session's lock taken), so there the two helpers below do nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from .._sqlite_connection import transaction as sqlite_transaction

__all__ = ["Connection", "Cursor", "snapshot", "transaction"]


class Cursor(Protocol):
    """What a statement returns: its rows, and the id a one-row INSERT gave its row."""

    @property
    def lastrowid(self) -> int | None:
        """The id of the row the INSERT just stored."""

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""

    def fetchone(self) -> Any:
        """Return the next row, or None."""

    def fetchall(self) -> list[Any]:
        """Return the remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """Iterate over the remaining rows."""


class Connection(Protocol):
    """The part of a DB-API connection the branch logic uses."""

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor:
        """Run one statement with ``?`` (a sequence) or ``:name`` (a mapping) parameters."""

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        """Run one statement once per parameter set."""


@contextlib.contextmanager
def transaction(conn: Connection) -> Iterator[None]:
    """A write transaction on a sqlite3 connection; on a bridge, its store's (nothing to do).

    Inside a transaction already (one write made of two, such as a tail swap: a pop then an
    append), it joins it.
    """
    if isinstance(conn, sqlite3.Connection) and not conn.in_transaction:
        with sqlite_transaction(conn):
            yield
    else:
        yield


@contextlib.contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """One read snapshot for several statements, ended (rolled back) whatever happens.

    A bridge's store opened the transaction (the snapshot) already; so did a caller of a
    sqlite3 connection that is in one.
    """
    opens = isinstance(conn, sqlite3.Connection) and not conn.in_transaction
    if opens:
        conn.execute("BEGIN")
    try:
        yield
    finally:
        if opens and conn.in_transaction:
            conn.execute("ROLLBACK")  # a read transaction: ending it is all it needs

"""A SQLAlchemy connection seen as the small DB-API :class:`~.db.Connection` the branch logic uses.

The branch logic (:mod:`.chain`, :mod:`.write`) is synchronous code written for sqlite3. An
``AsyncConnection.run_sync`` call runs it on any async engine: each statement it executes
awaits the driver (asyncpg, aiomysql, aiosqlite) inside SQLAlchemy's greenlet, so the event
loop is never blocked. The bridge turns ``?`` parameters into named ones, keeps one ``text()``
construct per statement (SQLAlchemy then caches its compiled form), returns plain tuples, and
shows timestamps as SQLite writes them (``YYYY-MM-DD HH:MM:SS``), so results are the same on
every database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import CursorResult

__all__ = ["Bridge", "StatementCache"]

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


class _Statement(NamedTuple):
    clause: TextClause
    positional: tuple[str, ...]
    """The names given to the ``?`` marks, in order (none for a ``:name`` statement)."""
    names: frozenset[str]
    returns_id: bool
    """Whether the statement ends in ``RETURNING id`` (PostgreSQL's way to get the new id)."""


class StatementCache:
    """The ``text()`` constructs of one store's statements, made on first use."""

    def __init__(self) -> None:
        self._made: dict[str, _Statement] = {}

    def get(self, sql: str) -> _Statement:
        """Return the construct of ``sql`` and how to bind its parameters."""
        made = self._made.get(sql)
        if made is None:
            parts = sql.split("?")
            positional = tuple(f"p{index}" for index in range(len(parts) - 1))
            named = "".join(
                part + (f":{positional[index]}" if index < len(positional) else "")
                for index, part in enumerate(parts)
            )
            names = frozenset(_NAMED.findall(named))
            returns_id = sql.rstrip().upper().endswith("RETURNING ID")
            made = self._made[sql] = _Statement(text(named), positional, names, returns_id)
        return made


def _plain(value: Any) -> Any:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value


def _row(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_plain(value) for value in row)


class BridgeCursor:
    """The rows of one statement, as a sqlite3 cursor gives them."""

    def __init__(self, result: CursorResult[Any] | None, returns_id: bool = False) -> None:
        self._result = result
        self._id: int | None = None
        self._rows: list[tuple[Any, ...]] | None = None
        if result is not None and returns_id:
            self._rows = [tuple(row) for row in result.fetchall()]
            if len(self._rows) == 1:
                self._id = int(self._rows[0][0])

    @property
    def lastrowid(self) -> int | None:
        """The id the INSERT gave its row."""
        if self._id is None and self._result is not None:
            return self._result.lastrowid
        return self._id

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""
        return 0 if self._result is None else int(self._result.rowcount)

    def fetchone(self) -> tuple[Any, ...] | None:
        """Return the next row, or None."""
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        row = None if self._result is None else self._result.fetchone()
        return None if row is None else _row(row)

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Return the remaining rows."""
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        return [] if self._result is None else [_row(row) for row in self._result.fetchall()]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class Bridge:
    """A SQLAlchemy (sync-facade) connection with sqlite3's ``execute`` and ``executemany``.

    It runs inside the transaction its store opened, so it reports being in one and the
    branch logic's own transaction helpers leave it alone.

    Args:
        conn: The connection ``AsyncConnection.run_sync`` passed in.
        cache: The store's statement constructs.
    """

    in_transaction = True

    def __init__(self, conn: SAConnection, cache: StatementCache) -> None:
        self._conn = conn
        self._cache = cache

    def _bind(self, statement: _Statement, parameters: Any) -> dict[str, Any]:
        if isinstance(parameters, Mapping):
            return {name: parameters[name] for name in statement.names}
        return dict(zip(statement.positional, parameters, strict=True))

    def execute(self, sql: str, parameters: Any = (), /) -> BridgeCursor:
        """Run one statement with ``?`` (a sequence) or ``:name`` (a mapping) parameters."""
        statement = self._cache.get(sql)
        result = self._conn.execute(statement.clause, self._bind(statement, parameters))
        return BridgeCursor(result, statement.returns_id)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> BridgeCursor:
        """Run one statement once per parameter set (nothing for none)."""
        statement = self._cache.get(sql)
        bound = [self._bind(statement, each) for each in parameters]
        return BridgeCursor(self._conn.execute(statement.clause, bound) if bound else None)

"""The few places where the branch tables' SQL differs between SQLite, PostgreSQL and MySQL.

Every statement of :mod:`agent_sessions.backends.advanced` is written once; a :class:`Flavor`
fills in what the databases spell differently: upserts, how a parameter compared with an id is
typed, and which column orders branches by creation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = ["SQLITE", "Flavor", "flavor_of"]

FlavorName = Literal["sqlite", "postgresql", "mysql"]


class Flavor:
    """How one kind of database spells the parts of the branch SQL that are not standard.

    Args:
        name: ``"sqlite"``, ``"postgresql"`` or ``"mysql"`` (MariaDB included).
    """

    def __init__(self, name: FlavorName) -> None:
        self.name: FlavorName = name
        self.branch_order = "rowid" if name == "sqlite" else "position"
        """The branches table's column that grows with each branch created."""

    def id_bound(self, param: str) -> str:
        """Return a bound parameter compared with row ids, typed wide enough for any cutoff.

        PostgreSQL types a parameter from the column it meets (``integer`` for a ``SERIAL``
        id), and the "no cutoff" value does not fit that type.
        """
        return f"CAST({param} AS BIGINT)" if self.name == "postgresql" else param

    def insert_ignore(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        values: Sequence[str] | None = None,
    ) -> str:
        """Return an INSERT of one row that does nothing if a row of the same ``key`` exists.

        ``values`` are the SQL of each column's value: one ``?`` parameter each by default.
        """
        head = _insert(table, columns, values)
        if self.name == "mysql":
            # A no-op update, not INSERT IGNORE: that would also hide other errors.
            return f"{head} ON DUPLICATE KEY UPDATE {key[0]} = {key[0]}"
        return f"{head} ON CONFLICT ({', '.join(key)}) DO NOTHING"

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        updates: Mapping[str, str],
        values: Sequence[str] | None = None,
    ) -> str:
        """Return an INSERT of one row that updates the existing row of the same ``key``.

        Args:
            table: The table.
            columns: The inserted columns, one ``?`` parameter each.
            key: The unique key that may conflict.
            updates: Column to expression; ``new.col`` names the value the INSERT carried and
                ``old.col`` the existing row's.
            values: As for :meth:`insert_ignore`.
        """
        head = _insert(table, columns, values)
        if self.name == "mysql":
            sets = ", ".join(
                f"{column} = {_spell(expr, 'VALUES({})', '{}')}" for column, expr in updates.items()
            )
            return f"{head} ON DUPLICATE KEY UPDATE {sets}"
        sets = ", ".join(
            f"{column} = {_spell(expr, 'excluded.{}', table + '.{}')}"
            for column, expr in updates.items()
        )
        return f"{head} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"


def _insert(table: str, columns: Sequence[str], values: Sequence[str] | None) -> str:
    marks = ", ".join(values if values is not None else ["?"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _spell(expression: str, new: str, old: str) -> str:
    """Replace ``new.col`` and ``old.col`` in an update expression by the database's spelling."""
    words = []
    for word in expression.split(" "):
        if word.startswith("new."):
            words.append(new.format(word[4:]))
        elif word.startswith("old."):
            words.append(old.format(word[4:]))
        else:
            words.append(word)
    return " ".join(words)


SQLITE = Flavor("sqlite")
"""The flavor of SQLite files opened with the standard library (``AdvancedSQLiteSession``)."""


def flavor_of(dialect: str) -> Flavor:
    """Return the flavor of a SQLAlchemy dialect name (``sqlite``, ``postgresql``, ``mysql``...).

    Raises:
        ValueError: the dialect is none of the three.
    """
    if dialect == "sqlite":
        return SQLITE
    if dialect == "postgresql":
        return Flavor("postgresql")
    if dialect in ("mysql", "mariadb"):
        return Flavor("mysql")
    raise ValueError(
        f"advanced sessions support SQLite, PostgreSQL and MySQL/MariaDB, not {dialect!r}"
    )

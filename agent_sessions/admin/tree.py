"""A session's branch tables on any database: found, created, read in a snapshot, cleared.

Advanced sessions (``AdvancedSQLiteSession``, ``AdvancedSQLAlchemySession``) keep six tables
beside the SDK's two (``docs/schema.md``): per-item branch records (the structure table), token
usage per turn, reserved branch ids, clear generations, branches made by reference (parent and
cutoff) and the current branch. On a server they are always named after the messages table
(``<messages>_structure``...); a SQLite file uses the SDK's shared tables (``message_structure``,
``turn_usage``, ``branch_reservations``, ``session_clear_generations``) when their foreign keys
name this pair, and its own copies otherwise. A file the SDK's class wrote lacks our two tables;
they read as empty. :mod:`.records` moves their rows between databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    literal_column,
    select,
    text,
)

from ..errors import StorageError
from ..schema import TableNames, validate_identifier
from ..serialization import JsonCodec
from .db import Database
from .engine import Connection

__all__ = [
    "TreeNames",
    "TreeTables",
    "begin",
    "complete",
    "delete_tree",
    "ensure_tree",
    "find_tree",
    "item_ids",
    "renew",
    "snapshot",
    "tree_names",
]

_JSON = JsonCodec()
_SDK = ("message_structure", "turn_usage", "branch_reservations", "session_clear_generations")
_OWN = ("structure", "turn_usage", "reservations", "generations")


class TreeNames(NamedTuple):
    """The six branch tables of one pair of tables."""

    structure: str
    usage: str
    reservations: str
    generations: str
    branches: str
    current: str

    @property
    def shared(self) -> bool:
        """Whether the pair uses the SDK's shared tables (a SQLite file only)."""
        return self.structure == _SDK[0]


def tree_names(names: TableNames, *, shared: bool) -> TreeNames:
    """The branch tables' names for a pair: the SDK's shared ones, or the pair's own."""
    m = names.messages

    def own(suffix: str) -> str:
        return validate_identifier(f"{m}_{suffix}", "branch table name")

    structure, usage, reservations, generations = (
        _SDK if shared else tuple(own(suffix) for suffix in _OWN)
    )
    return TreeNames(structure, usage, reservations, generations, own("branches"), own("current"))


@dataclass(frozen=True)
class TreeTables:
    """The branch tables of a database as SQLAlchemy Core tables, and which of them exist."""

    names: TreeNames
    present: frozenset[str]
    structure: Table
    usage: Table
    reservations: Table
    generations: Table
    branches: Table
    current: Table
    order: Any
    """The branches table's column that grows as branches are made (``rowid``, ``position``)."""

    def has(self, table: Table) -> bool:
        """Whether the database has this table."""
        return table.name in self.present

    @property
    def all(self) -> list[Table]:
        """The six tables, the structure table first."""
        return [
            self.structure,
            self.usage,
            self.reservations,
            self.generations,
            self.branches,
            self.current,
        ]


def _tables(db: Database, names: TreeNames, present: frozenset[str]) -> TreeTables:
    # Only the columns moved; ids (and the branches' position) are the database's own.
    stamp: Any = String() if db.is_sqlite else TIMESTAMP(timezone=False)
    md = MetaData()
    structure = Table(
        names.structure,
        md,
        Column("id", BigInteger),
        Column("session_id", String),
        Column("message_id", Integer),
        Column("branch_id", String),
        Column("message_type", String),
        Column("sequence_number", BigInteger),
        Column("user_turn_number", Integer),
        Column("branch_turn_number", Integer),
        Column("tool_name", Text),
        Column("created_at", stamp),
    )
    usage = Table(
        names.usage,
        md,
        Column("id", BigInteger),
        Column("session_id", String),
        Column("branch_id", String),
        Column("user_turn_number", Integer),
        *(
            Column(name, BigInteger)
            for name in ("requests", "input_tokens", "output_tokens", "total_tokens")
        ),
        Column("input_tokens_details", Text),
        Column("output_tokens_details", Text),
        Column("created_at", stamp),
    )
    reservations = Table(
        names.reservations, md, Column("session_id", String), Column("branch_id", String)
    )
    generations = Table(
        names.generations, md, Column("session_id", String), Column("generation", BigInteger)
    )
    branches = Table(
        names.branches,
        md,
        Column("session_id", String),
        Column("branch_id", String),
        Column("parent_id", String),
        Column("inherit_below", BigInteger),
        Column("created_at", stamp),
        *([] if db.is_sqlite else [Column("position", BigInteger)]),
    )
    current = Table(names.current, md, Column("session_id", String), Column("branch_id", String))
    order = literal_column("rowid") if db.is_sqlite else branches.c.position
    return TreeTables(
        names, present, structure, usage, reservations, generations, branches, current, order
    )


async def _owner_is(db: Database, conn: Connection, structure: str) -> bool:
    """Whether a SQLite structure table's foreign key names this pair's messages table."""
    keys = await conn.execute(text(f"PRAGMA foreign_key_list({structure})"))
    owners = {str(row[2]).lower() for row in keys if str(row[3]).lower() == "message_id"}
    return owners == {db.names.messages.lower()}


def complete(tree: TreeTables | None) -> bool:
    """Whether a database has all six branch tables (a file the SDK's class wrote has four)."""
    return tree is not None and tree.present == frozenset(tree.names)


async def find_tree(db: Database) -> TreeTables | None:
    """The branch tables this pair of tables uses; None if the database has none.

    Raises:
        StorageError: the file holds the first release's branch tables, which an
            ``AdvancedSQLiteSession`` upgrades when it opens the file (nothing else does).
    """
    present = {name.lower(): name for name in await db.table_names()}
    shared = False
    if db.is_sqlite and _SDK[0] in present:
        async with db.engine.connect() as conn:
            shared = await _owner_is(db, conn, _SDK[0])
    names = tree_names(db.names, shared=shared)
    if names.structure.lower() not in present:
        old = f"{db.names.messages}_branch_of".lower()
        if old in present:
            raise StorageError(
                f"{db.label} holds branch tables of an older layout ({present[old]}): open it "
                "once with AdvancedSQLiteSession to upgrade them, then try again"
            )
        return None
    found = frozenset(name for name in names if name.lower() in present)
    return _tables(db, names, found)


async def ensure_tree(db: Database) -> TreeTables:
    """Create the branch tables this pair lacks (as the advanced sessions create them).

    A SQLite file gets ``AdvancedSQLiteSession``'s tables and migrations (under the write
    lock), a server ``AdvancedSQLAlchemySession``'s (under ``create_schema``'s lock).
    """
    # The advanced backend imports the Agents SDK: only a tree to write pays for it.
    from ..backends.advanced.bridge import Bridge, StatementCache  # noqa: PLC0415
    from ..backends.advanced.chain import Chain  # noqa: PLC0415
    from ..backends.advanced.flavor import flavor_of  # noqa: PLC0415
    from ..backends.advanced.sql import AdvancedStatements  # noqa: PLC0415
    from ..backends.advanced.write import Schema  # noqa: PLC0415

    sql, cache = AdvancedStatements(db.names, flavor_of(db.dialect)), StatementCache()
    # Upgrading an old file gives records to rows no session recorded: classified as ours are.
    classify_text = Chain(sql, _JSON).classify_text
    if db.is_sqlite:
        async with db.writing() as conn:
            await conn.run_sync(lambda c: Schema(sql, classify_text).ensure(Bridge(c, cache)))
    else:
        from ..backends._sqlalchemy_schema import SessionTables, create_schema  # noqa: PLC0415
        from ..backends.advanced.tables import create_branch_tables  # noqa: PLC0415

        tables, engine = SessionTables(db.names), db.async_engine()
        await create_schema(
            engine,
            tables,
            also=lambda c: create_branch_tables(c, tables, sql, cache, classify_text),
        )
    found = await find_tree(db)
    if found is None:  # pragma: no cover - the tables were just created
        raise StorageError(f"the branch tables of {db.label} could not be created")
    return found


async def item_ids(db: Database, conn: Connection, session_id: str) -> list[int]:
    """The ids of a session's items, ascending."""
    m = db.messages
    query = select(m.c.id).where(m.c.session_id == session_id).order_by(m.c.id)
    return [int(row[0]) for row in await conn.execute(query)]


async def delete_tree(tree: TreeTables, conn: Connection, session_id: str) -> None:
    """Delete a session's rows from every branch table the database has."""
    for table in tree.all:
        if tree.has(table):
            await conn.execute(delete(table).where(table.c.session_id == session_id))


@contextlib.asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[Connection]:
    """A connection whose reads see one state of the database until :func:`renew` or close."""
    async with db.snapshot_engine().connect() as conn:
        await begin(db, conn)
        yield conn


async def begin(db: Database, conn: Connection) -> None:
    """Start a read snapshot on ``conn`` (servers: the next statement starts it)."""
    if db.is_sqlite:
        await conn.exec_driver_sql("BEGIN")


async def renew(db: Database, conn: Connection) -> None:
    """End ``conn``'s snapshot and start a new one, for the next session."""
    await conn.rollback()
    await begin(db, conn)

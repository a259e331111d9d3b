"""``AdvancedSQLAlchemySession``: branches, turns and usage on PostgreSQL, MySQL/MariaDB and SQLite.

The same branch logic as ``AdvancedSQLiteSession`` (:mod:`.chain`, :mod:`.write`, :mod:`.ops`)
runs on any async engine through :class:`~.bridge.Bridge`, each call inside one transaction:

- writes hold the session's lock first (a transaction-scoped advisory lock on PostgreSQL, the
  session row's lock on MySQL/MariaDB, the write lock on SQLite), so two app servers that
  branch and append one session take turns and every step sees the other's last commit;
- reads run in one snapshot (``REPEATABLE READ`` on PostgreSQL and InnoDB, a read transaction on
  SQLite), so a walk up a chain of branches sees one state of the tree.

Items stay in the SDK's ``SQLAlchemySession`` tables, so ``SQLAlchemySession`` (ours or the
SDK's) reads ``main``'s history; the branch tables are described in :mod:`.tables`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar, cast

from agents.memory.session_settings import SessionSettings
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...schema import TableNames
from ...serialization import Codec, JsonCodec
from ...store import RowTag, tag_columns, tag_time
from .._restore import ClearLog
from .._sqlalchemy_schema import begin_sqlite, create_schema
from ..sqlalchemy import SQLAlchemySession, SQLAlchemyStore
from .bridge import Bridge, StatementCache
from .chain import Chain
from .db import Connection
from .flavor import Flavor, flavor_of
from .ops import BranchOps
from .pg import Known, KnownStates, PgStatements
from .renumber import renumber
from .segments import NO_LIMIT
from .session import AdvancedSession
from .sql import MAIN, NO_CUTOFF, AdvancedStatements
from .tables import create_branch_tables, find_branch_tables
from .tagged import TaggedStatements, TaggedWriter
from .write import BaseStatements, Schema, Writer

__all__ = ["AdvancedSQLAlchemySession", "AdvancedSQLAlchemyStore"]

T = TypeVar("T")


def _base_statements(names: TableNames, flavor: Flavor) -> BaseStatements:
    """The statements of the SDK's two tables that the branch writes use, in ``?`` form."""
    s, m = names.sessions, names.messages
    now = "CURRENT_TIMESTAMP(6)" if flavor.name == "mysql" else "CURRENT_TIMESTAMP"
    touch = flavor.upsert(s, ("session_id",), ("session_id",), {"updated_at": now})
    insert = f"INSERT INTO {m} (session_id, message_data) VALUES (?, ?)"
    insert_rows = None
    if flavor.name == "postgresql":
        insert += " RETURNING id"  # asyncpg has no lastrowid

        def insert_rows(n: int) -> str:
            values = ", ".join(["(?, ?)"] * n)
            return f"INSERT INTO {m} (session_id, message_data) VALUES {values} RETURNING id"

    return BaseStatements(
        touch_session=touch,
        insert=insert,
        insert_at=f"INSERT INTO {m} (id, session_id, message_data) VALUES (?, ?, ?)",
        delete_row=f"DELETE FROM {m} WHERE id = ?",
        delete_messages=f"DELETE FROM {m} WHERE session_id = ?",
        delete_session=f"DELETE FROM {s} WHERE session_id = ?",
        insert_rows=insert_rows,
    )


class AdvancedSQLAlchemyStore(BranchOps, SQLAlchemyStore):
    """A :class:`SQLAlchemyStore` with copy-free branches; see :class:`AdvancedSQLAlchemySession`.

    Args:
        engine: An async engine (``postgresql+asyncpg``, ``mysql+aiomysql``,
            ``sqlite+aiosqlite``).
        tables: The SDK's table names; the branch tables are named after the messages table.
        create_tables: Create (or upgrade) every table on first use; safe from many processes.
        owns_engine: Dispose of the engine on close.
        codec: Decodes rows to classify them (user message, tool call, ...); JSON by default.

    Raises:
        ValueError: the engine's database is not SQLite, PostgreSQL or MySQL/MariaDB.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        tables: TableNames | None = None,
        create_tables: bool = False,
        owns_engine: bool = False,
        codec: Codec | None = None,
    ) -> None:
        self._flavor = flavor_of(engine.dialect.name)
        super().__init__(
            engine, tables=tables, create_tables=create_tables, owns_engine=owns_engine
        )
        self._adv = AdvancedStatements(self._names, self._flavor)
        if self._flavor.name != "sqlite":
            self._adv.bind(shared=False)  # a server's tables are always the pair's own
        self._chain = Chain(self._adv, codec or JsonCodec())
        self._cache = StatementCache()
        base = _base_statements(self._names, self._flavor)
        self._writer = Writer(self._adv, base, self._chain, Schema(self._adv, self._classify))
        self._record_sql = f"SELECT created_at FROM {self._names.sessions} WHERE session_id = ?"
        self._clears = ClearLog()
        self._tagged = TaggedWriter(
            TaggedStatements(self._names.messages, self._flavor),
            base.touch_session,
            self._writer.append,
        )
        self._found = False  # whether the statements point at this database's branch tables
        self._snapshots = engine
        self._pg: PgStatements | None = None
        if self._flavor.name == "postgresql":
            self._snapshots = engine.execution_options(isolation_level="REPEATABLE READ")
            self._pg = PgStatements(self._adv, self._names.sessions)
        self._known = KnownStates()

    def _classify(self, text: str) -> tuple[str, str | None]:
        return self._chain.classify_text(text)

    @property
    def _schema_key(self) -> Hashable:
        return (self._names, "advanced")

    async def _create_schema(self) -> None:
        def create(conn: SAConnection) -> None:
            create_branch_tables(conn, self.tables, self._adv, self._cache, self._classify)

        await create_schema(self.engine, self.tables, also=create)

    async def _find_tables(self, conn: AsyncConnection) -> None:
        """Point the statements at the branch tables, once per store (SQLite may share SDK ones)."""
        if not self._found:
            await conn.run_sync(lambda sync: find_branch_tables(sync, self._adv, self._cache))
            self._found = True

    def _bridged(self, call: Callable[[Connection], T]) -> Callable[[SAConnection], T]:
        return lambda sync: call(Bridge(sync, self._cache))

    async def _write_call(
        self, operation: str, session_id: str, call: Callable[[Connection], T]
    ) -> T:
        """Run ``call`` in one write transaction that holds the session's lock."""
        self._known.forget(session_id)  # it changes the session: the next append looks up

        async def work(conn: AsyncConnection) -> T:
            await self._find_tables(conn)
            await self._hold_session(conn, session_id, operation)
            return await conn.run_sync(self._bridged(call))

        return await self._write(operation, work)

    async def _hold_session(self, conn: AsyncConnection, session_id: str, operation: str) -> None:
        """Queue behind the session's other writers before the first read of the call."""
        if self._flavor.name == "sqlite":
            await begin_sqlite(conn)  # the file's write lock
        elif operation != "append":
            # An append locks (or creates and locks) the session row by its first statement,
            # the upsert, as the plain store's does; every other write takes that row's lock
            # too (and on PostgreSQL an advisory lock, for a session with no row yet). On
            # MySQL a gap lock taken first would even let two appends deadlock on the insert.
            await self._lock(conn, session_id)

    async def _read_call(
        self, operation: str, call: Callable[[Connection], T], *, snapshot: bool = True
    ) -> T:
        """Run a read-only ``call`` in one read snapshot, whatever ``snapshot`` says."""

        async def read() -> T:
            async with self._snapshots.connect() as conn:
                await self._find_tables(conn)
                if self._flavor.name == "sqlite":
                    await conn.exec_driver_sql("BEGIN")  # one snapshot for every statement
                return await conn.run_sync(self._bridged(call))

        return await self._call(operation, read)

    async def read_branch(
        self, session_id: str, branch: str | None, limit: int | None
    ) -> list[str]:
        """Return the newest ``limit`` rows of a branch (the current one if None), oldest first.

        On PostgreSQL a read that ``main`` answers is one statement in autocommit mode (one
        round trip, no BEGIN and ROLLBACK); a walk up a chain of branches runs in a snapshot.

        Raises:
            ValueError: the branch does not exist.
        """
        pg = self._pg
        if pg is None or not self._fast_path():
            return await super().read_branch(session_id, branch, limit)
        found: list[str] | None = None
        want = NO_LIMIT if limit is None else limit
        known = self._known.peek(session_id)
        if known is not None and known.linear and branch in (None, MAIN):
            rows = await self._on_driver(
                "read", lambda c: c.fetch(pg.read_known, session_id, want, known.version)
            )
            if rows:  # still the version our last append left, with only main
                found = [row[0] for row in rows]
                found.reverse()
                return found
        statement = self._chain.main_statement(session_id, branch)
        if statement is not None:
            rows = await self._on_driver(
                "read", lambda c: c.fetch(pg.read_linear, session_id, want)
            )
            if rows:  # no branch but main: its rows, or one NULL if it has none
                found = [row[0] for row in rows if row[0] is not None]
                found.reverse()
                return found
            sql = pg.segment(statement)
            rows = await self._on_driver(
                "read", lambda c: c.fetch(sql, session_id, NO_CUTOFF, want, MAIN)
            )
            found = [row[0] for row in rows]
            if not found and branch != MAIN:
                found = None  # another branch is current, or main is empty: walk the chain
        if found is None:
            found = await self._read_call(
                "read", lambda c: self._chain.read_walk(c, session_id, branch, limit)
            )
        found.reverse()
        return found

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows on the current branch, with their turn metadata, in one transaction.

        On PostgreSQL one statement does it if nothing changed the session meanwhile (see
        :mod:`.pg`); otherwise, and on the other databases, the portable transaction does.
        """
        pg = self._pg
        if pg is not None and texts and self._fast_path():
            rows = list(texts)
            if await self._append_fast(session_id, rows, pg.append_known, pg.append, ()):
                return
        batch = [(session_id, texts)]
        await self._write_call("append", session_id, lambda conn: self._writer.write(conn, batch))

    async def _append_fast(
        self,
        session_id: str,
        texts: list[str],
        after_known: str,
        found: str,
        extra: tuple[Any, ...],
    ) -> bool:
        """Try PostgreSQL's one-statement append; False if the portable path must run.

        With the state this store's last append of the session left (see :class:`.pg.Known`)
        it runs ``after_known``, which needs no lookup; if the session changed since, or with
        no state, ``found``, which looks the state up. ``extra`` follows the batch's own
        parameters (a tagged batch's provenance).
        """
        kinds, tools, users = self._turn_shape(texts)
        shape = (session_id, texts, kinds, tools, users, *extra)
        known = self._known.take(session_id)
        result: Any = None
        if known is not None:
            result = await self._on_driver(
                "append", lambda c: c.fetchrow(after_known, *shape, *known.params())
            )
        if result is None or not result[0]:
            result = await self._on_driver("append", lambda c: c.fetchrow(found, *shape))
        self._known.keep(session_id, Known.after(result, users[-1]))
        return bool(result[0] == len(texts))

    async def _keeps_provenance(self) -> bool:
        return await self._has_provenance()

    def _turn_shape(self, texts: Sequence[str]) -> tuple[list[str], list[str | None], list[int]]:
        """Each text's item type and tool name, and the user messages up to it (PG append)."""
        kinds, tools, users, seen = [], [], [], 0
        for text in texts:
            kind, tool = self._chain.classify_text(text)
            seen += kind == "user"
            kinds.append(kind)
            tools.append(tool)
            users.append(seen)
        return kinds, tools, users

    async def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> int:
        """Store rows with their provenance on the current branch, skipping a run's stored ones.

        See :meth:`agent_sessions.store.ProvenanceStore.append_tagged`; a run's position is
        stored once per session, whichever branch holds it (:mod:`.tagged`). The portable
        transaction checks it on every database: its first statement, the session upsert,
        takes the session row's lock, so concurrent retries from any engine or process store
        one copy. A fresh batch (nothing of its run can be stored) has nothing to check: on
        PostgreSQL it is the one-statement append of :mod:`.pg`, with its provenance.
        """
        rows = list(zip(texts, tags, strict=True))
        if not await self._has_provenance():
            await self.append(session_id, texts)
            return len(rows)
        pg = self._pg
        if fresh and pg is not None and rows and self._fast_path():
            run = (tags[0].run_id, *tag_columns(tags))
            after_known, found = pg.append_known_tagged, pg.append_tagged
            if await self._append_fast(session_id, list(texts), after_known, found, run):
                return len(rows)
        tagged = self._tagged
        now = tag_time(as_text=self._flavor.name == "sqlite")
        return await self._write_call(
            "append",
            session_id,
            lambda conn: tagged.write(conn, session_id, rows, now, fresh=fresh),
        )

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text, or delete rows (None) with their branch records, in one transaction.

        Returns:
            How many of the session's rows were changed or deleted.
        """
        m = self._names.messages
        update = f"UPDATE {m} SET message_data = ? WHERE id = ? AND session_id = ?"
        delete = f"DELETE FROM {m} WHERE id = ? AND session_id = ?"

        def rewrite(conn: Connection) -> int:
            changed = deleted = 0
            for row_id, text in changes.items():
                if text is None:
                    deleted += conn.execute(delete, (row_id, session_id)).rowcount
                    conn.execute(self._adv.delete_forgotten, (row_id,))
                else:
                    changed += conn.execute(update, (text, row_id, session_id)).rowcount
            if deleted:  # later turns get lower numbers: their records follow
                renumber(conn, self._adv, self._chain, session_id)
            return changed + deleted

        return await self._write_call("rewrite", session_id, rewrite)


class AdvancedSQLAlchemySession(AdvancedSession, SQLAlchemySession):
    """``AdvancedSQLiteSession``'s branches, turns and usage on any async SQLAlchemy engine.

    The same methods with the same results as :class:`~agent_sessions.AdvancedSQLiteSession`,
    on PostgreSQL (asyncpg), MySQL/MariaDB (aiomysql) and SQLite (aiosqlite; the file is
    ``AdvancedSQLiteSession``'s layout, so both classes read it). Branches copy nothing, reads
    cost the same on a long history, and several processes may branch and append one session.

    Args:
        session_id: The conversation this object reads and writes.
        engine: An async engine. It is never disposed of by this session.
        create_tables: Create (or upgrade) the item and branch tables on first use; safe from
            many processes at once.
        sessions_table: Table of session records.
        messages_table: Table of items; the branch tables are named after it.
        session_settings: Defaults for reads, such as ``SessionSettings(limit=50)``.
        strict: Raise :class:`~agent_sessions.errors.CorruptItemError` on an undecodable row
            instead of skipping it with a logged warning.
        logger: Receives this session's own records (undecodable user turns, branch changes).

    Example:
        >>> async def chat() -> None:
        ...     url = "postgresql+asyncpg://app@db/agents"
        ...     session = AdvancedSQLAlchemySession.from_url("u1", url=url, create_tables=True)
        ...     async with session:
        ...         await session.add_items([{"role": "user", "content": "Hi"}])
        ...         await session.create_branch_from_turn(1, "retry")
    """

    _store_type = AdvancedSQLAlchemyStore

    def __init__(
        self,
        session_id: str,
        *,
        engine: AsyncEngine,
        create_tables: bool = False,
        sessions_table: str = "agent_sessions",
        messages_table: str = "agent_messages",
        session_settings: SessionSettings | dict[str, Any] | None = None,
        strict: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        self._logger = logger or logging.getLogger("agent_sessions.backends.advanced")
        super().__init__(
            session_id,
            engine=engine,
            create_tables=create_tables,
            sessions_table=sessions_table,
            messages_table=messages_table,
            session_settings=session_settings,
            strict=strict,
        )
        self._advanced = cast(AdvancedSQLAlchemyStore, self._sqlalchemy)  # made by _store_type

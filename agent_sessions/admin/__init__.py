"""Administer session databases: catalogue, search, statistics, export, import, migrate, purge.

A :class:`SessionDatabase` opens any database our backends use, in the SDK's table layout: a
SQLite file by path, or PostgreSQL, MariaDB/MySQL and SQLite by SQLAlchemy URL. Rows are handled
as their stored text, never decoded on the way through, so encrypted rows, and even rows no codec
can read, are exported, imported and migrated byte for byte. Advanced sessions' branch trees
(branches, each item's branch, usage, the current branch) are shown, exported, imported and
migrated with their items. The ``agent-sessions`` command is a thin layer over this module.

Example:
    >>> async def report() -> None:
    ...     async with SessionDatabase("chats.db") as db:
    ...         for info in await db.list_sessions(sort="activity", descending=True, limit=10):
    ...             print(info.session_id, info.items, info.last_activity)
    ...     async with SessionDatabase("chats.db") as src, SessionDatabase(
    ...         "postgresql://app@db/agents", create=True
    ...     ) as dst:
    ...         await migrate(src, dst)
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Select
from sqlalchemy.exc import DBAPIError

from ..errors import (
    ExportFormatError,
    SessionClosedError,
    SessionExistsError,
    SessionNotFoundError,
    VerificationError,
)
from ..serialization import JSONValue
from .advanced import AdvancedView, present_branch_tables, read_advanced, row_branches
from .base import DatabaseView
from .branches import BranchSummary, BranchTree, TurnUsageRecord, UsageTotals, read_branch_tree
from .catalogue import (
    Filters,
    SearchHit,
    SessionInfo,
    SortKey,
    age_filters,
    check_age,
    count,
    listing,
    says,
    search,
    to_hit,
    to_info,
)
from .files import FileFailed
from .filters import malformed_json, split_where
from .metadata import check_where, matching_sessions, read_metadata
from .migrate import MigrateReport, copy_sessions
from .purge import PurgeReport, parse_age, purge_sessions
from .rows import BATCH, StoredRow, read_rows
from .side import ArchiveSize, archive_size
from .stats import DayGrowth, StoreStats, collect
from .transfer import (
    FORMAT,
    VERSION,
    Conflict,
    TransferReport,
    export_to,
    export_to_file,
    import_from,
    scan_file,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ArchiveSize",
    "BranchSummary",
    "BranchTree",
    "Conflict",
    "DayGrowth",
    "ExportFormatError",
    "MigrateReport",
    "ProgressCallback",
    "PurgeReport",
    "SearchHit",
    "SessionDatabase",
    "SessionExistsError",
    "SessionInfo",
    "SessionNotFoundError",
    "SortKey",
    "StoreStats",
    "StoredRow",
    "TransferReport",
    "TurnUsageRecord",
    "UsageTotals",
    "VerificationError",
    "migrate",
    "parse_age",
]

EXPORT_FORMAT = FORMAT
"""The ``format`` named in the first line of every export file."""
EXPORT_VERSION = VERSION
"""The newest export format version this module writes and reads (4: items' provenance).

A database is exported in the lowest version that holds it: 1 (items), 2 (branch trees), 3
(state values and archives), 4 (items written in a run, with their agent and run)."""
ProgressCallback = Callable[[int, int], None]
"""Called with ``(items done, items in all)`` as long work advances."""


class SessionDatabase(DatabaseView):
    """An administrative view of one session database.

    Opening it checks only what needs no connection (the URL, the file); the first call
    connects and checks that the tables exist (or, with ``create``, creates them). Close it
    with ``aclose()`` or use it with ``async with``.

    An existing SQLite file opened without ``create`` is read (and purged) with stdlib
    ``sqlite3``, each connection on a worker thread of its own: the event loop never waits on
    the file, and no async driver is loaded. Other databases use SQLAlchemy's async engine.

    Args:
        target: A SQLite file path, or a SQLAlchemy URL. URLs without a driver get ours:
            ``postgresql://`` becomes ``postgresql+asyncpg://``, ``mysql://`` and
            ``mariadb://`` become ``mysql+aiomysql://``, ``sqlite://`` ``sqlite+aiosqlite://``.
        sessions_table: Table of session records.
        messages_table: Table of items.
        create: Create the SQLite file and the tables if missing (for import and migrate
            destinations). Without it, a missing file or missing tables is an error, so a
            mistyped path is never silently created.

    Raises:
        StorageUnavailableError: the SQLite file (or, with ``create``, its directory) does
            not exist.
        InvalidIdentifierError: a table name is not a plain identifier (a ``ValueError``).
        ValueError: the URL cannot be parsed or names an unknown database.
        MissingDependencyError: the URL's driver is not installed.
    """

    async def list_sessions(
        self,
        *,
        session_ids: Sequence[str] | None = None,
        prefix: str | None = None,
        older_than: timedelta | None = None,
        newer_than: timedelta | None = None,
        min_items: int = 0,
        min_bytes: int = 0,
        sort: SortKey = "id",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
        where: Mapping[str, JSONValue] | None = None,
        agent: str | None = None,
    ) -> list[SessionInfo]:
        """List sessions with their size, activity and metadata.

        Args:
            session_ids: Only these sessions.
            prefix: Only sessions whose id starts with this text.
            older_than: Only sessions whose last activity is older than this.
            newer_than: Only sessions active within this age.
            min_items: Only sessions with at least this many items.
            min_bytes: Only sessions with at least this many bytes of stored text.
            sort: ``id``, ``activity`` (last), ``created`` (first activity), ``items`` or
                ``size``; ties are ordered by id. Id order follows the database's collation.
            descending: Largest, newest or last first.
            limit: At most this many sessions.
            offset: Skip this many first (for paging).
            where: Only sessions whose plaintext metadata has each of these top-level keys
                equal to the value given (JSON equality: ``1 == 1.0``, ``True != 1``).
                Compared in SQL with the dialect's JSON functions where it has them (see
                ``docs/cli.md``), else in Python; encrypted metadata never matches.
            agent: Only sessions with at least one item this agent wrote (provenance,
                schema version 4); combines with every other filter.

        Returns:
            The sessions, in the order asked for, each with its metadata where readable.

        Raises:
            ValueError: a ``where`` key is empty.
            TypeError: a ``where`` value is not JSON-compatible.
        """

        async def work() -> list[SessionInfo]:
            def build(filters: Filters) -> Select[Any]:
                return listing(
                    self._db, filters, sort=sort, descending=descending, limit=limit, offset=offset
                )

            rows = await self._select(
                build,
                older_than,
                newer_than,
                session_ids=session_ids,
                where=where,
                agent=agent,
                prefix=prefix,
                min_items=min_items,
                min_bytes=min_bytes,
            )
            infos = [to_info(row) for row in rows]
            views = await read_metadata(self._db, [info.session_id for info in infos])
            return [
                dataclasses.replace(
                    info,
                    metadata_status=views[info.session_id][0],
                    metadata=views[info.session_id][1],
                )
                for info in infos
            ]

        return await self._run("list_sessions", work)

    async def count_sessions(
        self,
        *,
        prefix: str | None = None,
        older_than: timedelta | None = None,
        newer_than: timedelta | None = None,
        min_items: int = 0,
        min_bytes: int = 0,
        where: Mapping[str, JSONValue] | None = None,
        agent: str | None = None,
    ) -> int:
        """Count the sessions :meth:`list_sessions` would list with the same filters."""

        async def work() -> int:
            rows = await self._select(
                lambda filters: count(self._db, filters),
                older_than,
                newer_than,
                session_ids=None,
                where=where,
                agent=agent,
                prefix=prefix,
                min_items=min_items,
                min_bytes=min_bytes,
            )
            return int(rows[0][0]) if rows else 0

        return await self._run("count_sessions", work)

    async def _select(
        self,
        build: Callable[[Filters], Select[Any]],
        older_than: timedelta | None,
        newer_than: timedelta | None,
        *,
        session_ids: Sequence[str] | None,
        where: Mapping[str, JSONValue] | None,
        agent: str | None,
        **rest: Any,
    ) -> list[Any]:
        """The rows of a listing (or count) query; none when a metadata filter rules all out.

        The metadata filter goes to SQL where the dialect compares JSON (:mod:`.filters`).
        On PostgreSQL a metadata row that is not JSON fails the cast: the filter is then
        compared in Python, with the same outcome.
        """
        if where:
            check_where(where)
        for in_python in (False, True):
            sql_where: dict[str, Any] = {}
            python_where: dict[str, Any] = dict(where or {})
            if where and not in_python:
                sql_where, python_where = split_where(self._db, where)
            wanted = None if session_ids is None else list(session_ids)
            if where and self._db.names.state not in await self._db.table_names():
                return []  # no state table: no session has metadata
            if python_where:
                chosen = None if wanted is None else set(wanted)
                matched = await matching_sessions(self._db, python_where)
                wanted = [sid for sid in matched if chosen is None or sid in chosen]
                if not wanted:
                    return []
            filters = await age_filters(
                self._db,
                older_than,
                newer_than,
                session_ids=wanted,
                where=sql_where or None,
                agent=agent,
                **rest,
            )
            try:
                async with self._db.engine.connect() as conn:
                    return list(await conn.execute(build(filters)))
            except DBAPIError as exc:
                if in_python or not sql_where or not malformed_json(exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def session(self, session_id: str) -> SessionInfo:
        """Return one session's catalogue entry.

        Raises:
            SessionNotFoundError: the session has no record and no items.
        """
        found = await self.list_sessions(session_ids=[session_id])
        if not found:
            raise SessionNotFoundError([session_id], self.location)
        return found[0]

    async def rows(self, session_id: str, *, limit: int | None = None) -> list[StoredRow]:
        """Return a session's stored rows, oldest first, undecoded.

        Args:
            session_id: The session.
            limit: Only the newest this many rows.

        Raises:
            SessionNotFoundError: the session has no record and no items.
        """
        await self.session(session_id)

        async def work() -> list[StoredRow]:
            found: list[StoredRow] = []
            async with self._db.engine.connect() as conn:
                async for batch in read_rows(self._db, conn, session_id, newest=limit):
                    found.extend(batch)
            return found

        return await self._run("rows", work)

    async def row_branches(self, session_id: str) -> dict[int, str]:
        """Map row ids to the branch that wrote them, in an advanced session's database.

        Returns:
            An empty dict for a database without branch tables.
        """

        async def work() -> dict[int, str]:
            if not await present_branch_tables(self._db):
                return {}
            async with self._db.engine.connect() as conn:
                return await row_branches(self._db, conn, session_id)

        return await self._run("row_branches", work)

    async def branch_tree(self, session_id: str) -> BranchTree | None:
        """Branches and token usage of an advanced session, read without writing anything.

        What ``AdvancedSQLiteSession`` and ``AdvancedSQLAlchemySession`` report on the same
        tree: each branch with its parent, visible items and user turns, creation time and
        usage (totals and per turn), the current branch, and the session's usage. Works on
        SQLite files (either class's, or the SDK's) and on PostgreSQL and MariaDB/MySQL.

        Returns:
            The tree, or None when the database has no branch tables. A session that was never
            branched has only ``main``.

        Raises:
            StorageError: the file holds the first release's branch tables (open it once with
                ``AdvancedSQLiteSession`` to upgrade them).
        """
        return await self._run("branch_tree", lambda: read_branch_tree(self._db, session_id))

    async def archive_size(self, session_id: str) -> ArchiveSize:
        """How many items (and batches) compaction and archiving prunes moved to the archive.

        Returns:
            Zero counts for a session with no archive, or a database without the table.
        """
        return await self._run("archive_size", lambda: archive_size(self._db, session_id))

    async def advanced(self, session_id: str) -> AdvancedView | None:
        """Branches and token usage of a session, as the advanced session's calls return them.

        Returns:
            ``{"branches": [...], "usage": {...} | None}`` as the session's
            ``list_branches()`` and ``get_session_usage()`` return them, or None when the
            database has no branch tables. :meth:`branch_tree` tells more, typed.
        """
        return await self._run("advanced", lambda: read_advanced(self._db, session_id))

    async def search(self, term: str, *, limit: int = 100) -> list[SearchHit]:
        """Find stored rows whose item text contains ``term`` (case-insensitively), all sessions.

        The text is what was said: string values such as content, tool arguments and outputs,
        not JSON keys or the values of ``type``, ``role``, ``status`` and ids (a search for
        "role" does not match every message). Encrypted rows are not searched: their text is
        ciphertext.

        Args:
            term: The text to look for; matched as typed and as escaped inside JSON strings.
            limit: At most this many rows, oldest first.
        """
        if not term:
            raise ValueError("the search term is empty")

        async def work() -> list[SearchHit]:
            hits: list[SearchHit] = []
            after, page = 0, max(limit, 200)
            async with self._db.engine.connect() as conn:
                # The SQL match also finds the term in JSON keys ("role"): page on until enough
                # rows say it in their text.
                while len(hits) < limit:
                    rows = list(await conn.execute(search(self._db, term, page, after)))
                    hits += [to_hit(row) for row in rows if says(str(row[3]), term)]
                    if len(rows) < page:
                        break
                    after = int(rows[-1][1])
            return hits[:limit]

        return await self._run("search", work)

    async def stats(self, *, top: int = 10, days: int = 14) -> StoreStats:
        """Return size on disk, totals, the largest sessions and growth per day.

        Args:
            top: How many of the largest sessions to include.
            days: How many days of growth to include, today included.
        """
        largest = await self.list_sessions(sort="size", descending=True, limit=top)
        return await self._run("stats", lambda: collect(self._db, largest, days))

    async def purge(self, older_than: timedelta, *, dry_run: bool = False) -> PurgeReport:
        """Delete the sessions whose last activity is older than ``older_than``.

        Last activity is the later of the session record's ``updated_at`` and its newest
        item's ``created_at``, in the database's clock. Each session goes in its own
        transaction, after checking again that it is still inactive. On an
        ``AdvancedSQLiteSession`` file its branch and usage rows go with it.

        Args:
            older_than: The age of inactivity beyond which sessions go.
            dry_run: Only report what would be deleted.

        Returns:
            The sessions purged (or, dry, to be purged) and those that became active meanwhile.

        Raises:
            ValueError: ``older_than`` is not a positive age of at most 100 years.
        """
        check_age(older_than, "older_than")
        return await self._run(
            "purge", lambda: purge_sessions(self._db, older_than, dry_run=dry_run)
        )

    async def export_jsonl(
        self,
        destination: str | os.PathLike[str] | TextIO,
        session_ids: Sequence[str] | None = None,
        *,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
    ) -> TransferReport:
        """Export sessions to JSON Lines (the format is described in ``docs/cli.md``).

        A database with branch tables is exported as format version 2: each session's items,
        then its branch tree, read in one snapshot. One whose sessions hold state values or
        archived rows is version 3 (those follow the tree). One with items written in a run
        is version 4: those items carry their agent, run, position and digest. Any other is
        version 1.

        A file is written to a temporary file created exclusively (random name, mode 0600)
        in its directory and renamed when complete, so a failed export never leaves a file
        that looks whole. A new file is readable by its owner only.

        Args:
            destination: A file path, or an open text stream.
            session_ids: The sessions to export; all of them if None.
            overwrite: Replace an existing file, keeping its permission bits. The database
                being exported, and any SQLite file, are refused even so.
            progress: Called as items are written.

        Raises:
            SessionNotFoundError: a named session does not exist; nothing was written.
            FileExistsError: the path is the database being exported, a SQLite file, or
                (without ``overwrite``) an existing file; nothing was written.
            OSError: the destination could not be written (a full disk, a closed pipe).
        """
        infos = await self._in_id_order(session_ids, "export_jsonl")
        try:
            if isinstance(destination, (str, os.PathLike)):
                path = Path(destination)
                return await self._run(
                    "export",
                    lambda: export_to_file(self._db, path, infos, progress, overwrite=overwrite),
                )
            return await self._run(
                "export", lambda: export_to(self._db, destination, infos, progress)
            )
        except FileFailed as failed:
            raise failed.error from None

    async def import_jsonl(
        self,
        source: str | os.PathLike[str],
        *,
        on_conflict: Conflict = "error",
        progress: ProgressCallback | None = None,
    ) -> TransferReport:
        """Import an export file, each session (items and branch tree) in its own transaction.

        The whole file is checked first (structure, per-session counts and SHA-256, totals),
        and nothing is written unless it is intact. A format version 2 file's branch trees
        get the branch tables they need if the database lacks them; a version 4 file's
        items get their provenance (a database without its columns is first upgraded to
        schema version 4, as a session of this package upgrades it on opening it).

        Args:
            source: The export file.
            on_conflict: For sessions that already exist: ``error`` (refuse the import before
                writing anything), ``skip`` (keep them), or ``replace`` (delete and rewrite).
            progress: Called as items are written.

        Raises:
            ExportFormatError: the file is not a complete, intact export.
            SessionExistsError: sessions exist and ``on_conflict`` is ``error``.
            OSError: the file does not exist or cannot be read.
        """
        path = Path(source)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(f"no such export file: {path}")
        if self._closed:
            raise SessionClosedError("SessionDatabase.import_jsonl() was called after aclose()")
        new_file = self._db.path is not None and not self._db.path.exists()
        try:
            # The file is checked before the database is touched: a refused file creates
            # neither the database file nor its tables.
            sessions = await scan_file(path)
            return await self._run(
                "import", lambda: import_from(self._db, path, sessions, on_conflict, progress)
            )
        except FileFailed as failed:
            await self._forget(new_file)
            raise failed.error from None
        except BaseException:
            await self._forget(new_file)
            raise

    async def _forget(self, created: bool) -> None:
        """Remove the SQLite file (and its companions) that a failed import created."""
        if created:
            await self._db.remove_file()


async def migrate(
    source: SessionDatabase,
    destination: SessionDatabase,
    *,
    session_ids: Sequence[str] | None = None,
    replace: bool = False,
    batch_size: int = BATCH,
    progress: ProgressCallback | None = None,
) -> MigrateReport:
    """Copy sessions between databases, verified by count and SHA-256, resumably.

    Each session is copied in one destination transaction and read back before it commits.
    Running it again after an interruption skips the sessions already copied identically and
    copies the rest; a session that differs at the destination is a conflict, reported and
    left alone, unless ``replace``. An advanced session's branch tree (its branches, the
    branch of each item, usage, reserved branch ids, clear generation and current branch) is
    copied with its items, in the same transaction, and verified too; the destination gets the
    branch tables if it lacks them. Each item's provenance (agent, run, position, digest)
    is copied and verified too.

    Args:
        source: Where the sessions are.
        destination: Where they go; open it with ``create=True`` to create the tables.
        session_ids: Only these sessions; all of them if None.
        replace: Replace sessions that differ at the destination.
        batch_size: Rows per read and per insert.
        progress: Called as items are copied.

    Raises:
        ValueError: source and destination are the same tables.
        SessionNotFoundError: a named session is not in the source.
        VerificationError: a copy read back differently; that session was rolled back.
        StorageError: the source holds the first release's branch tables (open it once with
            ``AdvancedSQLiteSession`` to upgrade them).
    """
    infos = await source._in_id_order(session_ids, "migrate")  # noqa: SLF001 - same module's class
    src, dst = source._db, destination._db  # noqa: SLF001 - same module's class
    return await destination._run(  # noqa: SLF001 - same module's class
        "migrate",
        lambda: copy_sessions(
            src, dst, infos, replace=replace, batch=batch_size, progress=progress
        ),
    )

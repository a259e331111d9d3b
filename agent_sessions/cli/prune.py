"""``agent-sessions prune``: keep each session's newest turns, drop older whole turns in place.

Each session is opened with the class that wrote it (``SQLiteSession`` or
``AdvancedSQLiteSession`` on a file, ``SQLAlchemySession`` or ``AdvancedSQLAlchemySession`` on a
server) and pruned with its own ``prune()``: one transaction per session, system and developer
messages kept, a tool call never split from its output, and rows that cannot be decoded (encrypted
ones included) never removed.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..admin import SessionDatabase
    from ..core import StoreSession
    from ..pruning import PruneReport

__all__ = ["prune_database"]


@asynccontextmanager
async def _opener(db: SessionDatabase, target: str) -> AsyncIterator[Any]:
    """Yield ``open(session_id, advanced) -> StoreSession`` for the database; close what it made."""
    names = db.tables
    if db.path is not None:
        from ..backends.advanced.sqlite_session import AdvancedSQLiteSession  # noqa: PLC0415
        from ..backends.sqlite import SQLiteSession  # noqa: PLC0415

        path = db.path

        def open_file(session_id: str, advanced: bool) -> StoreSession:
            if advanced:
                return AdvancedSQLiteSession(
                    session_id=session_id,
                    db_path=path,
                    sessions_table=names.sessions,
                    messages_table=names.messages,
                )
            return SQLiteSession(session_id, path, names.sessions, names.messages)

        yield open_file
        return
    from ..backends._sqlalchemy_engine import SESSION_POOL, engine_from_url  # noqa: PLC0415
    from ..backends.advanced.sqlalchemy import AdvancedSQLAlchemySession  # noqa: PLC0415
    from ..backends.sqlalchemy import SQLAlchemySession  # noqa: PLC0415

    engine = engine_from_url(target, None, pool=SESSION_POOL)

    def open_server(session_id: str, advanced: bool) -> StoreSession:
        cls = AdvancedSQLAlchemySession if advanced else SQLAlchemySession
        return cls(
            session_id,
            engine=engine,
            sessions_table=names.sessions,
            messages_table=names.messages,
        )

    try:
        yield open_server
    finally:
        await engine.dispose()


async def prune_database(
    db: SessionDatabase,
    target: str,
    session_ids: Sequence[str],
    *,
    keep_last_turns: int,
    keep_system: bool = True,
    dry_run: bool = False,
    archive: bool = False,
) -> dict[str, PruneReport]:
    """Prune every listed session (all if none) of ``db``; return each session's report.

    With ``archive``, the removed turns move into each session's archive instead (refused,
    before anything is removed, for a session that keeps none: an advanced one).

    Raises:
        ValueError: ``keep_last_turns`` is below 1.
        SessionNotFoundError: a listed session does not exist.
    """
    from ..pruning import check_keep_last_turns  # noqa: PLC0415

    keep = check_keep_last_turns(keep_last_turns)
    ids = list(session_ids) or [info.session_id for info in await db.list_sessions()]
    for session_id in session_ids:
        await db.session(session_id)  # raises SessionNotFoundError
    reports: dict[str, PruneReport] = {}
    async with _opener(db, target) as open_session:
        for session_id in ids:
            advanced = await db.advanced(session_id) is not None
            session = open_session(session_id, advanced)
            try:
                reports[session_id] = await session.prune(
                    keep_last_turns=keep, keep_system=keep_system, dry_run=dry_run, archive=archive
                )
            finally:
                await session.aclose()
    return reports


def report_lines(reports: dict[str, PruneReport], location: str, *, dry_run: bool) -> list[str]:
    """The text ``agent-sessions prune`` prints."""
    from ..admin.render import counted  # noqa: PLC0415 - the admin package loads on use only

    verb = "would remove" if dry_run else "removed"
    lines = [
        f"{session_id}: {verb} {counted(r.removed_items, 'item')} in "
        f"{counted(r.removed_turns, 'turn')}, kept {r.kept_items:,}"
        + (f" ({r.kept_unreadable:,} unreadable)" if r.kept_unreadable else "")
        for session_id, r in reports.items()
    ]
    items = sum(r.removed_items for r in reports.values())
    lines.append(f"{location}: {counted(len(reports), 'session')}, {verb} {counted(items, 'item')}")
    return lines


def report_dict(reports: dict[str, PruneReport]) -> dict[str, Any]:
    """The JSON ``agent-sessions prune --json`` prints."""
    return {session_id: asdict(report) for session_id, report in reports.items()}


def add_parser(commands: Any, tables: argparse.ArgumentParser, db_help: str) -> None:
    """Add ``prune`` to the command line."""
    prune = commands.add_parser(
        "prune",
        parents=[tables],
        help="keep each session's newest turns, remove older whole turns",
        description="Remove whole turns older than each session's newest N, each session in one "
        "transaction. System and developer messages stay, a tool call stays with its output, "
        "and rows that cannot be decoded are never removed.",
    )
    prune.add_argument("db", help=db_help)
    prune.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="default: all")
    prune.add_argument(
        "--keep-last-turns", type=int, required=True, metavar="N", help="turns to keep (>= 1)"
    )
    prune.add_argument(
        "--drop-system", action="store_true", help="also remove old system/developer messages"
    )
    prune.add_argument("--dry-run", action="store_true", help="report, remove nothing")
    prune.add_argument(
        "--archive",
        action="store_true",
        help="move the removed turns into each session's archive instead of deleting them",
    )
    prune.add_argument("--json", action="store_true", help="print JSON")

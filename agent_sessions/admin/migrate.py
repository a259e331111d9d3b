"""Copy every session from one database to another, verified, and resumable.

Each session is copied in one transaction on the destination: its record, then its rows in
batches, then the rows are read back inside the same transaction and compared with what was read
from the source (count and SHA-256). A mismatch rolls the session back. An interrupted run
therefore leaves whole sessions or nothing of a session, and running it again resumes:

- a session already at the destination with the same rows is skipped (verified, not copied);
- one whose rows are a strict prefix of the source's (the source grew since it was copied) is
  copied again;
- any other difference is a conflict, left alone and reported, unless ``replace`` is set.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ..errors import VerificationError
from .advanced import present_branch_tables
from .catalogue import SessionInfo
from .db import Database
from .engine import Connection
from .rows import (
    BATCH,
    Digest,
    StoredRow,
    delete_session,
    digest_of,
    existing,
    insert_rows,
    insert_session,
    read_rows,
)

__all__ = ["MigrateReport", "copy_sessions"]

ProgressCallback = Callable[[int, int], None]
_State = Literal["identical", "partial", "different"]


@dataclass(frozen=True)
class MigrateReport:
    """What a migration did, session by session.

    Attributes:
        sessions: Sessions in the source.
        items: Items copied by this run.
        seconds: Wall-clock time taken.
        copied: Sessions copied that the destination did not have.
        identical: Sessions the destination already had, verified identical, not copied.
        redone: Sessions the destination had in part (a prefix), copied again.
        replaced: Sessions that differed at the destination and were replaced (``replace``).
        conflicts: Sessions that differ at the destination and were left alone.
        notes: Things the operator should know (tables that are not copied).
    """

    sessions: int
    items: int
    seconds: float
    copied: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    redone: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _reading(src: Database) -> AsyncIterator[Connection]:
    """A source connection whose failures name the source (the copy runs under the target's)."""
    conn = src.engine.connect()
    await src.call("read", conn.start)
    try:
        yield conn
    finally:
        await conn.close()


async def _source_rows(
    src: Database, conn: Connection, session_id: str, batch: int = BATCH
) -> AsyncIterator[list[StoredRow]]:
    """A session's rows from the source in batches, failures named after the source."""
    batches = read_rows(src, conn, session_id, batch=batch)
    while True:
        try:
            rows = await src.call("read", batches.__anext__)
        except StopAsyncIteration:
            return
        yield rows


async def _compare(src: Database, dst: Database, session_id: str) -> _State:
    """How a session at the destination relates to the source's."""
    async with dst.engine.connect() as conn:
        there = await digest_of(dst, conn, session_id)
    source, prefix = Digest(), Digest() if there.count == 0 else None
    async with _reading(src) as conn:
        async for rows in _source_rows(src, conn, session_id):
            for row in rows:
                source.add(row.text)
                if source.count == there.count:
                    prefix = source.copy()
    if source == there:
        return "identical"
    if source.count > there.count and prefix == there:
        return "partial"
    return "different"


async def _copy(
    src: Database,
    dst: Database,
    info: SessionInfo,
    *,
    present: bool,
    batch: int,
    now: datetime,
    advance: Callable[[int], None],
) -> int:
    """Copy one session in one destination transaction, verified before commit."""
    sid = info.session_id
    source = Digest()
    async with _reading(src) as reading, dst.writing() as conn:
        if present:
            await delete_session(dst, conn, sid)
        created = dst.stamp_value(info.created_at or info.first_item_at, now)
        updated = dst.stamp_value(info.updated_at or info.last_item_at, now)
        await insert_session(dst, conn, sid, created, updated)
        async for rows in _source_rows(src, reading, sid, batch):
            source.add_all(row.text for row in rows)
            await insert_rows(dst, conn, sid, [(r.text, r.created_at) for r in rows], now)
            advance(len(rows))
        copied = await digest_of(dst, conn, sid)
        if copied != source:
            raise VerificationError(
                f"session {sid!r} reads back from {dst.label} as {copied.count} items "
                f"(sha256 {copied.hexdigest()[:12]}) but {source.count} were read from "
                f"{src.label} (sha256 {source.hexdigest()[:12]}); it was rolled back"
            )
    return source.count


async def copy_sessions(
    src: Database,
    dst: Database,
    infos: list[SessionInfo],
    *,
    replace: bool = False,
    batch: int = BATCH,
    progress: ProgressCallback | None = None,
) -> MigrateReport:
    """Copy the listed sessions of ``src`` to ``dst`` (whose tables exist), in list order.

    Raises:
        ValueError: source and destination are the same tables.
    """
    if src.same_tables_as(dst):
        raise ValueError("the source and the destination are the same tables")
    if batch < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    total, done = sum(info.items for info in infos), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, max(total, done))

    async with dst.engine.connect() as conn:
        present = await existing(dst, conn, [info.session_id for info in infos])
        now = await dst.now(conn)
    copied: list[str] = []
    identical: list[str] = []
    redone: list[str] = []
    replaced: list[str] = []
    conflicts: list[str] = []
    items = 0
    for info in infos:
        sid = info.session_id
        state = await _compare(src, dst, sid) if sid in present else None
        if state == "identical" or (state == "different" and not replace):
            (identical if state == "identical" else conflicts).append(sid)
            advance(info.items)
            continue
        count = await _copy(
            src, dst, info, present=sid in present, batch=batch, now=now, advance=advance
        )
        if count < info.items:  # the source shrank since it was listed: keep the bar whole
            advance(info.items - count)
        items += count
        if state is None:
            copied.append(sid)
        elif state == "partial":
            redone.append(sid)
        else:
            replaced.append(sid)
    notes = []
    if await present_branch_tables(src):
        notes.append(
            f"{src.label} has AdvancedSQLiteSession branch and usage tables; they were not "
            "copied (only the items, as the SDK's tables hold them)"
        )
    return MigrateReport(
        notes=notes,
        sessions=len(infos),
        items=items,
        seconds=time.perf_counter() - started,
        copied=copied,
        identical=identical,
        redone=redone,
        replaced=replaced,
        conflicts=conflicts,
    )

"""Copy every session from one database to another, verified, and resumable.

Each session is copied in one transaction on the destination: its record, then its rows in
batches, then the rows are read back inside the same transaction and compared with what was read
from the source (count and SHA-256). A mismatch rolls the session back. An interrupted run
therefore leaves whole sessions or nothing of a session, and running it again resumes:

- a session already at the destination with the same rows is skipped (verified, not copied);
- one whose rows are a strict prefix of the source's (the source grew since it was copied) is
  copied again;
- any other difference is a conflict, left alone and reported, unless ``replace`` is set.

Each row's provenance (agent, run, position and digest; schema version 4) is copied with it and
verified too: a session whose rows are at the destination without it (copied before provenance
was) is copied again; one whose rows there have other provenance is a conflict.

An advanced session's branch tree (:mod:`.tree`) is read in the same source snapshot as its
rows, written in the same destination transaction under the new ids, read back and compared
too (every field but the times, which not every database keeps to the microsecond). A session
whose items are at the destination without its tree (copied before trees were) counts as
copied in part, and is copied again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..errors import VerificationError
from ..store import RowTag
from .catalogue import SessionInfo
from .db import Database
from .engine import Connection
from .records import read_tree, tree_digest, tree_records, write_tree
from .rows import (
    BATCH,
    Digest,
    StoredRow,
    delete_session,
    digest_of,
    existing,
    insert_rows,
    insert_session,
    provenance_of,
    read_rows,
)
from .side import delete_side, present_side_tables, side_records, write_side
from .tree import (
    TreeTables,
    begin,
    complete,
    delete_tree,
    ensure_tree,
    find_tree,
    item_ids,
)

__all__ = ["MigrateReport", "copy_sessions"]

ProgressCallback = Callable[[int, int], None]
_State = Literal["identical", "partial", "different"]
MAIN = "main"
"""The branch every session starts on (``agent_sessions.backends.advanced.sql.MAIN``)."""


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
        notes: Things the operator should know.
        trees: Sessions copied with their branch tree (advanced sessions).
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
    trees: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _reading(src: Database, *, snapshot: bool = False) -> AsyncIterator[Connection]:
    """A source connection whose failures name the source (the copy runs under the target's).

    With ``snapshot``, every read on it sees one state of the source (rows and tree agree).
    """
    conn = (src.snapshot_engine() if snapshot else src.engine).connect()
    await src.call("read", conn.start)
    try:
        if snapshot:
            await src.call("read", lambda: begin(src, conn))
        yield conn
    finally:
        await conn.close()


class _Trees:
    """The branch tables of both sides, if the source has any (else nothing to copy)."""

    def __init__(self, src: TreeTables | None, dst: TreeTables | None) -> None:
        self.src, self.dst = src, dst
        self.src_side: list[str] = []  # the state and archive tables each side has
        self.dst_side: list[str] = []

    async def side(self, db: Database, conn: Connection, sid: str, tables: list[str]) -> list[Any]:
        """A session's state values and archived rows, without their times (for comparing)."""
        records = await db.call("read", lambda: side_records(db, conn, sid, tables))
        return [
            {k: v for k, v in record.items() if k not in ("updated_at", "archived_at")}
            for record in records
        ]

    async def source(
        self, db: Database, conn: Connection, sid: str, ids: list[int]
    ) -> list[dict[str, Any]]:
        """The source tree's records (none without branch tables)."""
        tree = self.src
        if tree is None:
            return []
        raw = await db.call("read", lambda: read_tree(tree, conn, sid))
        return tree_records(raw, ids)

    async def destination(self, db: Database, conn: Connection, sid: str) -> list[dict[str, Any]]:
        """The destination tree's records, as it reads in ``conn``."""
        if self.dst is None:
            return []
        ids = await item_ids(db, conn, sid)
        return tree_records(await read_tree(self.dst, conn, sid), ids)


def _never_branched(records: list[dict[str, Any]]) -> bool:
    """Whether a tree holds no more than ``main``'s records of its items.

    What a session migrated without its tree has at a destination that then got the branch
    tables: none on a server, and on a SQLite file the records the tables' creation gives to
    items no session recorded (``AdvancedSQLiteSession`` does the same when it opens such a
    file). A session an advanced session wrote to has ``main``'s branch row too.
    """
    return all(r["type"] == "record" and r["branch_id"] == MAIN for r in records)


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


def _provenance_state(
    tags: list[RowTag | None], there: list[RowTag | None], *, same_rows: bool
) -> _State | None:
    """What the rows' provenance says of a copy (None: nothing; the texts decide).

    Rows copied before provenance was (untagged at the destination) are copied again, with it.
    """
    untagged_there = all(tag is None for tag in there)
    if tags[: len(there)] != there and not untagged_there:
        return "different"
    if same_rows and tags != there:
        return "partial"
    return None


async def _compare(src: Database, dst: Database, session_id: str, trees: _Trees) -> _State:
    """How a session at the destination relates to the source's."""
    async with dst.engine.connect() as conn:
        there = await digest_of(dst, conn, session_id)
        there_tags = await provenance_of(dst, conn, session_id)
        there_records = await trees.destination(dst, conn, session_id)
        there_side = await trees.side(dst, conn, session_id, trees.dst_side)
    source, prefix = Digest(), Digest() if there.count == 0 else None
    ids: list[int] = []
    tags: list[RowTag | None] = []
    async with _reading(src, snapshot=trees.src is not None) as conn:
        async for rows in _source_rows(src, conn, session_id):
            for row in rows:
                source.add(row.text)
                ids.append(row.id)
                tags.append(row.tag)
                if source.count == there.count:
                    prefix = source.copy()
        source_records = await trees.source(src, conn, session_id, ids)
        source_side = await trees.side(src, conn, session_id, trees.src_side)
    if source_side != there_side:
        return "partial" if source == there else "different"
    moved = _provenance_state(tags, there_tags, same_rows=source == there)
    if moved is not None:
        return moved
    if source == there and (
        tree_digest(source_records) == tree_digest(there_records)
        or (not source_records and _never_branched(there_records))  # both read as main's
    ):
        return "identical"
    if source.count > there.count and prefix == there:
        return "partial"
    if source == there and _never_branched(there_records):
        return "partial"  # the items were copied without their tree
    return "different"


async def _copy(
    src: Database,
    dst: Database,
    info: SessionInfo,
    trees: _Trees,
    *,
    present: bool,
    batch: int,
    now: datetime,
    advance: Callable[[int], None],
) -> tuple[int, bool]:
    """Copy one session in one destination transaction, verified before commit.

    Returns:
        The items copied, and whether a branch tree came with them.
    """
    sid = info.session_id
    source, ids = Digest(), list[int]()
    tags: list[RowTag | None] = []
    records: list[dict[str, Any]] = []
    async with _reading(src, snapshot=trees.src is not None) as reading, dst.writing() as conn:
        if present:
            await delete_session(dst, conn, sid)
        if trees.dst is not None:
            await delete_tree(trees.dst, conn, sid)  # rows a plain delete left behind, too
        await delete_side(dst, conn, sid, trees.dst_side)
        created = dst.stamp_value(info.created_at or info.first_item_at, now)
        updated = dst.stamp_value(info.updated_at or info.last_item_at, now)
        await insert_session(dst, conn, sid, created, updated)
        async for rows in _source_rows(src, reading, sid, batch):
            source.add_all(row.text for row in rows)
            ids.extend(row.id for row in rows)
            tags.extend(row.tag for row in rows)
            texts = [(r.text, r.created_at) for r in rows]
            await insert_rows(dst, conn, sid, texts, now, tags=[r.tag for r in rows])
            advance(len(rows))
        if trees.src is not None and trees.dst is not None:
            tree = trees.src
            raw = await src.call("read", lambda: read_tree(tree, reading, sid))
            records = tree_records(raw, ids)
            if records:
                new_ids = await item_ids(dst, conn, sid)
                await write_tree(dst, trees.dst, conn, sid, records, ids=new_ids)
        side = await src.call("read", lambda: side_records(src, reading, sid, trees.src_side))
        if side:
            await write_side(dst, conn, sid, side, present=trees.dst_side, now=now)
        if await trees.side(dst, conn, sid, trees.dst_side) != await trees.side(
            src, reading, sid, trees.src_side
        ):
            raise VerificationError(
                f"the state or archive of session {sid!r} reads back from {dst.label} unlike "
                f"{src.label}'s; it was rolled back"
            )
        copied = await digest_of(dst, conn, sid)
        if copied != source:
            raise VerificationError(
                f"session {sid!r} reads back from {dst.label} as {copied.count} items "
                f"(sha256 {copied.hexdigest()[:12]}) but {source.count} were read from "
                f"{src.label} (sha256 {source.hexdigest()[:12]}); it was rolled back"
            )
        if await provenance_of(dst, conn, sid) != tags:
            raise VerificationError(
                f"the provenance (agent, run, position, digest) of session {sid!r}'s items "
                f"reads back from {dst.label} unlike {src.label}'s; it was rolled back"
            )
        expected = tree_digest(records)
        written = tree_digest(await trees.destination(dst, conn, sid))
        if written != expected:
            raise VerificationError(
                f"the branch tree of session {sid!r} reads back from {dst.label} as "
                f"{written.count} records but {expected.count} were read from {src.label} "
                "(or they differ); it was rolled back"
            )
    return source.count, bool(records)


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
    source_tree = await src.call("read", lambda: find_tree(src))
    destination_tree = await find_tree(dst)
    if source_tree is not None and infos and not complete(destination_tree):
        destination_tree = await ensure_tree(dst)
    trees = _Trees(source_tree, destination_tree)
    trees.src_side = await src.call("read", lambda: present_side_tables(src))
    trees.dst_side = await present_side_tables(dst)
    # Rows with provenance, or state and archive rows, need the newest schema at the destination.
    if infos and (
        (src.provenance and not dst.provenance) or len(trees.dst_side) < len(trees.src_side)
    ):
        await dst.upgrade_schema()
        trees.dst_side = await present_side_tables(dst)
    copied_trees: list[str] = []
    copied: list[str] = []
    identical: list[str] = []
    redone: list[str] = []
    replaced: list[str] = []
    conflicts: list[str] = []
    items = 0
    for info in infos:
        sid = info.session_id
        state = await _compare(src, dst, sid, trees) if sid in present else None
        if state == "identical" or (state == "different" and not replace):
            (identical if state == "identical" else conflicts).append(sid)
            advance(info.items)
            continue
        count, tree = await _copy(
            src, dst, info, trees, present=sid in present, batch=batch, now=now, advance=advance
        )
        if tree:
            copied_trees.append(sid)
        if count < info.items:  # the source shrank since it was listed: keep the bar whole
            advance(info.items - count)
        items += count
        if state is None:
            copied.append(sid)
        elif state == "partial":
            redone.append(sid)
        else:
            replaced.append(sid)
    return MigrateReport(
        trees=copied_trees,
        sessions=len(infos),
        items=items,
        seconds=time.perf_counter() - started,
        copied=copied,
        identical=identical,
        redone=redone,
        replaced=replaced,
        conflicts=conflicts,
    )

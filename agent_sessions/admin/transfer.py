r"""Export to and import from JSON Lines, losslessly and verifiably.

The format, one JSON object per line, compact, ASCII, keys in a fixed order::

    {"format":"agent-sessions-export","version":1}
    {"type":"session","session_id":"u1","created_at":"2025-01-02 10:00:00","updated_at":"..."}
    {"type":"item","created_at":"2025-01-02 10:00:00","data":"{\"role\":\"user\",...}"}
    {"type":"end","session_id":"u1","items":1,"sha256":"..."}
    {"type":"footer","sessions":1,"items":1}

Sessions come in order of their ids (code points), items in stored order, each with its stored
text unchanged in ``data``. Each session ends with its item count and a SHA-256 of its texts
(see :class:`~agent_sessions.admin.rows.Digest`), and the footer with the totals, so a cut or
edited file is refused. Exporting, importing into an empty database and exporting again gives
identical bytes.

Format version 2
----------------

A database with the advanced sessions' branch tables is exported as version 2: each session's
items are followed by its branch tree, and its ``end`` counts those records too::

    {"format":"agent-sessions-export","version":2}
    {"type":"session",...}
    {"type":"item",...}
    {"type":"branch","branch_id":"main","parent_id":null,"cutoff":0,"created_at":"..."}
    {"type":"branch","branch_id":"retry","parent_id":"main","cutoff":4,"created_at":"..."}
    {"type":"record","item":0,"branch_id":"main","message_type":"user","sequence":1,"turn":1,
     "branch_turn":1,"tool_name":null,"created_at":"..."}
    {"type":"usage","branch_id":"main","turn":1,"requests":1,"input_tokens":30,
     "output_tokens":8,"total_tokens":38,"input_tokens_details":"{...}",
     "output_tokens_details":"{...}","created_at":"..."}
    {"type":"state","current":"retry","generation":null,"reserved":["main","retry"]}
    {"type":"end","session_id":"u1","items":6,"records":9,"sha256":"..."}

(each record on one line). Records come in this order: ``branch`` (the branches made by
reference, in the order they were made; ``cutoff`` is the index of the first of the session's
items the branch does not inherit from its parent, null for all of them), ``record`` (one per
item per branch that holds it, in the order written; ``item`` is the item's index), ``usage``
(per branch and user turn, in the order written) and at most one ``state`` (the current branch,
the clear generation and every branch id ever used). Items are named by index, never by id:
ids differ between databases, and an import maps each index to the id the item gets there.
The ``sha256`` covers the item texts and then each record's line, so an edited or cut record is
refused too. A session with no branch rows has no records (``"records":0``).

A database without branch tables is exported as version 1, byte for byte as before; version 1
files import as ever. Importing a version 2 file creates the branch tables it needs (those of
``AdvancedSQLiteSession`` on a SQLite file, of ``AdvancedSQLAlchemySession`` on a server), and
writes each session, items and tree, in one transaction; exporting again gives the same bytes.

Format version 3
----------------

A database whose sessions hold state values or archived rows is exported as version 3: after a
session's tree records come its ``kv`` records (state values, by name, stored text unchanged)
and ``archived`` records (the archive's rows, batch by batch), counted and checksummed with the
others; see :mod:`agent_sessions.admin.side`. Otherwise a file is version 1 or 2 as before.

Format version 4
----------------

A database with rows written in a run (provenance, schema version 4) is exported as version 4:
a tagged item's record carries its agent, run, position in the run and digest, before its
text::

    {"type":"item","created_at":"2025-01-02 10:00:00.123000","agent_name":"triage",
     "run_id":"job-42","run_position":0,"item_digest":"9f86d0...","data":"{...}"}

``agent_name`` is null for the caller's input; an untagged item's record is as in version 1.
The digest is copied as stored (an HMAC under ``EncryptedSession``: it cannot be recomputed
without the key). The session's ``sha256`` covers each tagged item's provenance after its text,
so an edited agent or run is refused; a run's position appears once per session. Version 4
files may hold trees and side records as versions 2 and 3 do. Importing one writes the
provenance into the destination's columns, so ``get_records()`` there returns what it returned
at the source; files of versions 1 to 3 import as before, untagged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO, cast

from ..errors import SessionExistsError, VerificationError
from ..store import RowTag
from .catalogue import SessionInfo
from .db import Database, canonical_time
from .engine import Connection
from .files import ExportTarget, finish, write
from .jsonl import (
    FORMAT,
    PROVENANCE,
    VERSION,
    Begin,
    End,
    Item,
    Scanned,
    Stream,
    Tree,
    add_item,
    encode,
    item_record,
    scan_file,
)
from .records import read_tree, tree_records, write_tree
from .rows import (
    BATCH,
    Digest,
    delete_session,
    existing,
    has_tagged_rows,
    insert_rows,
    insert_session,
)
from .rows import read_rows as stored_rows
from .side import (
    SIDE_KINDS,
    delete_side,
    has_side_rows,
    present_side_tables,
    side_records,
    write_side,
)
from .tree import (
    TreeTables,
    complete,
    delete_tree,
    ensure_tree,
    find_tree,
    item_ids,
    renew,
    snapshot,
)

__all__ = [
    "FORMAT",
    "VERSION",
    "Conflict",
    "TransferReport",
    "export_to",
    "export_to_file",
    "import_from",
    "scan_file",
]

_SIDE_VERSION = 3
"""The format version of a database with state or archive rows and no provenance."""

Conflict = Literal["error", "skip", "replace"]
"""What an import does with a session that already exists: refuse, keep it, or replace it."""
ProgressCallback = Callable[[int, int], None]
"""Called with (items done, items in all) as work advances."""


@dataclass(frozen=True)
class TransferReport:
    """What an export or an import did.

    Attributes:
        sessions: Sessions written.
        items: Items written.
        seconds: Wall-clock time taken.
        skipped: Sessions an import left alone because they existed (``skip``).
        replaced: Sessions an import replaced (``replace``).
        trees: Sessions written with their branch tree (format version 2 records).
    """

    sessions: int
    items: int
    seconds: float
    skipped: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    trees: int = 0


def _line(record: dict[str, Any]) -> str:
    return encode(record) + "\n"


class _Export:
    """Writes sessions to ``out``, with their trees if the database has branch tables."""

    def __init__(
        self,
        db: Database,
        out: TextIO,
        tree: TreeTables | None,
        total: int,
        progress: ProgressCallback | None,
        *,
        side: list[str],
        version: int,
    ) -> None:
        self.db, self.out, self.tree, self.side = db, out, tree, side
        self.version = version
        self.total, self.done, self.trees = total, 0, 0
        self.progress = progress

    async def session(self, conn: Connection, info: SessionInfo) -> None:
        """Write one session: its record, its items, its tree (version 2) and its end."""
        digest, ids = Digest(), list[int]()
        lines = [
            _line(
                {
                    "type": "session",
                    "session_id": info.session_id,
                    # A session with rows but no record gets its rows' times.
                    "created_at": canonical_time(info.created_at or info.first_item_at),
                    "updated_at": canonical_time(info.updated_at or info.last_item_at),
                }
            )
        ]
        async for rows in stored_rows(self.db, conn, info.session_id):
            for row in rows:
                tag = row.tag if self.version >= PROVENANCE else None
                add_item(digest, row.text, tag)
                ids.append(row.id)
                lines.append(_line(item_record(row.text, canonical_time(row.created_at), tag)))
            await write(self.out, "".join(lines))
            lines.clear()
            self.done += len(rows)
            if self.progress is not None:
                self.progress(self.done, max(self.total, self.done))
        end: dict[str, Any] = {"type": "end", "session_id": info.session_id, "items": len(ids)}
        if self.version > 1:
            records: list[dict[str, Any]] = []
            if self.tree is not None:
                records = tree_records(await read_tree(self.tree, conn, info.session_id), ids)
                self.trees += bool(records)
            if self.side:
                records += await side_records(self.db, conn, info.session_id, self.side)
            for record in records:
                text = encode(record)
                digest.add(text)
                lines.append(text + "\n")
            end["records"] = len(records)
        end["sha256"] = digest.hexdigest()
        lines.append(_line(end))
        await write(self.out, "".join(lines))


async def export_to(
    db: Database, out: TextIO, infos: list[SessionInfo], progress: ProgressCallback | None
) -> TransferReport:
    """Write the sessions (already ordered by id) and their rows to ``out``.

    With branch tables (format version 2) each session is read in one snapshot, so its
    tree names exactly the items written.
    """
    started = time.perf_counter()
    tree = await find_tree(db)
    side = await present_side_tables(db)
    async with db.engine.connect() as conn:
        if not await has_side_rows(db, conn, side):
            side = []  # no state, no archive: the file is version 1 or 2, as before
        tagged = await has_tagged_rows(db, conn)
    version = PROVENANCE if tagged else _SIDE_VERSION if side else 1 if tree is None else 2
    total = sum(info.items for info in infos)
    export = _Export(db, out, tree, total, progress, side=side, version=version)
    await write(out, _line({"format": FORMAT, "version": version}))
    if tree is None:
        async with db.engine.connect() as conn:
            for info in infos:
                await export.session(conn, info)
    else:
        async with snapshot(db) as conn:
            for number, info in enumerate(infos):
                if number:
                    await renew(db, conn)
                await export.session(conn, info)
    footer = {"type": "footer", "sessions": len(infos), "items": export.done}
    await write(out, _line(footer))
    await finish(out, close=False)
    seconds = time.perf_counter() - started
    return TransferReport(len(infos), export.done, seconds, trees=export.trees)


async def export_to_file(
    db: Database,
    path: Path,
    infos: list[SessionInfo],
    progress: ProgressCallback | None,
    *,
    overwrite: bool,
) -> TransferReport:
    """Export to a file under a temporary name, renamed when complete.

    A failed export therefore never leaves a file that looks whole, and never a partial one.
    The database itself, or any SQLite file, is never overwritten; another existing file only
    with ``overwrite``.
    """
    target = ExportTarget(path, db.path, overwrite=overwrite)
    out = await asyncio.to_thread(target.open)
    try:
        report = await export_to(db, out, infos, progress)
        await finish(out, close=True)
        await asyncio.to_thread(target.commit)
    finally:
        with contextlib.suppress(OSError):
            out.close()  # after a failure: the data is abandoned anyway
        target.discard()
    return report


async def import_from(
    db: Database,
    path: Path,
    sessions: list[Scanned],
    on_conflict: Conflict,
    progress: ProgressCallback | None,
) -> TransferReport:
    """Write each session of a checked export file (see :func:`scan_file`) in a transaction.

    Branch tables are created first if the file has a tree to write and the database lacks
    them (after the conflict check: a refused import writes nothing).

    Raises:
        SessionExistsError: sessions exist and ``on_conflict`` is ``error``; nothing was
            written.
        VerificationError: a session's items did not read back as written (another writer
            added to it meanwhile); that session was rolled back.
    """
    started = time.perf_counter()
    async with db.engine.connect() as conn:
        found = await existing(db, conn, [s.session_id for s in sessions])
        now = await db.now(conn)
    if found and on_conflict == "error":
        hint = "use --replace to overwrite them or --skip-existing to keep them"
        raise SessionExistsError(sorted(found), db.label, hint)
    tree = await find_tree(db)
    side = await present_side_tables(db)
    writes = [s for s in sessions if s.session_id not in found or on_conflict != "skip"]
    if any(s.trees for s in writes) and not complete(tree):
        tree = await ensure_tree(db)
    side_missing = any(s.records > s.trees for s in writes) and set(side) != {
        db.names.state,
        db.names.archive,
    }
    if (any(s.tagged for s in writes) and not db.provenance) or side_missing:
        await db.upgrade_schema()
        side = await present_side_tables(db)
    total, done, items, written, trees = sum(s.items for s in sessions), 0, 0, 0, 0
    skipped: list[str] = []
    with path.open(encoding="utf-8", newline="\n") as handle:
        stream = Stream(handle, str(path))
        while (event := await stream.next()) is not None:
            begin = cast(Begin, event)  # the file was checked: each session begins so
            if begin.session_id in found and on_conflict == "skip":
                skipped.append(begin.session_id)
                while type(skip := await stream.next()) is not End:
                    done += type(skip) is Item
            else:
                writer = _SessionWriter(db, tree, begin, now, side)
                count, records = await writer.write(stream, replace=begin.session_id in found)
                done, items, written = done + count, items + count, written + 1
                trees += bool(records)
            if progress is not None:
                progress(done, total)
    replaced = sorted(found) if on_conflict == "replace" else []
    seconds = time.perf_counter() - started
    return TransferReport(written, items, seconds, skipped, replaced, trees)


class _SessionWriter:
    """Writes one session of the stream, its items and then its tree, in one transaction."""

    def __init__(
        self, db: Database, tree: TreeTables | None, begin: Begin, now: Any, side: list[str]
    ) -> None:
        self.db, self.tree, self.begin, self.now, self.side = db, tree, begin, now, side

    async def write(self, stream: Stream, *, replace: bool) -> tuple[int, int]:
        """Write the session; return its item and tree record counts."""
        db, sid = self.db, self.begin.session_id
        count = 0
        records: list[dict[str, Any]] = []
        sides: list[dict[str, Any]] = []
        async with db.writing() as conn:
            if replace:
                await delete_session(db, conn, sid)
                await delete_side(db, conn, sid, self.side)
                if self.tree is not None:
                    await delete_tree(self.tree, conn, sid)
            created = db.stamp_value(self.begin.created_at, self.now)
            updated = db.stamp_value(self.begin.updated_at, self.now)
            await insert_session(db, conn, sid, created, updated)
            pending: list[tuple[str, str | None]] = []
            tags: list[RowTag | None] = []
            while True:
                event = await stream.next()
                if type(event) is Item:
                    pending.append((event.data, event.created_at))
                    tags.append(event.tag)
                    if len(pending) < BATCH:
                        continue
                elif type(event) is Tree:
                    kind = event.record["type"]
                    (sides if kind in SIDE_KINDS else records).append(event.record)
                    continue
                await insert_rows(db, conn, sid, pending, self.now, tags=tags)
                count += len(pending)
                pending.clear()
                tags.clear()
                if type(event) is End or event is None:
                    break
            if records and self.tree is not None:
                ids = await item_ids(db, conn, sid)
                if len(ids) != count:
                    raise VerificationError(
                        f"session {sid!r} has {len(ids)} items in {db.label} after writing "
                        f"{count}: another writer added to it; it was rolled back"
                    )
                await write_tree(db, self.tree, conn, sid, records, ids=ids)
            if sides:
                await write_side(db, conn, sid, sides, present=self.side, now=self.now)
        return count, len(records)

"""Moving a session's stored rows: read in id order, write, delete, and fingerprint them.

Rows travel as their stored text, never decoded, so encrypted and even undecodable rows are
copied exactly. Ids are not copied: the destination numbers the rows itself, in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, delete, func, insert, select

from ..errors import StorageError
from ..store import RowTag
from .db import Database, Stamp
from .engine import Connection

__all__ = [
    "Digest",
    "StoredRow",
    "count_rows",
    "delete_session",
    "digest_of",
    "existing",
    "has_tagged_rows",
    "insert_rows",
    "insert_session",
    "provenance_of",
    "read_rows",
]

BATCH = 5000
"""Rows per read and per insert: few round trips, bounded memory."""


class StoredRow(NamedTuple):
    """One stored row of a session, as it is in the database.

    Attributes:
        id: The row's id (insertion order across the database).
        text: The stored text (JSON, an encrypted envelope, or anything at all).
        created_at: When it was written.
        tag: Who wrote it (agent, run, position, digest), or None for an untagged row or a
            database without the provenance columns.
    """

    id: int
    text: str
    created_at: Stamp
    tag: RowTag | None = None


def _tag(agent: Any, run_id: Any, position: Any, digest: Any) -> RowTag | None:
    """A row's provenance columns as a tag; None unless the row was written in a run."""
    if run_id is None or position is None:
        return None
    return RowTag(
        None if agent is None else str(agent),
        str(run_id),
        int(position),
        "" if digest is None else str(digest),
    )


class Digest:
    """Count and SHA-256 of a session's rows in order; two sessions match if both agree.

    Each text is hashed with its length in front, so ``["ab", "c"]`` and ``["a", "bc"]``
    differ.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, text: str) -> None:
        """Add the next row's text."""
        data = text.encode("utf-8", "surrogatepass")
        self._hash.update(len(data).to_bytes(8, "big"))
        self._hash.update(data)
        self.count += 1

    def add_all(self, texts: Iterable[str]) -> None:
        """Add rows' texts in order."""
        for text in texts:
            self.add(text)

    def copy(self) -> Digest:
        """An independent digest of the rows added so far."""
        twin = Digest()
        twin._hash = self._hash.copy()
        twin.count = self.count
        return twin

    def hexdigest(self) -> str:
        """The SHA-256 of the rows added so far, in hex."""
        return self._hash.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Digest):
            return NotImplemented
        return self.count == other.count and self.hexdigest() == other.hexdigest()

    __hash__ = None  # type: ignore[assignment]  # mutable: not a dict key


async def read_rows(
    db: Database,
    conn: Connection,
    session_id: str,
    *,
    batch: int = BATCH,
    newest: int | None = None,
) -> AsyncIterator[list[StoredRow]]:
    """Yield a session's rows oldest first, in batches (id ranges, so each is an index range).

    Args:
        db: The database.
        conn: A connection to read on.
        session_id: The session.
        batch: Rows per batch.
        newest: Only the newest this many rows (still oldest first).
    """
    m = db.tagged_messages if db.provenance else db.messages
    after = -1
    if newest is not None:
        # The id just below the newest N rows, so the ranges below start there.
        edge = (
            select(m.c.id)
            .where(m.c.session_id == session_id)
            .order_by(m.c.id.desc())
            .offset(newest)
            .limit(1)
        )
        found = (await conn.execute(edge)).scalar()
        after = -1 if found is None else int(found)
    columns = [m.c.id, m.c.message_data, m.c.created_at]
    if db.provenance:
        columns += [m.c.agent_name, m.c.run_id, m.c.run_position, m.c.item_digest]
    query = (
        select(*columns)
        .where(m.c.session_id == session_id, m.c.id > bindparam("after", type_=Integer))
        .order_by(m.c.id)
        .limit(batch)
    )
    while True:
        rows = [
            StoredRow(int(found[0]), str(found[1]), found[2], _tag(*found[3:]))
            if db.provenance
            else StoredRow(int(found[0]), str(found[1]), found[2])
            for found in await conn.execute(query, {"after": after})
        ]
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        after = rows[-1].id


async def insert_session(
    db: Database, conn: Connection, session_id: str, created_at: Any, updated_at: Any
) -> None:
    """Write a session record with the given times (already in the database's form)."""
    s = db.sessions
    await conn.execute(
        insert(s).values(session_id=session_id, created_at=created_at, updated_at=updated_at)
    )


async def insert_rows(
    db: Database,
    conn: Connection,
    session_id: str,
    rows: Sequence[tuple[str, Stamp]],
    default_time: datetime,
    *,
    tags: Sequence[RowTag | None] = (),
) -> None:
    """Append rows (text and time) to a session in one executemany, keeping their order.

    Args:
        db: The database.
        conn: The caller's transaction.
        session_id: The session.
        rows: Each row's text and time.
        default_time: The time of rows without one.
        tags: Each row's provenance (None: untagged), in the order of ``rows``; empty for none.

    Raises:
        StorageError: rows have provenance and the messages table has no columns for it.
    """
    if not rows:
        return
    tagged = [tag for tag in tags if tag is not None]
    if tagged and not db.provenance:
        raise StorageError(
            f"{db.label} has no provenance columns in {db.names.messages} for the rows' agent "
            "and run: open it once with a session of agent_sessions (schema version 4) first"
        )
    values: list[dict[str, Any]] = [
        {
            "session_id": session_id,
            "message_data": data,
            "created_at": db.stamp_value(stamp, default_time),
        }
        for data, stamp in rows
    ]
    if db.provenance:
        padded = [*tags, *([None] * (len(rows) - len(tags)))]
        for value, tag in zip(values, padded, strict=True):
            value["agent_name"] = None if tag is None else tag.agent_name
            value["run_id"] = None if tag is None else tag.run_id
            value["run_position"] = None if tag is None else tag.position
            value["item_digest"] = None if tag is None else tag.digest
    await conn.execute(insert(db.tagged_messages if db.provenance else db.messages), values)


async def delete_session(db: Database, conn: Connection, session_id: str) -> int:
    """Delete a session's rows and record; return how many rows it had."""
    m, s = db.messages, db.sessions
    deleted = (await conn.execute(delete(m).where(m.c.session_id == session_id))).rowcount
    await conn.execute(delete(s).where(s.c.session_id == session_id))
    return int(deleted or 0)


async def existing(db: Database, conn: Connection, session_ids: Sequence[str]) -> set[str]:
    """Which of the given sessions have a record or rows in the database."""
    s, m = db.sessions, db.messages
    found: set[str] = set()
    for start in range(0, len(session_ids), 500):  # bounded IN lists
        chunk = list(session_ids[start : start + 500])
        query = (
            select(s.c.session_id)
            .where(s.c.session_id.in_(chunk))
            .union(select(m.c.session_id).where(m.c.session_id.in_(chunk)))
        )
        found.update(str(row[0]) for row in await conn.execute(query))
    return found


async def has_tagged_rows(db: Database, conn: Connection) -> bool:
    """Whether any row of the messages table was written in a run (has provenance)."""
    if not db.provenance:
        return False
    m = db.tagged_messages
    query = select(m.c.id).where(m.c.run_id.is_not(None)).limit(1)
    return (await conn.execute(query)).first() is not None


async def digest_of(db: Database, conn: Connection, session_id: str) -> Digest:
    """The digest of a session's rows as stored now."""
    digest = Digest()
    async for rows in read_rows(db, conn, session_id):
        digest.add_all(row.text for row in rows)
    return digest


async def provenance_of(db: Database, conn: Connection, session_id: str) -> list[RowTag | None]:
    """Each of a session's rows' provenance as stored now, oldest first (None: untagged)."""
    found: list[RowTag | None] = []
    async for rows in read_rows(db, conn, session_id):
        found.extend(row.tag for row in rows)
    return found


async def count_rows(db: Database, conn: Connection, session_id: str) -> int:
    """How many rows a session has."""
    m = db.messages
    query = select(func.count(m.c.id)).where(m.c.session_id == session_id)
    return int((await conn.execute(query)).scalar_one())

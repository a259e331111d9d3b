"""Retention: delete sessions whose last activity is older than a given age.

Each session is deleted in its own short transaction, which first locks the session's record and
checks again that it is still inactive. A live application is therefore never blocked for long,
a session that received an item after it was listed is kept, and an interrupted purge leaves
every session whole (deleted or not), never half of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text, update

from .advanced import present_branch_tables
from .catalogue import MAX_AGE, Filters, SessionInfo, check_age, listing, to_info
from .db import Database, canonical_time
from .rows import delete_session
from .side import present_side_tables

__all__ = ["PurgeReport", "parse_age", "purge_sessions"]

_AGE = re.compile(r"\s*(\d+)\s*([mhdw])\s*", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(value: str) -> timedelta:
    """Parse an age such as ``30d``, ``12h``, ``90m`` or ``2w``.

    Args:
        value: A whole number followed by ``m`` (minutes), ``h`` (hours), ``d`` (days) or
            ``w`` (weeks).

    Returns:
        The age as a ``timedelta``.

    Raises:
        ValueError: the text is not such an age, is zero, or is longer than 100 years.
    """
    match = _AGE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"invalid age {value!r}: use a number and a unit, such as 90m, 12h, 30d or 2w"
        )
    amount = int(match[1])
    if amount == 0:
        raise ValueError(f"invalid age {value!r}: it must be more than zero")
    unit = _UNITS[match[2].lower()]
    too_long = f"invalid age {value!r}: at most 100 years ({MAX_AGE.days}d)"
    if amount > MAX_AGE // timedelta(**{unit: 1}):  # before timedelta() overflows
        raise ValueError(too_long)
    return timedelta(**{unit: amount})


@dataclass(frozen=True)
class PurgeReport:
    """What a purge deleted, or would delete.

    Attributes:
        cutoff: Sessions last active before this moment (database clock) were purged.
        dry_run: Nothing was deleted; ``sessions`` lists what would have been.
        sessions: The sessions purged (or to be purged), least recently active first.
        kept: Sessions listed at first that became active before their turn came.
    """

    cutoff: datetime
    dry_run: bool
    sessions: list[SessionInfo] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    @property
    def items(self) -> int:
        """Items in the purged sessions."""
        return sum(info.items for info in self.sessions)

    @property
    def bytes(self) -> int:
        """Bytes of stored text in the purged sessions."""
        return sum(info.bytes for info in self.sessions)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "cutoff": canonical_time(self.cutoff),
            "dry_run": self.dry_run,
            "sessions": [info.to_dict() for info in self.sessions],
            "kept": self.kept,
            "items": self.items,
            "bytes": self.bytes,
        }


async def purge_sessions(db: Database, age: timedelta, *, dry_run: bool) -> PurgeReport:
    """Delete (or, dry, list) the sessions inactive for longer than ``age``."""
    check_age(age, "older_than")
    async with db.engine.connect() as conn:
        cutoff = await db.now(conn) - age
        stale = Filters(inactive_before=cutoff)
        rows = await conn.execute(listing(db, stale, sort="activity"))
        candidates = [to_info(row) for row in rows]
    if dry_run:
        return PurgeReport(cutoff, True, candidates)
    extra = [*await present_branch_tables(db), *await present_side_tables(db)]
    purged: list[SessionInfo] = []
    kept: list[str] = []
    s = db.sessions
    for info in candidates:
        sid = info.session_id
        async with db.writing() as conn:
            # Lock the record, then check again: an item added meanwhile keeps the session.
            await conn.execute(
                update(s).where(s.c.session_id == sid).values(updated_at=s.c.updated_at)
            )
            again = Filters(session_ids=[sid], inactive_before=cutoff)
            if (await conn.execute(listing(db, again))).first() is None:
                kept.append(sid)
                continue
            await delete_session(db, conn, sid)
            for table in extra:
                await conn.execute(
                    text(f"DELETE FROM {table} WHERE session_id = :sid"), {"sid": sid}
                )
        purged.append(info)
    return PurgeReport(cutoff, False, purged, kept)

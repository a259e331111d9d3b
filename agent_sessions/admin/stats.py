"""Store statistics: size on disk, totals, the largest sessions, and growth per day."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, cast, func, select, text, union

from .catalogue import SessionInfo, byte_length
from .db import Database, canonical_time, parse_time
from .engine import Connection

__all__ = ["DayGrowth", "StoreStats", "collect"]


@dataclass(frozen=True)
class DayGrowth:
    """What one day added to the store.

    Attributes:
        day: The day, ``YYYY-MM-DD``, in the database's clock.
        items: Rows written that day (still stored).
        bytes: Their size in bytes.
    """

    day: str
    items: int
    bytes: int


@dataclass(frozen=True)
class StoreStats:
    """The numbers to watch before a store grows to gigabytes unnoticed.

    Attributes:
        location: The file path or URL (password hidden).
        dialect: ``sqlite``, ``postgresql`` or ``mysql``.
        size_bytes: Space the two tables take: the SQLite file and its WAL, or the tables
            with their indexes on a server (an estimate on MySQL/MariaDB). None if unknown.
        wal_bytes: The SQLite WAL file's size; None elsewhere.
        free_bytes: SQLite pages that are free and would be returned by ``VACUUM``.
        sessions: Sessions in the store.
        items: Stored rows.
        data_bytes: Bytes of stored text.
        first_activity: The oldest timestamp in the tables.
        last_activity: The newest timestamp in the tables.
        largest: The largest sessions by bytes, largest first.
        per_day: Rows written on each of the last days, oldest day first (days with none
            included).
    """

    location: str
    dialect: str
    size_bytes: int | None
    wal_bytes: int | None
    free_bytes: int | None
    sessions: int
    items: int
    data_bytes: int
    first_activity: datetime | None
    last_activity: datetime | None
    largest: list[SessionInfo] = field(default_factory=list)
    per_day: list[DayGrowth] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The statistics as JSON-ready values."""
        return {
            "location": self.location,
            "dialect": self.dialect,
            "size_bytes": self.size_bytes,
            "wal_bytes": self.wal_bytes,
            "free_bytes": self.free_bytes,
            "sessions": self.sessions,
            "items": self.items,
            "data_bytes": self.data_bytes,
            "first_activity": canonical_time(self.first_activity),
            "last_activity": canonical_time(self.last_activity),
            "largest": [info.to_dict() for info in self.largest],
            "per_day": [{"day": g.day, "items": g.items, "bytes": g.bytes} for g in self.per_day],
        }


def _day(db: Database, column: Any) -> Any:
    if db.is_sqlite:
        return func.substr(column, 1, 10)
    if db.dialect == "postgresql":
        return cast(column, Date)
    return func.date(column)


async def _sizes(db: Database, conn: Connection) -> tuple[int | None, int | None, int | None]:
    """Size on disk, WAL size and free space, as far as each database tells."""
    names = (db.names.sessions, db.names.messages)
    if db.is_sqlite:
        if db.path is None:
            return None, None, None
        wal = db.path.with_name(db.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.is_file() else 0
        page = (await conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
        free = (await conn.exec_driver_sql("PRAGMA freelist_count")).scalar_one()
        return db.path.stat().st_size + wal_bytes, wal_bytes, int(page) * int(free)
    if db.dialect == "postgresql":
        quote = db.engine.dialect.identifier_preparer.quote
        query = text(
            "SELECT pg_total_relation_size(CAST(:s AS regclass)) "
            "+ pg_total_relation_size(CAST(:m AS regclass))"
        )
        size = (await conn.execute(query, {"s": quote(names[0]), "m": quote(names[1])})).scalar()
        return (None if size is None else int(size)), None, None
    query = text(
        "SELECT SUM(data_length + index_length) FROM information_schema.TABLES "
        "WHERE table_schema = DATABASE() AND table_name IN (:s, :m)"
    )
    size = (await conn.execute(query, {"s": names[0], "m": names[1]})).scalar()
    return (None if size is None else int(size)), None, None


async def collect(db: Database, largest: list[SessionInfo], days: int) -> StoreStats:
    """Gather the statistics of a database whose tables exist.

    Args:
        db: The database.
        largest: Its largest sessions, already listed by the caller.
        days: How many days of growth to report, today included.
    """
    s, m = db.sessions, db.messages
    async with db.engine.connect() as conn:
        size, wal, free = await _sizes(db, conn)
        ids = union(select(s.c.session_id), select(m.c.session_id)).subquery()
        sessions = (await conn.execute(select(func.count()).select_from(ids))).scalar_one()
        items, data, first_item, last_item = (
            await conn.execute(
                select(
                    func.count(m.c.id),
                    func.coalesce(func.sum(byte_length(db, m.c.message_data)), 0),
                    func.min(m.c.created_at),
                    func.max(m.c.created_at),
                )
            )
        ).one()
        first_record, last_record = (
            await conn.execute(select(func.min(s.c.created_at), func.max(s.c.updated_at)))
        ).one()
        today = (await db.now(conn)).date()
        start = today - timedelta(days=max(days, 1) - 1)
        day = _day(db, m.c.created_at)
        grouped = await conn.execute(
            select(day, func.count(m.c.id), func.sum(byte_length(db, m.c.message_data)))
            .where(m.c.created_at >= db.stamp_param(datetime.combine(start, datetime.min.time())))
            .group_by(day)
        )
        counted = {str(d)[:10]: (int(n), int(b or 0)) for d, n, b in grouped}
    known_first = [t for t in map(parse_time, (first_item, first_record)) if t is not None]
    known_last = [t for t in map(parse_time, (last_item, last_record)) if t is not None]
    return StoreStats(
        location=db.label,
        dialect=db.dialect,
        size_bytes=size,
        wal_bytes=wal,
        free_bytes=free,
        sessions=int(sessions),
        items=int(items),
        data_bytes=int(data),
        first_activity=min(known_first) if known_first else None,
        last_activity=max(known_last) if known_last else None,
        largest=largest,
        per_day=[DayGrowth(d, *counted.get(d, (0, 0))) for d in _days(start, today)],
    )


def _days(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]

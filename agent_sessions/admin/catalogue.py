"""The session catalogue: one row per session with its size and activity, filtered and paged.

A session is any id in the sessions table or the messages table, so rows written without a
session record (by hand, or by an older tool) are listed too. Counts and sizes include rows that
cannot be decoded: they are stored, and they take space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, LargeBinary, Select, case, cast, func, or_, select, union
from sqlalchemy.sql.elements import KeyedColumnElement

from ..serialization import JsonCodec
from .db import Database, canonical_time, parse_time
from .filters import agent_condition, where_condition

__all__ = [
    "MAX_AGE",
    "Filters",
    "SearchHit",
    "SessionInfo",
    "SortKey",
    "age_filters",
    "check_age",
    "count",
    "listing",
    "search",
]

SortKey = Literal["id", "activity", "created", "items", "size"]
"""What ``list_sessions`` orders by: id, last activity, first activity, item count, bytes."""

_JSON = JsonCodec()


@dataclass(frozen=True)
class SessionInfo:
    """One session of a database, as the catalogue lists it.

    Times are naive, in the database's clock (UTC for SQLite files written by our sessions).

    Attributes:
        session_id: The session's id.
        items: How many rows it stores, decodable or not.
        bytes: The size of their stored text, in bytes.
        created_at: When its session record was created; None if it has no record.
        updated_at: When its session record was last touched; None if it has no record.
        first_item_at: When its oldest stored row was written; None if it has no rows.
        last_item_at: When its newest stored row was written; None if it has no rows.
        metadata: Its metadata (``session.update_metadata``) when stored in plaintext.
        metadata_status: ``none``, ``plain``, ``encrypted`` (sealed by ``EncryptedSession``:
            not readable here) or ``unreadable`` (not a JSON object).
    """

    session_id: str
    items: int
    bytes: int
    created_at: datetime | None
    updated_at: datetime | None
    first_item_at: datetime | None
    last_item_at: datetime | None
    metadata: dict[str, Any] | None = None
    metadata_status: str = "none"

    @property
    def first_activity(self) -> datetime | None:
        """The earlier of the record's creation and the oldest row."""
        known = [t for t in (self.created_at, self.first_item_at) if t is not None]
        return min(known) if known else None

    @property
    def last_activity(self) -> datetime | None:
        """The later of the record's last update and the newest row: what purges go by."""
        known = [t for t in (self.updated_at, self.last_item_at) if t is not None]
        return max(known) if known else None

    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-ready values (times as ``YYYY-MM-DD HH:MM:SS[.ffffff]``)."""
        return {
            "session_id": self.session_id,
            "items": self.items,
            "bytes": self.bytes,
            "created_at": canonical_time(self.created_at),
            "updated_at": canonical_time(self.updated_at),
            "first_item_at": canonical_time(self.first_item_at),
            "last_item_at": canonical_time(self.last_item_at),
            "last_activity": canonical_time(self.last_activity),
            "metadata": self.metadata,
            "metadata_status": self.metadata_status,
        }


@dataclass(frozen=True)
class SearchHit:
    """A stored row whose text contains a search term.

    Attributes:
        session_id: The session the row belongs to.
        item_id: The row's id (its position in the database's insertion order).
        created_at: When the row was written.
        text: The row's stored text.
    """

    session_id: str
    item_id: int
    created_at: datetime | None
    text: str


@dataclass(frozen=True)
class Filters:
    """Which sessions a listing includes; every condition given must hold."""

    session_ids: Sequence[str] | None = None
    prefix: str | None = None
    inactive_before: datetime | None = None
    active_since: datetime | None = None
    min_items: int = 0
    min_bytes: int = 0
    agent: str | None = None
    """Only sessions with a row this agent wrote."""
    where: Mapping[str, Any] | None = None
    """Only sessions whose metadata matches, compared in SQL (see :mod:`.filters`)."""


MAX_AGE = timedelta(days=36525)
"""The longest age a filter or purge takes (100 years): its cutoff is a date every database
stores, so a typo such as ``99999999d`` is refused instead of overflowing the calendar."""


def check_age(age: timedelta, name: str = "age") -> timedelta:
    """Return ``age`` if it is positive and at most :data:`MAX_AGE`.

    Raises:
        ValueError: it is zero, negative, or longer than 100 years.
    """
    if age <= timedelta(0):
        raise ValueError(f"{name} must be a positive age, got {age}")
    if age > MAX_AGE:
        raise ValueError(
            f"{name} must be at most 100 years ({MAX_AGE.days}d), got {age.days:,} days"
        )
    return age


async def age_filters(
    db: Database, older_than: timedelta | None, newer_than: timedelta | None, **rest: Any
) -> Filters:
    """Filters whose ages are turned into moments by the database's own clock."""
    now: datetime | None = None
    for age, name in ((older_than, "older_than"), (newer_than, "newer_than")):
        if age is not None:
            check_age(age, name)
    if older_than is not None or newer_than is not None:
        async with db.engine.connect() as conn:
            now = await db.now(conn)
    return Filters(
        inactive_before=None if now is None or older_than is None else now - older_than,
        active_since=None if now is None or newer_than is None else now - newer_than,
        **rest,
    )


def byte_length(db: Database, column: Any) -> ColumnElement[Any]:
    """The size of a text column in bytes, on each dialect."""
    if db.is_sqlite:
        return func.length(cast(column, LargeBinary))
    if db.dialect == "postgresql":
        return func.octet_length(column)
    return func.length(column)  # MySQL/MariaDB: LENGTH counts bytes


def _later(a: Any, b: Any) -> ColumnElement[Any]:
    """The later of two nullable times (GREATEST is not portable, and MySQL's drops NULLs)."""
    return case((a.is_(None), b), (b.is_(None), a), (a > b, a), else_=b)


class _Columns:
    """The catalogue query's columns, shared by listing and counting."""

    def __init__(self, db: Database, filters: Filters) -> None:
        s, m = db.sessions, db.messages
        from_sessions = select(s.c.session_id.label("session_id"))
        from_messages = select(m.c.session_id.label("session_id"))
        totals = select(
            m.c.session_id,
            func.count(m.c.id).label("items"),
            func.sum(byte_length(db, m.c.message_data)).label("bytes"),
            func.min(m.c.created_at).label("first_item"),
            func.max(m.c.created_at).label("last_item"),
        ).group_by(m.c.session_id)
        # The id conditions go inside each part, so one session is an index lookup.
        if filters.session_ids is not None:
            wanted = list(filters.session_ids)
            from_sessions = from_sessions.where(s.c.session_id.in_(wanted))
            from_messages = from_messages.where(m.c.session_id.in_(wanted))
            totals = totals.where(m.c.session_id.in_(wanted))
        if filters.prefix:
            from_sessions = from_sessions.where(
                s.c.session_id.startswith(filters.prefix, autoescape=True)
            )
            from_messages = from_messages.where(
                m.c.session_id.startswith(filters.prefix, autoescape=True)
            )
            totals = totals.where(m.c.session_id.startswith(filters.prefix, autoescape=True))
        ids = union(from_sessions, from_messages).subquery("ids")
        agg = totals.subquery("agg")
        self.joined = ids.outerjoin(s, s.c.session_id == ids.c.session_id).outerjoin(
            agg, agg.c.session_id == ids.c.session_id
        )
        self.session_id: KeyedColumnElement[Any] = ids.c.session_id
        self.created_at, self.updated_at = s.c.created_at, s.c.updated_at
        self.items = func.coalesce(agg.c["items"], 0)
        self.bytes = func.coalesce(agg.c["bytes"], 0)
        self.first_item, self.last_item = agg.c.first_item, agg.c.last_item
        self.last_activity = _later(s.c.updated_at, agg.c.last_item)
        self.first_activity = case(
            (s.c.created_at.is_(None), agg.c.first_item),
            (agg.c.first_item.is_(None), s.c.created_at),
            (s.c.created_at < agg.c.first_item, s.c.created_at),
            else_=agg.c.first_item,
        )
        self.conditions: list[ColumnElement[bool]] = []
        if filters.inactive_before is not None:
            cutoff = db.stamp_param(filters.inactive_before)
            self.conditions.append(self.last_activity < cutoff)
        if filters.active_since is not None:
            since = db.stamp_param(filters.active_since)
            self.conditions.append(self.last_activity >= since)
        if filters.min_items > 0:
            self.conditions.append(self.items >= filters.min_items)
        if filters.min_bytes > 0:
            self.conditions.append(self.bytes >= filters.min_bytes)
        if filters.agent is not None:
            self.conditions.append(agent_condition(db, self.session_id, filters.agent))
        if filters.where:
            self.conditions.append(where_condition(db, self.session_id, filters.where))

    def select(self) -> Select[Any]:
        return (
            select(
                self.session_id,
                self.items,
                self.bytes,
                self.created_at,
                self.updated_at,
                self.first_item,
                self.last_item,
            )
            .select_from(self.joined)
            .where(*self.conditions)
        )


def listing(
    db: Database,
    filters: Filters,
    *,
    sort: SortKey = "id",
    descending: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> Select[Any]:
    """The query that lists sessions, one row per session."""
    columns = _Columns(db, filters)
    keys: dict[str, Any] = {
        "id": columns.session_id,
        "activity": columns.last_activity,
        "created": columns.first_activity,
        "items": columns.items,
        "size": columns.bytes,
    }
    if sort not in keys:
        raise ValueError(f"cannot sort by {sort!r}; choose one of {', '.join(keys)}")
    key = keys[sort].desc() if descending else keys[sort].asc()
    tie = columns.session_id.desc() if descending else columns.session_id.asc()
    order = [key] if sort == "id" else [key, tie]
    query = columns.select().order_by(*order).offset(offset)
    return query if limit is None else query.limit(limit)


def count(db: Database, filters: Filters) -> Select[Any]:
    """The query that counts the sessions a listing with ``filters`` would return."""
    return select(func.count()).select_from(_Columns(db, filters).select().subquery())


def to_info(row: Sequence[Any]) -> SessionInfo:
    """Turn a row of :func:`listing` into a :class:`SessionInfo`."""
    session_id, items, size, created, updated, first, last = row
    return SessionInfo(
        session_id=str(session_id),
        items=int(items),
        bytes=int(size),
        created_at=parse_time(created),
        updated_at=parse_time(updated),
        first_item_at=parse_time(first),
        last_item_at=parse_time(last),
    )


def _escaped(term: str) -> str:
    """``term`` as it appears inside a stored JSON string."""
    # The codec encodes it inside a one-key object: '{"":"<escaped>"}'.
    probe: Any = {"": term}
    return _JSON.encode(probe)[5:-2]


def search(db: Database, term: str, limit: int, after_id: int = 0) -> Select[Any]:
    r"""The query for rows whose stored text contains ``term``, case-insensitively, oldest first.

    Rows are stored as ASCII JSON, where "café" is ``caf\u00e9`` and a quote is ``\"``, so
    the term is looked for both as typed and as it appears inside a JSON string. The text
    includes the JSON keys: :func:`says` then keeps the rows whose item text holds the term.
    """
    m = db.messages
    # Non-ASCII letters are stored escaped, where SQL's lower() cannot fold them: look for the
    # term's lower and upper case forms too.
    needles = {term, *(_escaped(form) for form in (term, term.lower(), term.upper()))}
    match = or_(*(m.c.message_data.icontains(n, autoescape=True) for n in sorted(needles)))
    return (
        select(m.c.session_id, m.c.id, m.c.created_at, m.c.message_data)
        .where(match, m.c.id > after_id)
        .order_by(m.c.id)
        .limit(limit)
    )


_STRUCTURE = frozenset({"type", "role", "status", "id", "call_id"})
"""Keys whose values name an item's shape or link items, not what was said."""


def _texts(value: object, key: str | None = None) -> list[str]:
    if isinstance(value, str):
        return [] if key in _STRUCTURE else [value]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in _texts(v, k)]
    if isinstance(value, list):
        return [text for v in value for text in _texts(v, key)]
    return []


def says(text: str, term: str) -> bool:
    """Whether a stored row's item text (its string values, not keys or type names) holds ``term``.

    Case-insensitive. A row that is not a JSON item (an encrypted one) never matches.
    """
    try:
        item = _JSON.decode(text)
    except ValueError:
        return False
    folded = term.casefold()
    return any(folded in part.casefold() for part in _texts(item))


def to_hit(row: Sequence[Any]) -> SearchHit:
    """Turn a row of :func:`search` into a :class:`SearchHit`."""
    session_id, item_id, created, data = row
    return SearchHit(str(session_id), int(item_id), parse_time(created), str(data))

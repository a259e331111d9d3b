"""Sessions' metadata as the admin API reads it: shown in listings and filtered by key.

A session's metadata (``session.update_metadata``) is one row of the state table, under the
name :data:`~agent_sessions.metadata.METADATA_STATE`, holding a JSON object. The filter of
``list_sessions(where=...)`` compares top-level keys for equality in SQL where the dialect can
(:mod:`.filters`); here is the Python comparison that defines it and serves the rest, after one
query that reads only the metadata rows of the pair. Metadata sealed by ``EncryptedSession``
is listed as encrypted and never matches a filter; a row that is not a JSON object is listed
as unreadable and never matches either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sqlalchemy import text

from ..metadata import METADATA_STATE, RESERVED_KEY
from .db import Database

__all__ = [
    "MetadataStatus",
    "MetadataView",
    "check_where",
    "matches",
    "matching_sessions",
    "read_metadata",
    "view",
]

MetadataStatus = Literal["none", "plain", "encrypted", "unreadable"]
"""What a listing knows of a session's metadata: none stored, readable, sealed, or broken."""

MetadataView = tuple[MetadataStatus, dict[str, Any] | None]
"""A session's metadata status and, when ``plain``, its object."""

_CHUNK = 500


def view(stored: str | None) -> MetadataView:
    """Classify one stored metadata value."""
    if stored is None:
        return ("none", None)
    try:
        value = json.loads(stored)
    except ValueError:
        return ("unreadable", None)
    if not isinstance(value, dict):
        return ("unreadable", None)
    if RESERVED_KEY in value:
        return ("encrypted", None)
    return ("plain", value)


async def _rows(db: Database, session_ids: list[str] | None) -> list[tuple[str, str]]:
    if db.names.state not in await db.table_names():
        return []
    sql = f"SELECT session_id, value FROM {db.names.state} WHERE name = :name"
    found: list[tuple[str, str]] = []
    async with db.engine.connect() as conn:
        if session_ids is None:
            result = await conn.execute(text(sql), {"name": METADATA_STATE})
            return [(str(s), str(v)) for s, v in result if v is not None]
        for start in range(0, len(session_ids), _CHUNK):
            chunk = session_ids[start : start + _CHUNK]
            marks = ", ".join(f":s{i}" for i in range(len(chunk)))
            params: dict[str, Any] = {f"s{i}": sid for i, sid in enumerate(chunk)}
            params["name"] = METADATA_STATE
            result = await conn.execute(text(f"{sql} AND session_id IN ({marks})"), params)
            found += [(str(s), str(v)) for s, v in result if v is not None]
    return found


async def read_metadata(db: Database, session_ids: Iterable[str]) -> dict[str, MetadataView]:
    """The metadata of these sessions (``("none", None)`` where none is stored)."""
    wanted = list(dict.fromkeys(session_ids))
    views: dict[str, MetadataView] = dict.fromkeys(wanted, ("none", None))
    if wanted:
        for sid, stored in await _rows(db, wanted):
            views[sid] = view(stored)
    return views


def check_where(where: Mapping[str, Any]) -> None:
    """Refuse a filter that cannot match anything meaningful.

    Raises:
        ValueError: a key is empty.
        TypeError: a value is not JSON-compatible.
    """
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata filter key {key!r} must be a non-empty string")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata filter value for {key!r} is not JSON: {exc}") from None


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0 but True != 1, as the stored text would compare.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def matches(stored: str | None, where: Mapping[str, Any]) -> bool:
    """Whether stored metadata is plaintext with every ``key == value`` of ``where``."""
    status, value = view(stored)
    if status != "plain" or value is None:
        return False
    return all(k in value and _equal(value[k], v) for k, v in where.items())


async def matching_sessions(db: Database, where: Mapping[str, Any]) -> list[str]:
    """The ids of sessions whose plaintext metadata has every ``key == value`` of ``where``."""
    check_where(where)
    return [sid for sid, stored in await _rows(db, None) if matches(stored, where)]

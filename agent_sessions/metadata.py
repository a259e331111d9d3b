"""Per-session metadata: a small JSON object of your own fields, kept beside the history.

Every session class of this package has :meth:`SessionMetadata.get_metadata` and
:meth:`SessionMetadata.update_metadata` (the "custom state fields" of a LangGraph state schema,
or the labels an operator lists sessions by)::

    await session.update_metadata(user="alice", plan="pro", tags=["vip"])
    await session.update_metadata(plan=None)        # None removes a key
    await session.get_metadata()                    # {"user": "alice", "tags": ["vip"]}

The object is stored through the session's per-session state storage under the name
:data:`METADATA_STATE`: an update is merged in one transaction, so concurrent updates of
different keys (tasks, processes) all land. Values are validated as JSON before anything is
written. Under ``EncryptedSession`` the object is sealed like the items: it is then not readable
or filterable by ``SessionDatabase.list_sessions(where=...)`` (listed as encrypted). A store
without per-session state raises :class:`~agent_sessions.errors.StorageError`; under
``EncryptedSession`` over one of the SDK's classes, a ``TypeError``. ``RedisSession`` keeps
metadata like the SQL backends (its admin listing does not show it yet).

Public API:
    - :class:`SessionMetadata`: the two methods, mixed into every session class of this package.
    - :data:`METADATA_STATE`: the state name the object is stored under.
    - :func:`check_metadata`: the validation ``update_metadata`` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import CorruptItemError
from .serialization import JSONValue, encode_state

__all__ = ["METADATA_STATE", "RESERVED_KEY", "SessionMetadata", "check_metadata"]

METADATA_STATE = "agent_sessions.metadata"
"""The per-session state name the metadata object is stored under."""

RESERVED_KEY = "__enc__"
"""The one key refused: it marks an encrypted envelope in the stored text."""


def check_metadata(fields: Mapping[str, object]) -> dict[str, JSONValue]:
    """Return ``fields`` as metadata changes, or raise before anything is written.

    Args:
        fields: Keys to set (a JSON value) or to remove (None).

    Raises:
        TypeError: a value is not JSON-compatible (``ItemValidationError``).
        ValueError: a key is empty or the reserved ``__enc__``.
    """
    changes: dict[str, JSONValue] = {}
    for key, value in fields.items():
        if not key or key == RESERVED_KEY:
            raise ValueError(f"metadata key {key!r} is not allowed")
        if value is not None:
            encode_state(value, f"{METADATA_STATE}[{key!r}]")
        changes[key] = value  # type: ignore[assignment]  # validated just above
    return changes


class SessionMetadata:
    """``get_metadata`` and ``update_metadata``, on top of the per-session state storage."""

    session_id: str

    if TYPE_CHECKING:

        async def _read_state(self, name: str) -> Any: ...

        async def _update_state(self, name: str, change: Any) -> Any: ...

    async def get_metadata(self) -> dict[str, JSONValue]:
        """Return this session's metadata; ``{}`` when none was stored.

        Raises:
            CorruptItemError: the stored object is not a JSON object (strict session), or
                cannot be decoded; it stays stored.
            StorageError: the session's store keeps no per-session state.
        """
        value = await self._read_state(METADATA_STATE)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise CorruptItemError(self.session_id, "the stored metadata is not a JSON object")
        return value

    async def update_metadata(self, **fields: JSONValue) -> dict[str, JSONValue]:
        """Merge ``fields`` into this session's metadata in one transaction; return the result.

        A value of None removes that key; when no key is left the stored object is deleted.
        Concurrent updates of different keys, from tasks or processes, all land.

        Args:
            **fields: Top-level keys and their JSON values (dict, list, str, int, finite
                float, bool) or None.

        Returns:
            The metadata after the update.

        Raises:
            TypeError: a value is not JSON-compatible; nothing was written.
            ValueError: a key is the reserved ``__enc__``; nothing was written.
            CorruptItemError: the stored object cannot be read; it is not overwritten.
            StorageError: the session's store keeps no per-session state.

        Example:
            >>> # await session.update_metadata(user="alice", plan="pro")
            >>> # {'user': 'alice', 'plan': 'pro'}
        """
        changes = check_metadata(fields)
        session_id = self.session_id

        def merge(old: JSONValue | None) -> JSONValue | None:
            if old is not None and not isinstance(old, dict):
                raise CorruptItemError(session_id, "the stored metadata is not a JSON object")
            merged = dict(old or {})
            for key, value in changes.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return merged or None

        new = await self._update_state(METADATA_STATE, merge)
        return dict(new) if isinstance(new, dict) else {}

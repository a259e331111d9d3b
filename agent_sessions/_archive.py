"""The archive: what compaction and pruning take out of a history, kept and restorable.

Compaction (``CompactingSession``) and ``prune(archive=True)`` move the rows they take out of a
session's history into the archive table beside it, in the transaction that changes the
history: a crash leaves either the old history, or the new one with its archive. The rows are
archived as stored (an encrypted row stays sealed), in batches numbered 1, 2, ... per session.
:func:`uncompact` puts the newest compaction's items back in place of its summary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from ._lifecycle import run_to_completion
from .errors import StorageError
from .serialization import Codec, decode_or_report
from .store import MAX_LIMIT, ArchiveStore, Store, archives_own_rows

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["ArchivedItem", "ArchivingSession", "archive_store", "archived_items", "uncompact"]

T = TypeVar("T")
_TRIES = 20
"""How often ``uncompact`` reads the history again when writers keep changing it."""


@dataclass(frozen=True)
class ArchivedItem:
    """One item taken out of a session's history and kept in its archive.

    Attributes:
        item: The item, as it was stored (decrypted under ``EncryptedSession``).
        batch: Which archiving it came from: 1 for the session's first, 2 for the next...
        kind: ``"compaction"`` (replaced by a summary) or ``"prune"`` (pruned with
            ``archive=True``).
        archived_at: When it was archived, in the database's clock (``YYYY-MM-DD HH:MM:SS``).
    """

    item: TResponseInputItem
    batch: int
    kind: str
    archived_at: str


class ArchivingSession(Protocol):
    """What the archive functions need of a session: a ``StoreSession`` has it all."""

    @property
    def session_id(self) -> str:
        """The conversation."""
        ...

    @property
    def store(self) -> Store:
        """Where its rows live."""
        ...

    @property
    def strict(self) -> bool:
        """Whether an undecodable archived row raises instead of being skipped."""
        ...

    @property
    def _codec(self) -> Codec:
        """How its rows decode."""
        ...


def archive_store(store: Store, method: str) -> ArchiveStore:
    """The store as an :class:`~agent_sessions.store.ArchiveStore`, or a clear error.

    Raises:
        StorageError: the store keeps no archive for the rows it reads (a store of another
            package, or a subclass laying rows out its own way).
    """
    if not archives_own_rows(store):
        raise StorageError(
            f"{method}: {type(store).__name__} keeps no archive of its history "
            "(see docs/compaction.md, 'The archive')"
        )
    return store


async def _settled(awaitable: Awaitable[T]) -> T:
    result, cancelled = await run_to_completion(awaitable)
    if cancelled:
        raise asyncio.CancelledError
    return result


async def archived_items(session: ArchivingSession) -> list[ArchivedItem]:
    """Return the session's archived items, oldest first (summaries are not among them).

    An archived row that cannot be decoded is skipped with a logged warning, or raises
    :class:`~agent_sessions.errors.CorruptItemError` when the session is strict.
    """
    store = archive_store(session.store, "archived_items")
    found: list[ArchivedItem] = []
    for row in await store.archived(session.session_id):
        if row.role != "item":
            continue
        codec = session._codec  # noqa: SLF001 - the session's own codec (encrypting or not)
        item = decode_or_report(
            row.text, session_id=session.session_id, strict=session.strict, codec=codec
        )
        if item is not None:
            found.append(ArchivedItem(item, row.batch, row.kind, row.archived_at))
    return found


async def uncompact(session: ArchivingSession) -> int:
    """Undo the newest compaction still archived, in one transaction; see the module docstring.

    Returns:
        How many items were restored; 0 when no compaction is archived.

    Raises:
        StorageError: the store keeps no archive, the newest compaction's summary is no longer
            at the start of the history (it was removed or replaced since), or writers kept
            changing the history.
    """
    store = archive_store(session.store, "uncompact")
    session_id = session.session_id
    for _ in range(_TRIES):
        rows = await store.archived(session_id)
        numbers = [row.batch for row in rows if row.kind == "compaction"]
        if not numbers:
            return 0
        newest = max(numbers)
        items = [r.text for r in rows if r.batch == newest and r.role == "item"]
        summary = [r.text for r in rows if r.batch == newest and r.role == "summary"]
        history, _ = await store.tail(session_id, MAX_LIMIT - 1)
        if not history or [text for _, text in history[: len(summary)]] != summary:
            raise StorageError(
                f"uncompact on session {session_id!r}: the summary of compaction {newest} is no "
                "longer at the start of the history; nothing was restored"
            )
        texts = items + [text for _, text in history[len(summary) :]]
        if await _settled(store.unarchive(session_id, history, texts, newest)):
            return len(items)
    raise StorageError(
        f"uncompact on session {session_id!r}: the history kept changing ({_TRIES} tries); "
        "nothing was restored"
    )

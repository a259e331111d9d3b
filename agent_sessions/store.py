"""The ``Store`` protocol: the few storage primitives one backend implements.

A store holds the rows of many sessions in one database. It knows nothing of items, limits or
validation: it moves stored text in and out, each mutation in one transaction. Everything else
(the session protocol, limit semantics, encoding, lifecycle) is built once on top of it in
:mod:`agent_sessions.core`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NamedTuple,
    Protocol,
    TypeGuard,
    TypeVar,
    runtime_checkable,
)

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = [
    "ArchiveBatch",
    "ArchiveStore",
    "ArchivedRow",
    "Popped",
    "ProvenanceStore",
    "RowStore",
    "RowTag",
    "StateStore",
    "Store",
    "StoredRecord",
    "Taker",
    "always",
    "archives_own_rows",
    "tag_columns",
    "tag_time",
    "tagged_values",
    "tags_own_rows",
    "time_text",
    "unstored",
]

T = TypeVar("T")


class Popped(NamedTuple, Generic[T]):
    """A row a store removed by ``pop``, with what the caller's decoder made of it."""

    row_id: int
    text: str
    item: T


def always(item: object) -> bool:
    """A ``stop`` for :meth:`Store.pop_through` that stops at the first decodable row."""
    return True


class Taker(Generic[T]):
    """Collects the rows a ``pop_through`` removes, fed newest first; backends share it.

    Args:
        decode: Returns a row's item, or None to pass over the row (it stays stored).
        stop: Whether an item is the last one to take.
    """

    def __init__(self, decode: Callable[[str], T | None], stop: Callable[[T], bool]) -> None:
        self._decode = decode
        self._stop = stop
        self.taken: list[Popped[T]] = []
        self.done = False

    def feed(self, row_id: int, text: str) -> bool:
        """Consider the next older row; return True once the ``stop`` item was taken."""
        item = self._decode(text)
        if item is not None:
            self.taken.append(Popped(row_id, text, item))
            self.done = self._stop(item)
        return self.done

    def result(self) -> list[Popped[T]]:
        """The rows to remove, newest first: all taken ones if ``stop`` was met, else none."""
        return self.taken if self.done else []


class Store(Protocol):
    """Storage primitives for many sessions in one database.

    Every method may raise :class:`~agent_sessions.errors.StorageError`; after ``aclose`` every
    method raises :class:`~agent_sessions.errors.SessionClosedError`.
    """

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of a session (all if None), oldest first."""
        ...

    def append(self, session_id: str, texts: Sequence[str]) -> Awaitable[None]:
        """Store rows after the session's newest row, all in one transaction.

        If the caller is cancelled, the rows must end up either all stored or none stored.
        An ``async def`` implements it; so does a plain method that queues the write and
        returns a :class:`~agent_sessions.core.Settling` future (no task per call).
        """
        ...

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove and return the newest row that ``decode`` accepts, in one transaction.

        Rows for which ``decode`` returns None stay stored and are passed over. If ``decode``
        raises, nothing is removed and the error propagates.
        """
        ...

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove, in one transaction, the newest rows down to the first item ``stop`` accepts.

        Rows for which ``decode`` returns None stay stored and are passed over. If no item is
        accepted by ``stop``, nothing is removed. Feeding a :class:`Taker` newest first does it.

        Returns:
            The removed rows, newest first.
        """
        ...

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Put popped rows back in their places, in one transaction (a pop's caller was cancelled).

        ``popped`` is what one ``pop`` or ``pop_through`` returned. Readers see all of the rows
        back or none of them. Rows that a clear of the session removed after the pop stay
        removed: a restore never brings back what a later clear deleted.
        """
        ...

    async def clear(self, session_id: str) -> None:
        """Delete every row of a session and its session record, in one transaction."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections; idempotent."""
        ...


@runtime_checkable
class RowStore(Store, Protocol):
    """A store that can also list and rewrite a session's rows by id.

    Maintenance works through it: re-encrypting under a new key, purging expired rows, export.
    Every store of this package implements it.
    """

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Return every row of a session as ``(row_id, text)``, oldest first."""
        ...

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text (or delete the rows whose new text is None), in one transaction.

        Ids that are not (or no longer) rows of the session are passed over.

        Returns:
            How many rows were changed or deleted.
        """
        ...


MAX_LIMIT = 2**63 - 1
"""The largest limit every database accepts; a larger one means the same: every item."""


def is_user_message(item: TResponseInputItem) -> bool:
    """Whether an item is a user's message: where a turn (an exchange) begins."""
    return item.get("role") == "user" and item.get("type", "message") == "message"


@runtime_checkable
class SuffixStore(Protocol):
    """A store that can swap the newest rows of a session in one transaction (optional).

    With it, a session supports the SDK's suffix compaction: ``OpenAIResponsesCompactionSession``
    compacts only the exchange it saw, even when older history is hidden from the model. The
    store's own class must define ``replace_tail``: a subclass that lays rows out differently
    (branches) does not inherit the capability by accident.
    """

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the newest ``limit`` rows as ``(row_id, text)``, oldest first.

        Returns:
            The rows, and whether they are all of the session's rows.
        """
        ...

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the newest rows if they are exactly ``expected``, in one transaction.

        The ``expected`` rows are deleted and ``texts`` appended; if the caller is cancelled,
        the swap ends up either done or not done.

        Returns:
            Whether the rows were swapped (False if the tail changed meanwhile).
        """
        ...


def defining_class(cls: type, name: str) -> type | None:
    """The class of ``cls``'s MRO that defines attribute ``name`` itself (None: none)."""
    return next((klass for klass in cls.__mro__ if name in klass.__dict__), None)


_OWNED: dict[tuple[type, str], bool] = {}
"""The answers of :func:`_owns` so far, by class and method (they depend on the class only)."""


def _owns(cls: type, capability: type, method: str, anchor: str) -> bool:
    """Whether ``cls`` has ``capability`` from the class that also defines ``anchor``.

    Cached per class, as the check is on hot paths (an ``isinstance`` of a runtime protocol
    costs about ten microseconds).
    """
    known = _OWNED.get((cls, method))
    if known is None:
        owner = defining_class(cls, method)
        known = (
            issubclass(cls, capability)
            and owner is not None
            and owner is defining_class(cls, anchor)
        )
        _OWNED[(cls, method)] = known
    return known


def swaps_own_rows(store: object) -> TypeGuard[SuffixStore]:
    """Whether ``store`` can swap rows in one transaction, for the rows it reads.

    The class that defines ``replace_tail`` must also define ``read``: a subclass that lays
    rows out differently (branches) does not inherit the capability by accident.
    """
    return _owns(type(store), SuffixStore, "replace_tail", "read")


@runtime_checkable
class StateStore(Protocol):
    """A store that keeps small named values per session beside its history (optional).

    Values are stored text (the codec's JSON, or an envelope); each call is one transaction in
    the database of the history, and :meth:`Store.clear` deletes a session's values too.
    """

    async def read_state(self, session_id: str, name: str) -> str | None:
        """Return the text stored under ``name`` for the session, or None."""
        ...

    async def write_state(self, session_id: str, name: str, text: str | None) -> None:
        """Store ``text`` under ``name`` (None deletes it), in one transaction."""
        ...

    async def update_state(
        self, session_id: str, name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read, change and write one value in one transaction that holds it locked.

        ``change`` gets the stored text (None if there is none) and returns the new text (None
        deletes). It may run on a worker thread; if it raises, nothing is written and the error
        propagates. Concurrent updates of one value, from any task or process, queue: each sees
        the one before it.

        Returns:
            What ``change`` returned.
        """
        ...


class ArchiveBatch(NamedTuple):
    """Rows that leave a history together, to be archived in the same transaction.

    Attributes:
        kind: ``"compaction"`` or ``"prune"``.
        items: The stored texts taken out of the history, oldest first.
        summary: The stored texts that replaced them (a compaction's summary), kept so an
            ``uncompact`` can find them again.
    """

    kind: str
    items: Sequence[str]
    summary: Sequence[str] = ()


class ArchivedRow(NamedTuple):
    """One archived row as a store returns it."""

    batch: int
    """The session's archive batch (1, 2, ... in the order they were archived)."""
    kind: str
    role: str
    """``"item"`` (taken out of the history) or ``"summary"`` (what replaced the items)."""
    text: str
    archived_at: str


@runtime_checkable
class ArchiveStore(SuffixStore, Protocol):
    """A store that keeps what compaction and pruning take out of a history (optional).

    Every method is one transaction; :meth:`Store.clear` deletes a session's archive too.
    """

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows, oldest batch first, in order within a batch."""
        ...

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """``SuffixStore.replace_tail`` that also archives ``batch`` in the same transaction."""
        ...

    async def rewrite_archiving(
        self, session_id: str, changes: Mapping[int, str | None], batch: ArchiveBatch
    ) -> int:
        """``RowStore.rewrite`` that also archives ``batch`` in the same transaction."""
        ...

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """``replace_tail`` that also deletes archive batch ``batch``, in one transaction."""
        ...


def archives_own_rows(store: object) -> TypeGuard[ArchiveStore]:
    """Whether ``store`` archives the rows it reads (not a branch layout it inherited)."""
    return _owns(type(store), ArchiveStore, "replace_tail_archiving", "read")


class RowTag(NamedTuple):
    """Where a row came from, stored beside it by :meth:`ProvenanceStore.append_tagged`."""

    agent_name: str | None
    """The agent that produced the item; None for the caller's own input."""
    run_id: str
    """The run the item belongs to: stable across a retry of the same run."""
    position: int
    """The item's place among the run's items on this session (0, 1, ...)."""
    digest: str
    """A digest of the item (keyed under encryption): tells a retry from a different item."""


class StoredRecord(NamedTuple):
    """A row as :meth:`ProvenanceStore.records` returns it; provenance None where not recorded."""

    text: str
    agent_name: str | None
    run_id: str | None
    position: int | None
    created_at: str | None
    """When the row was written, as the database keeps it (UTC, ISO-like text), or None."""

    @classmethod
    def from_columns(
        cls, text: object, agent: Any, run: Any, position: Any, at: object
    ) -> StoredRecord:
        """A record from a SQL row's columns, as drivers return them (times: see ``time_text``)."""
        return cls(
            str(text),
            agent,
            run,
            None if position is None else int(position),
            time_text(at),
        )


def time_text(value: object) -> str | None:
    """A stored time as text (naive datetimes are UTC, as tagged writes store them)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def tag_time(*, as_text: bool) -> object:
    """The time a tagged row records: now in UTC, as the database takes it.

    ``as_text``: SQLite's form, text to the millisecond; else a naive UTC ``datetime``.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.isoformat(sep=" ", timespec="milliseconds") if as_text else now


def tag_columns(tags: Sequence[RowTag]) -> tuple[list[str | None], list[int], list[str]]:
    """The tags' agents, positions and digests, one list each (for array parameters)."""
    return (
        [tag.agent_name for tag in tags],
        [tag.position for tag in tags],
        [tag.digest for tag in tags],
    )


def tagged_values(
    session_id: str, rows: Sequence[tuple[str, RowTag]]
) -> list[tuple[str, str, str | None, str, int, str]]:
    """Each tagged row as ``(session, text, agent, run, position, digest)`` parameters."""
    return [
        (session_id, text, tag.agent_name, tag.run_id, tag.position, tag.digest)
        for text, tag in rows
    ]


def unstored(
    rows: Sequence[tuple[str, RowTag]], stored: dict[int, str]
) -> tuple[list[tuple[str, RowTag]], RowTag | None]:
    """The tagged rows whose positions the run has not stored, given its stored digests.

    Returns:
        The rows to insert, and the first tag whose position the run stored with another
        digest (then nothing must be written; None if there is none).
    """
    new: list[tuple[str, RowTag]] = []
    for text, tag in rows:
        digest = stored.get(tag.position)
        if digest is None:
            stored[tag.position] = tag.digest
            new.append((text, tag))
        elif digest != tag.digest:
            return [], tag
    return new, None


@runtime_checkable
class ProvenanceStore(Protocol):
    """A store that records who wrote each row and stores a run's rows once (optional).

    Every store of this package implements it. Rows appended with :meth:`Store.append` (and
    every row the SDK's classes write) carry no provenance: their tag fields read back None.
    """

    def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> Awaitable[int]:
        """Append rows with their tags after the newest row, in one transaction.

        A row whose ``(run_id, position)`` is already stored for the session with the same
        digest is not stored again (a retry); the others are appended in order. Concurrent
        calls with the same tags, from any task or process, store one copy.

        ``fresh`` promises that no row of the run is stored at these positions (the run id was
        minted in this process and the positions never handed out before): the store may
        insert without looking, as a plain :meth:`Store.append` does. Ignoring it is correct.

        Returns:
            How many rows were stored (0: the whole batch was stored before).

        Raises:
            ProvenanceConflictError: a ``(run_id, position)`` is stored with another digest;
                nothing was written.
        """
        ...

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the newest ``limit`` rows with their provenance (all if None), oldest first."""
        ...


def tags_own_rows(store: object) -> TypeGuard[ProvenanceStore]:
    """Whether ``store`` records provenance for the rows it appends (not a layout it inherited).

    The class that defines ``append_tagged`` must also define ``append``: a subclass that
    appends differently (branches) does not inherit the capability by accident.
    """
    return _owns(type(store), ProvenanceStore, "append_tagged", "append")

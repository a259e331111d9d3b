"""The session protocol, built once over any :class:`~agent_sessions.store.Store`.

Every public session class is a :class:`StoreSession` with a backend-specific store. This module
owns what must behave the same on every backend: limit semantics, validation of items before any
write, decoding with no silent loss, cancellation safety of mutations, and the lifecycle.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    TypeVar,
    cast,
)

from agents.items import TResponseInputItem
from agents.memory import SessionABC
from agents.memory.session_settings import SessionSettings, coerce_session_settings
from agents.run_context import RunContextWrapper

from ._lifecycle import AsyncClosing, Closing, run_to_completion
from .errors import (
    CorruptItemError,
    InvalidLimitError,
    InvalidSessionIdError,
    SessionClosedError,
    StorageError,
)
from .metadata import SessionMetadata
from .pending_runs import PendingRuns
from .provenance import (
    SessionRecord,
    current_agent_name,
    item_digests,
    read_records,
    run_ledger,
    write_tagged,
)
from .serialization import (
    Codec,
    JsonCodec,
    JSONValue,
    SkipRow,
    decode_or_report,
    decode_rows,
    decode_state,
    encode_items,
    encode_state,
    logger,
)
from .store import (
    MAX_LIMIT,
    ArchiveBatch,
    ProvenanceStore,
    StateStore,
    Store,
    SuffixStore,
    archives_own_rows,
    is_user_message,
    swaps_own_rows,
    tags_own_rows,
)

if TYPE_CHECKING:
    from ._archive import ArchivedItem
    from .pruning import PruneReport

try:  # the SDK's compaction hook type (private to the SDK, so optional here)
    from agents.memory.session import _CompactionSnapshot
except ImportError:  # pragma: no cover - an SDK without suffix compaction
    _CompactionSnapshot = None  # type: ignore[assignment,misc]

__all__ = [
    "MAX_LIMIT",
    "MAX_SESSION_ID_LENGTH",
    "SessionState",
    "StoreSession",
    "SuffixStore",
    "check_session_id",
    "check_state_name",
    "is_tail",
    "is_user_message",
    "read_items",
    "resolve_limit",
    "run_to_completion",
    "tail_fetch",
    "tail_window",
]

T = TypeVar("T")
_S = TypeVar("_S", bound="StoreSession")


class SessionState(enum.Enum):
    """Where a session is in its life: usable, or closed for good."""

    OPEN = "open"
    CLOSED = "closed"


MAX_SESSION_ID_LENGTH = 255
"""The longest session id (in characters) that every backend stores, MariaDB's key included."""


def resolve_limit(limit: int | None, settings: SessionSettings | None) -> int | None:
    """Return the effective read limit: the explicit one, else the settings' one, else None.

    A limit above :data:`MAX_LIMIT` is lowered to it, so any int ``>= 0`` behaves the same
    on every backend (no driver sees a number it cannot bind).

    Raises:
        InvalidLimitError: the limit is not None or a non-negative int (a ``ValueError``).
    """
    if limit is None and settings is not None:
        limit = settings.limit
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidLimitError(f"limit must be None or an int >= 0, got {limit!r}")
    return min(limit, MAX_LIMIT)


def check_session_id(session_id: object) -> None:
    """Refuse a session id before anything is written, the same way on every backend.

    Raises:
        TypeError: ``session_id`` is not a str.
        InvalidSessionIdError: it holds a NUL character or a lone surrogate, or is longer than
            :data:`MAX_SESSION_ID_LENGTH` characters (a ``ValueError``).
    """
    if not isinstance(session_id, str):
        raise TypeError(f"session_id must be a str, got {type(session_id).__name__}")
    problem = _session_id_problem(session_id)
    if problem is not None:
        raise InvalidSessionIdError(f"session_id {session_id[:80]!r} cannot be stored: {problem}")


def _session_id_problem(session_id: str) -> str | None:
    if "\x00" in session_id:
        return "it holds a NUL character, which PostgreSQL cannot store"
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        return (
            f"it is {len(session_id)} characters long; the limit is {MAX_SESSION_ID_LENGTH} "
            "(the longest key MariaDB/MySQL store)"
        )
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"character {exc.start} is a lone surrogate, which has no UTF-8 form"
    return None


def check_state_name(name: object) -> str:
    """Refuse a state name before anything is written: a str every backend stores as given.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: it is empty, holds a NUL or a lone surrogate, or is over 255 characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"a state name must be a str, got {type(name).__name__}")
    problem = "it is empty" if not name else _session_id_problem(name)
    if problem is not None:
        raise ValueError(f"state name {name[:80]!r} cannot be stored: {problem}")
    return name


def coerce_settings(settings: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    """Accept settings the way the SDK does: an instance, a dict of its fields, or None.

    Raises:
        TypeError: a dict names a field ``SessionSettings`` does not have (a typo such as
            ``limitt`` would otherwise be ignored silently).
    """
    if settings is None:
        return SessionSettings()
    return coerce_session_settings(settings)


_DECODE_CHUNK = 5_000
"""Rows decoded between two yields to the loop (a few milliseconds of work)."""


async def _decode_in_chunks(
    decode: Callable[[list[str]], list[TResponseInputItem]], texts: list[str]
) -> list[TResponseInputItem]:
    """Decode rows, yielding to the loop between chunks so a long history never holds it."""
    if len(texts) <= _DECODE_CHUNK:
        return decode(texts)
    items: list[TResponseInputItem] = []
    for start in range(0, len(texts), _DECODE_CHUNK):
        if start:
            await asyncio.sleep(0)
        items += decode(texts[start : start + _DECODE_CHUNK])
    return items


async def read_items(
    read: Callable[[int | None], Awaitable[list[str]]],
    decode: Callable[[list[str]], list[TResponseInputItem]],
    wanted: int | None,
) -> list[TResponseInputItem]:
    """Return the newest ``wanted`` decodable items (all if None), oldest first.

    Args:
        read: Returns the newest ``n`` stored rows (all if None), oldest first.
        decode: Decodes rows, leaving out the ones it cannot (or must not) return.
        wanted: How many items to return; None for all.
    """
    if wanted == 0:
        await asyncio.sleep(0)  # like every call of ours, let the loop's other tasks run
        return []
    if wanted is None:
        return await _decode_in_chunks(decode, await read(None))
    window = wanted
    while True:
        texts = await read(window)
        items = await _decode_in_chunks(decode, texts)
        # Undecodable rows are skipped, so widen the window until `wanted` valid items are
        # found or the history runs out.
        if len(items) >= wanted or len(texts) < window:
            return items[-wanted:]
        window = min(window * 2, MAX_LIMIT)


def tail_fetch(limit: int) -> int:
    """How many newest rows a ``tail`` fetches: one past ``limit``, to tell whether more exist."""
    return min(limit, MAX_LIMIT - 1) + 1


def tail_window(
    newest_first: Sequence[Sequence[Any]], limit: int
) -> tuple[list[tuple[int, str]], bool]:
    """Turn the rows a ``tail`` fetched, newest first, into its result (oldest first, complete?)."""
    chosen = [(int(row_id), text) for row_id, text in newest_first[:limit]]
    chosen.reverse()
    return chosen, len(newest_first) <= limit


def is_tail(newest_first: Sequence[Sequence[Any]], expected: Sequence[tuple[int, str]]) -> bool:
    """Whether rows read newest first are exactly ``expected`` (oldest first, not empty)."""
    found = [(int(row_id), text) for row_id, text in reversed(newest_first)]
    return bool(expected) and found == list(expected)


if _CompactionSnapshot is not None:

    @dataclass(frozen=True)
    class ArchivingSnapshot(_CompactionSnapshot):
        """The SDK's snapshot, plus a swap that archives the compacted prefix with it.

        ``archive_prefix(cut, output, summary)`` replaces the whole window by ``output`` and
        archives its first ``cut`` rows, ``output[:summary]`` being their summary, in one
        transaction; False if the window changed meanwhile. ``CompactingSession`` uses it.
        """

        archive_prefix: Callable[[int, list[TResponseInputItem], int], Awaitable[bool]] | None = (
            None
        )


_PROTOCOL = ("get_items", "add_items", "pop_item", "clear_session")
_REPLACE_TRIES = 20
"""How often ``replace_items`` reads the history again when writers keep changing it."""


class StoreSession(SessionMetadata, PendingRuns, AsyncClosing, SessionABC):
    """A session of the SDK's protocol over a :class:`~agent_sessions.store.Store`.

    Subclasses choose the store; everything a caller sees is defined here once. Every session
    class is an ``agents.memory.SessionABC``, like the SDK's own.

    Args:
        session_id: The conversation this object reads and writes.
        store: Where the rows live; any :class:`~agent_sessions.store.Store`.
        owns_store: Close the store when the session closes (False for a shared store).
        session_settings: Read defaults, as a ``SessionSettings`` or a dict of its fields.
        strict: Raise :class:`~agent_sessions.errors.CorruptItemError` on an undecodable row
            instead of skipping it with a logged warning.
        codec: How items become stored text; compact JSON by default.
        digest_key: Key the item digests provenance stores (a retry's fingerprint) with
            HMAC-SHA-256, so they tell nothing of the items; None: plain SHA-256.

    Example:
        >>> from agent_sessions.testing import DictStore
        >>> session = StoreSession("demo", DictStore(), owns_store=True)

    Attributes:
        session_id: The conversation this object reads and writes.
        session_settings: Defaults for reads; ``session_settings.limit`` caps ``get_items()``.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: Store,
        *,
        owns_store: bool,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        strict: bool = False,
        codec: Codec | None = None,
        digest_key: bytes | None = None,
    ) -> None:
        check_session_id(session_id)
        self.session_id = session_id
        self.session_settings = coerce_settings(session_settings)
        self.strict = strict
        self._store = store
        self._owns_store = owns_store
        self._codec = codec or JsonCodec()
        self._state = SessionState.OPEN
        self._digest_key = digest_key

    @property
    def store(self) -> Store:
        """The store this session reads and writes (shared with other sessions, maybe)."""
        return self._store

    @property
    def state(self) -> SessionState:
        """Whether the session is open or closed."""
        return self._state

    def _check_open(self, method: str) -> None:
        if self._state is SessionState.CLOSED:
            name = type(self).__name__
            raise SessionClosedError(
                f"{name} is closed: {name}.{method}() was called after the session was closed"
            )

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the session's items, oldest first.

        Args:
            limit: Return only the newest ``limit`` items (still oldest first). None means
                ``session_settings.limit``, and if that is None too, every item.
            wrapper: The run context the SDK's ``Runner`` passes; not needed to read.

        Returns:
            Fresh item dicts; changing them does not change what is stored.

        Raises:
            InvalidLimitError: ``limit`` is negative or not an int.
            CorruptItemError: a stored row is undecodable and the session is strict.
        """
        self._check_open("get_items")
        wanted = resolve_limit(limit, self.session_settings)
        return await read_items(
            lambda n: self._store.read(self.session_id, n), self._decode, wanted
        )

    def _decode(self, texts: list[str]) -> list[TResponseInputItem]:
        return decode_rows(texts, session_id=self.session_id, strict=self.strict, codec=self._codec)

    async def get_records(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[SessionRecord]:
        """Return the session's items with who wrote them, oldest first.

        The same items, order and limit semantics as :meth:`get_items`; each comes with the
        agent, run, position and time recorded when it was stored (None where not recorded:
        rows written without a run context, or by the SDK's classes).

        Args:
            limit: Return only the newest ``limit`` records; None as in :meth:`get_items`.
            wrapper: The run context the SDK's ``Runner`` passes; not needed to read.

        Raises:
            InvalidLimitError: ``limit`` is negative or not an int.
            CorruptItemError: a stored row is undecodable and the session is strict.
        """
        self._check_open("get_records")
        wanted = resolve_limit(limit, self.session_settings)
        store = self._store
        if isinstance(store, ProvenanceStore):
            tagged = store
            return await read_records(
                lambda n: tagged.records(self.session_id, n), self._decode_for_pop, wanted
            )
        items = await self.get_items(wanted)  # a store that records nothing: items alone
        return [SessionRecord(item, None, None, None, None) for item in items]

    async def add_items(
        self,
        items: Sequence[TResponseInputItem],
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        """Append items in one transaction: all of them are stored, or none.

        Every item is validated before anything is written. A caller cancelled mid-write leaves
        the batch either whole or absent, never in part.

        With a run context (the ``wrapper`` the SDK's ``Runner`` passes, or inside
        :func:`~agent_sessions.provenance.as_run`), each row records its agent, run, position
        and time, and a batch already stored for the same run and positions stores nothing new:
        a retried write is not stored twice. A retry whose items differ from what its run
        stored (a model that answered differently) keeps both: the new items go after the
        run's stored ones.

        Args:
            items: Items in the SDK's input format (JSON-compatible dicts).
            wrapper: The run context of the ``Runner`` writing them.

        Raises:
            ItemValidationError: an item is not storable; its index is named (a ``TypeError``).
        """
        self._check_open("add_items")
        texts = encode_items(items, self._codec)
        if not texts:
            return
        ledger = run_ledger(wrapper)
        if ledger is not None and tags_own_rows(self._store):
            plain = texts if type(self._codec) is JsonCodec else encode_items(items)
            digests = item_digests(plain, self._digest_key)
            tags, fresh = ledger.tags(self.session_id, digests, current_agent_name(ledger))
            await write_tagged(self._store, self.session_id, texts, tags, ledger, fresh=fresh)
            return
        # A cancelled caller leaves the batch whole or absent, and settled: the write runs to
        # its end before the cancellation is raised, so a caller that retries cannot store the
        # batch twice.
        _, cancelled = await run_to_completion(self._store.append(self.session_id, texts))
        if cancelled:
            raise asyncio.CancelledError

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item, or None if there is none.

        An undecodable row is never returned and never removed: the newest decodable item is
        popped instead. If the caller is cancelled, the item is either still stored or returned.
        ``wrapper`` (the ``Runner``'s run context) is accepted and not needed.
        """
        self._check_open("pop_item")
        popped, cancelled = await run_to_completion(
            self._store.pop(self.session_id, self._decode_for_pop)
        )
        if cancelled:
            if popped is not None:
                await run_to_completion(self._store.restore(self.session_id, [popped]))
            raise asyncio.CancelledError
        return None if popped is None else cast(TResponseInputItem, popped.item)

    async def pop_turn(self) -> list[TResponseInputItem]:
        """Undo the last exchange: remove the newest user message and every item after it.

        All of them go in one transaction, so a chat UI's undo never leaves half an exchange.
        Undecodable rows are passed over and stay stored, as with :meth:`pop_item`. If the
        caller is cancelled, the items are either all still stored or all returned.

        Returns:
            The removed items, oldest first (the user message first); ``[]`` if the session
            holds no user message, in which case nothing is removed.
        """
        self._check_open("pop_turn")
        popped, cancelled = await run_to_completion(
            self._store.pop_through(self.session_id, self._decode_for_pop, is_user_message)
        )
        if cancelled:
            if popped:  # all at once: no reader sees part of the exchange back
                await run_to_completion(self._store.restore(self.session_id, popped))
            raise asyncio.CancelledError
        return [cast(TResponseInputItem, row.item) for row in reversed(popped)]

    def _decode_for_pop(self, text: str) -> TResponseInputItem | None:
        return decode_or_report(
            text, session_id=self.session_id, strict=self.strict, codec=self._codec
        )

    async def replace_items(
        self, items: Sequence[TResponseInputItem], *, drop_unreadable: bool = False
    ) -> None:
        """Replace the whole history with ``items`` in one transaction.

        What compaction needs: a crash or a cancellation leaves either the old history or the
        new one, never an empty or half-written session. A writer that adds or pops meanwhile
        is not overwritten: the history is read again and the swap retried. On an advanced
        session it is the current branch's history; forks keep what they showed.

        Args:
            items: The new history; validated before anything is written.
            drop_unreadable: Also drop stored rows that cannot be decoded (corrupt, tampered,
                wrong key). By default their presence refuses the replacement.

        Raises:
            ItemValidationError: an item cannot be stored; nothing was changed.
            CorruptItemError: a stored row cannot be decoded and ``drop_unreadable`` is False.
            StorageError: the store cannot swap rows in one transaction, or writers kept
                changing the history.
        """
        self._check_open("replace_items")
        texts = encode_items(items, self._codec)
        store = self._store
        if not swaps_own_rows(store):
            raise StorageError(
                f"{type(store).__name__} cannot replace a history in one transaction"
            )
        for _ in range(_REPLACE_TRIES):
            rows, _complete = await store.tail(self.session_id, MAX_LIMIT - 1)
            if not drop_unreadable:
                self._refuse_unreadable(rows)
            if not rows:
                if texts:
                    appended = self._store.append(self.session_id, texts)
                    _, cancelled = await run_to_completion(appended)
                    if cancelled:
                        raise asyncio.CancelledError
                return
            swapped, cancelled = await run_to_completion(
                store.replace_tail(self.session_id, rows, texts)
            )
            if cancelled:
                raise asyncio.CancelledError
            if swapped:
                return
        raise StorageError(
            f"replace_items on session {self.session_id!r}: the history kept changing "
            f"({_REPLACE_TRIES} tries); nothing was replaced"
        )

    def _refuse_unreadable(self, rows: Sequence[tuple[int, str]]) -> None:
        unreadable = 0
        for _, text in rows:
            try:
                self._codec.decode(text)
            except SkipRow:
                continue  # sound but not to be shown (expired): replaceable
            except (ValueError, TypeError, RecursionError):
                unreadable += 1
        if unreadable:
            raise CorruptItemError(
                self.session_id,
                f"{unreadable} stored row(s) cannot be decoded; replace_items would delete "
                "them (pass drop_unreadable=True to replace them too)",
            )

    async def prune(
        self,
        *,
        keep_last_turns: int,
        keep_system: bool = True,
        dry_run: bool = False,
        archive: bool = False,
    ) -> PruneReport:
        """Remove whole old turns in one transaction, keeping the newest ``keep_last_turns``.

        See :func:`agent_sessions.pruning.prune_session` for what counts as a turn and what is
        kept.

        Args:
            keep_last_turns: How many of the newest turns to keep; at least 1.
            keep_system: Keep ``system`` and ``developer`` items of the pruned part.
            dry_run: Only report what would be removed.
            archive: Move the removed rows into the session's archive (same transaction),
                readable with :meth:`archived_items`, instead of deleting them.

        Returns:
            What was removed (or, with ``dry_run``, would be).
        """
        from .pruning import prune_session  # noqa: PLC0415 (pruning builds on this class)

        self._check_open("prune")
        return await prune_session(
            self,
            keep_last_turns=keep_last_turns,
            keep_system=keep_system,
            dry_run=dry_run,
            archive=archive,
        )

    async def archived_items(self) -> list[ArchivedItem]:
        """Return what compaction and archiving prunes took out of the history, oldest first.

        Returns:
            Typed entries: the item, its archive batch, ``kind`` (``"compaction"`` or
            ``"prune"``) and when it was archived. Summaries are not among them.

        Raises:
            StorageError: the store keeps no archive (one of another package).
        """
        from ._archive import archived_items  # noqa: PLC0415 (kept out of the hot import)

        self._check_open("archived_items")
        return await archived_items(self)

    async def uncompact(self) -> int:
        """Undo the newest archived compaction: its summary is replaced by its items again.

        One transaction; items appended after the compaction stay after the restored ones.
        Repeated calls walk back through older compactions.

        Returns:
            How many items were restored; 0 when no compaction is archived.

        Raises:
            StorageError: the store keeps no archive, or the compaction's summary is no longer
                at the start of the history (nothing is restored then).
        """
        from ._archive import uncompact  # noqa: PLC0415 (kept out of the hot import)

        self._check_open("uncompact")
        return await uncompact(self)

    async def _atomic_replace_items(self, output_items: list[TResponseInputItem]) -> bool:
        """The SDK compaction session's hook: replace the history in one transaction."""
        await self.replace_items(output_items)
        return True

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[TResponseInputItem], bool] | None = None
    ) -> Any:
        """The SDK's suffix-compaction hook: the newest ``limit`` items and a way to swap them.

        Returns None (the SDK then compacts only a history it can see whole) when the store
        cannot swap rows atomically, when a subclass overrides the protocol methods (the
        snapshot would bypass them), when the prefix must be pruned, or when a row in the
        window cannot be returned.
        """
        store = self._store
        if (
            _CompactionSnapshot is None
            or prune_prefix is not None
            or not swaps_own_rows(store)
            or any(
                not getattr(type(self), name).__module__.startswith("agent_sessions.")
                for name in _PROTOCOL
            )
        ):
            return None
        self._check_open("get_items")
        rows, complete = await store.tail(self.session_id, max(1, min(limit, MAX_LIMIT)))
        items: list[TResponseInputItem] = []
        for _, text in rows:
            try:
                items.append(self._codec.decode(text))
            except (SkipRow, ValueError, TypeError, RecursionError):
                return None  # never compact around a row the caller cannot see
        session_id = self.session_id

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            expected = rows[start:]
            if not expected:
                return False
            self._check_open("add_items")
            texts = encode_items(output, self._codec)
            swapped, cancelled = await run_to_completion(
                store.replace_tail(session_id, expected, texts)
            )
            if cancelled:
                raise asyncio.CancelledError
            return swapped

        if not archives_own_rows(store):
            return _CompactionSnapshot(items, complete, replace_suffix)
        archiving = store

        async def archive_prefix(cut: int, output: list[TResponseInputItem], summary: int) -> bool:
            """Swap the whole window for ``output``, archiving its first ``cut`` rows with it."""
            if not rows or not 0 <= cut <= len(rows):
                return False
            self._check_open("add_items")
            texts = encode_items(output, self._codec)
            batch = ArchiveBatch("compaction", [text for _, text in rows[:cut]], texts[:summary])
            swapped, cancelled = await run_to_completion(
                archiving.replace_tail_archiving(session_id, rows, texts, batch)
            )
            if cancelled:
                raise asyncio.CancelledError
            return swapped

        return ArchivingSnapshot(items, complete, replace_suffix, archive_prefix)

    # Per-session state: small JSON values kept beside the history (private; see store.StateStore).

    def _state_store(self, method: str) -> StateStore:
        self._check_open(method)
        store = self._store
        if not isinstance(store, StateStore):
            raise StorageError(f"{type(store).__name__} keeps no per-session state")
        return store

    async def _read_state(self, name: str) -> JSONValue | None:
        """Return the value stored under ``name`` for this session, or None.

        A stored value that cannot be decoded is never returned: it raises
        :class:`~agent_sessions.errors.CorruptItemError` when the session is strict, else it
        is logged and None is returned (the value stays stored).
        """
        check_state_name(name)
        text = await self._state_store("_read_state").read_state(self.session_id, name)
        if text is None:
            return None
        try:
            return decode_state(text, session_id=self.session_id, name=name)
        except CorruptItemError as exc:
            if self.strict:
                raise
            logger.warning("session %r: state %r not returned: %s", self.session_id, name, exc)
            return None

    async def _write_state(self, name: str, value: JSONValue | None) -> None:
        """Store ``value`` under ``name`` in one transaction; None deletes it.

        Raises:
            ItemValidationError: the value is not JSON-compatible; nothing was written.
        """
        check_state_name(name)
        text = None if value is None else encode_state(value, name)
        store = self._state_store("_write_state")
        _, cancelled = await run_to_completion(store.write_state(self.session_id, name, text))
        if cancelled:
            raise asyncio.CancelledError

    async def _update_state(
        self, name: str, change: Callable[[JSONValue | None], JSONValue | None]
    ) -> JSONValue | None:
        """Read, change and write one value in one transaction; return the new value.

        ``change`` gets the current value (None if there is none) and returns the new one
        (None deletes). Concurrent updates of one value queue, across tasks and processes, so
        none is lost. It may run on the store's worker thread: keep it short and pure.

        Raises:
            CorruptItemError: the stored value cannot be decoded; nothing was written.
            ItemValidationError: ``change`` returned a value that is not JSON-compatible.
        """
        check_state_name(name)
        session_id = self.session_id

        def change_text(old: str | None) -> str | None:
            value = None if old is None else decode_state(old, session_id=session_id, name=name)
            new = change(value)
            return None if new is None else encode_state(new, name)

        store = self._state_store("_update_state")
        text, cancelled = await run_to_completion(store.update_state(session_id, name, change_text))
        if cancelled:
            raise asyncio.CancelledError
        return None if text is None else decode_state(text, session_id=session_id, name=name)

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete every item of this session, and its session record, in one transaction.

        ``wrapper`` (the ``Runner``'s run context) is accepted and not needed.
        """
        self._check_open("clear_session")
        await self._store.clear(self.session_id)

    async def aclose(self) -> None:
        """Close the session and the store it created; idempotent."""
        if self._mark_closed() and self._owns_store:
            await self._store.aclose()

    def close(self) -> Closing:
        """Close the session, called or awaited; idempotent.

        Subclasses whose store closes synchronously (SQLite) close at once; otherwise the
        closing starts on the running event loop. See :mod:`agent_sessions._lifecycle`.

        Returns:
            An awaitable that completes when the session (and a store it owns) is closed.

        Raises:
            RuntimeError: closing is asynchronous and no event loop is running.
        """
        if self._state is SessionState.CLOSED:
            return Closing()
        closing = Closing()
        if self._owns_store:
            # Started before the state changes: without a loop this raises, still open.
            closing = Closing.start(self._store.aclose(), type(self).__name__)
        self._mark_closed()
        return closing

    def _mark_closed(self) -> bool:
        """Move to CLOSED; return False if the session was closed already."""
        if self._state is SessionState.CLOSED:
            return False
        self._state = SessionState.CLOSED
        return True

    async def __aenter__(self: _S) -> _S:
        self._check_open("__aenter__")
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} session_id={self.session_id!r} {self._state.value}>"

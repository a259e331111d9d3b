"""``EncryptedSession``: authenticated encryption at rest over any session, with TTL and rotation.

Over one of this package's sessions, the encryption is a codec wrapped around the plain one, run
by the same core as every backend: the store sees only envelopes, reads skip (or, strict, raise
on) rows they cannot authenticate, and ``pop_item`` passes over such rows without deleting them.
Over any other object with the SDK's session protocol, items are sealed into envelope dicts
before they reach it; see :class:`EncryptedSession` for what then differs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession, Session, SessionABC
from agents.memory.session_settings import SessionSettings
from agents.run_context import RunContextWrapper
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._archive import ArchivedItem
from .._lifecycle import AsyncClosing, Closing
from ..core import (
    SessionState,
    StoreSession,
    check_session_id,
    read_items,
    resolve_limit,
    run_to_completion,
)
from ..errors import CorruptItemError, SessionClosedError
from ..metadata import SessionMetadata
from ..pending_runs import PendingRuns
from ..provenance import SessionRecord
from ..pruning import PruneReport
from ..serialization import (
    JsonCodec,
    decode_or_report,
    decode_rows,
    encode_items,
)
from ..store import RowStore
from .codec import EnvelopeCodec
from .crypto import (
    KeyRing,
    MasterKeyInput,
    SessionCipher,
    WeakKeyWarning,
    sdk_kid,
    wrapped_by,
)
from .crypto import parse_master_keys as _parse_keys
from .delegation import (
    COMPACTION_HOOKS,
    PROTOCOL,
    CompactionPassThrough,
    as_text,
    check_same_id,
    close_now,
    protocol_is_ours,
    settle,
    system_clock,
    takes_wrapper,
)
from .keys import KeyManagement
from .keystore import KeyStore, MemoryKeyStore, SQLiteKeyStore
from .state import EncryptedState

__all__ = ["EncryptedSession", "KeyStore", "MemoryKeyStore", "SQLiteKeyStore", "WeakKeyWarning"]

_JSON = JsonCodec()

Format = Literal["native", "sdk"]
"""How new rows are sealed: our AES-GCM envelope, or the SDK's Fernet envelope."""


class EncryptedSession(
    KeyManagement,
    CompactionPassThrough,
    EncryptedState,
    SessionMetadata,
    PendingRuns,
    AsyncClosing,
    SessionABC,
):
    """A drop-in for ``agents.extensions.memory.EncryptedSession``: AES-256-GCM at rest, with TTL.

    Each session is encrypted under its own key: derived from the master key with HKDF bound to
    ``session_id``, or, with a ``key_store``, a random data key that can be shredded. The session
    id, key id and write time are authenticated with every item, so a row copied into another
    session, edited, or truncated is never returned as data.

    Rows the SDK's ``EncryptedSession`` wrote (its Fernet envelope) are read too, under the same
    master key, with the SDK's TTL rule; :meth:`reencrypt` moves them to this package's format.
    With ``format="sdk"`` new rows are written in the SDK's envelope instead, so the SDK's class
    can read them back (switching either way loses nothing).

    Attributes the wrapper does not define (``get_stats``, branch methods, ...) are the
    underlying session's; over an ``OpenAIResponsesCompactionSession``, ``run_compaction``
    compacts the decrypted history and stores the result encrypted.

    Args:
        session_id: The id the keys are bound to; it must be the underlying session's id.
        underlying_session: Where the envelopes are stored: any session of this package (full
            guarantees) or any object with the SDK's session protocol.
        encryption_key: The master key: a Fernet key (``Fernet.generate_key()``) or 32+ random
            bytes. A plain string is accepted for compatibility with a ``WeakKeyWarning``. For
            rotation, a list of keys newest first: the first encrypts, all decrypt.
        ttl: Seconds an item stays readable after it was written; None never expires.
        max_scan_items: Accepted for compatibility with the SDK; reads here widen their window
            only as far as skipped rows require, so no budget is needed. Must be positive.
        strict: Raise :class:`~agent_sessions.errors.DecryptionError` on a row that fails
            authentication (``UnknownKeyError`` for an unknown key) instead of skipping it
            with a logged warning. Expired items are left out either way.
        key_store: Give this session its own random data key, wrapped by the master key and
            kept in this :class:`~agent_sessions.encryption.keystore.KeyStore` (a path means a
            :class:`~agent_sessions.encryption.keystore.SQLiteKeyStore` there), so :meth:`shred` can
            destroy it.
        format: ``"native"`` (the default) writes this package's envelope; ``"sdk"`` writes
            the SDK's Fernet envelope, readable by ``agents.extensions.memory.EncryptedSession``
            (no key store then: the SDK has no data keys).
        clock: Returns the time in seconds since the epoch (for tests); by default
            ``time.time()``, looked up on every call (so a test that patches it, as the
            SDK's tests patch Fernet's clock, is followed).

    Raises:
        ValueError: a key is empty or too short, ``ttl`` or ``max_scan_items`` is not
            positive, ``format`` is unknown or ``"sdk"`` with a key store, or ``session_id``
            is not the underlying session's id.

    Example:
        >>> from cryptography.fernet import Fernet
        >>> from agent_sessions import EncryptedSession, SQLiteSession
        >>> key = Fernet.generate_key().decode()
        >>> session = EncryptedSession("u1", SQLiteSession("u1", "chats.db"), key, ttl=3600)

    Over another package's session object (or one of ours whose ``get_items``, ``add_items``,
    ``pop_item`` or ``clear_session`` a subclass overrides), the wrapper calls those methods
    and cannot reach the rows: ``pop_item`` stops at an item it cannot return (putting it
    back on top), and :meth:`purge_expired`, :meth:`reencrypt`, :meth:`pop_turn` and
    :meth:`shred`'s clean-up need one of this package's sessions.
    """

    def __init__(
        self,
        session_id: str,
        underlying_session: Session,
        encryption_key: MasterKeyInput | Sequence[MasterKeyInput],
        ttl: float | None = 600,
        max_scan_items: int | None = None,
        *,
        strict: bool = False,
        key_store: KeyStore | str | Path | None = None,
        format: Format = "native",
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            masters = _parse_keys(encryption_key)
        finally:
            del encryption_key  # keep the secret out of tracebacks formatted with locals
        check_session_id(session_id)
        check_same_id(session_id, underlying_session)
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0):
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if max_scan_items is not None and max_scan_items <= 0:
            raise ValueError("max_scan_items must be positive or None")
        if format not in ("native", "sdk"):
            raise ValueError(f"format must be 'native' or 'sdk', got {format!r}")
        if format == "sdk" and key_store is not None:
            raise ValueError(
                "format='sdk' cannot use a key_store: the SDK's EncryptedSession derives its "
                "key from the master key and cannot read rows under a data key"
            )
        self._masters = masters
        self.session_id = session_id
        self.underlying_session = underlying_session
        self.ttl = ttl
        self.max_scan_items = max_scan_items
        self.strict = strict
        self.format: Format = format
        self._owns_key_store = isinstance(key_store, (str, Path))
        self.key_store: KeyStore | None = (
            SQLiteKeyStore(key_store) if isinstance(key_store, (str, Path)) else key_store
        )
        derived = {m.kid: AESGCM(m.session_key(session_id)) for m in reversed(self._masters)}
        legacy = {sdk_kid(m.kid): m.sdk_fernet(session_id) for m in self._masters}
        writer = self._masters[0].kid if format == "native" else sdk_kid(self._masters[0].kid)
        self._derived = KeyRing(writer, derived, legacy)
        self._codec = EnvelopeCodec(
            SessionCipher(session_id, self._derived), ttl, clock or system_clock
        )
        # With a key store, the data key is looked up once, on first use, under this lock.
        self._data_key_known = self.key_store is None
        self._data_key_record: str | None = None
        self._write_checked = False
        self._setup_lock: asyncio.Lock | None = None
        self._state = SessionState.OPEN
        self._inner: StoreSession | None = None
        if isinstance(underlying_session, StoreSession) and protocol_is_ours(underlying_session):
            self._inner = StoreSession(
                underlying_session.session_id,
                underlying_session.store,
                owns_store=False,
                strict=strict,
                codec=self._codec,
                digest_key=self._masters[0].digest_key(session_id),
            )
        self._wrapper_ok: bool | None = None  # whether the underlying takes ``wrapper=``

    def __getattr__(self, name: str) -> Any:
        """Return the underlying session's attribute (the compaction hooks, over compaction).

        Special (dunder) names and, except the SDK's compaction hooks, private names are not
        forwarded, so copying, pickling and ``hasattr`` probes see this object alone.
        """
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        underlying = self.__dict__.get("underlying_session")
        if underlying is None:  # not initialised yet (or being unpickled)
            raise AttributeError(name)
        if isinstance(underlying, OpenAIResponsesCompactionSession):
            if name == "run_compaction":
                return self._encrypted_run_compaction
            if name == "_defer_compaction":
                return self._encrypted_defer_compaction
            if name in COMPACTION_HOOKS:
                return getattr(underlying, name)
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(underlying, name)

    # The session protocol ------------------------------------------------------------------

    @property
    def session_settings(self) -> SessionSettings | None:
        """The underlying session's settings (``limit`` caps ``get_items()``)."""
        return self.underlying_session.session_settings

    @session_settings.setter
    def session_settings(self, value: SessionSettings | None) -> None:
        self.underlying_session.session_settings = value

    def _check_open(self, method: str) -> None:
        if self._state is SessionState.CLOSED:
            raise SessionClosedError(
                f"EncryptedSession is closed: EncryptedSession.{method}() was called after "
                "the session was closed"
            )

    async def _call(
        self, method: str, *args: Any, wrapper: RunContextWrapper[Any] | None = None
    ) -> Any:
        """Call an underlying protocol method, passing ``wrapper`` if the session takes it."""
        if self._wrapper_ok is None:
            self._wrapper_ok = all(
                takes_wrapper(getattr(self.underlying_session, name, None)) for name in PROTOCOL
            )
        bound = getattr(self.underlying_session, method)
        if wrapper is not None and self._wrapper_ok:
            return await bound(*args, wrapper=wrapper)
        return await bound(*args)

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the newest ``limit`` readable items (all if None), oldest first.

        Expired items are left out; rows that fail authentication are skipped with a logged
        warning, or raise when the session is strict. Neither is removed.

        Args:
            limit: How many of the newest items; None for ``session_settings.limit`` or all.
            wrapper: The run context the SDK's ``Runner`` may pass; forwarded to an
                underlying session whose methods accept it.

        Raises:
            InvalidLimitError: ``limit`` is negative or not an int.
            DecryptionError: a row fails authentication and the session is strict.
        """
        self._check_open("get_items")
        wanted = resolve_limit(limit, self.session_settings)
        await self._keys_ready(writing=False)
        if self._inner is not None:
            return await self._inner.get_items(wanted)

        async def read(n: int | None) -> list[str]:
            raw = await self._call("get_items", n, wrapper=wrapper)
            return [as_text(item) for item in cast(list[Any], raw)]

        return await read_items(read, self._decode, wanted)

    def _decode(self, texts: list[str]) -> list[TResponseInputItem]:
        return decode_rows(texts, session_id=self.session_id, strict=self.strict, codec=self._codec)

    async def get_records(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[SessionRecord]:
        """Return the readable items, decrypted, with who wrote them (``StoreSession.get_records``).

        Over a session of another package, the items come with no provenance.
        """
        self._check_open("get_records")
        wanted = resolve_limit(limit, self.session_settings)
        await self._keys_ready(writing=False)
        if self._inner is not None:
            return await self._inner.get_records(wanted)
        items = await self.get_items(wanted, wrapper=wrapper)
        return [SessionRecord(item, None, None, None, None) for item in items]

    def _seal_items(self, items: list[TResponseInputItem]) -> list[TResponseInputItem]:
        """Validate and encrypt a batch into envelope items (for a session not of ours)."""
        return cast(
            list[TResponseInputItem], [self._codec.seal(text) for text in encode_items(items)]
        )

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Encrypt and append items: all of them are stored, or none.

        Args:
            items: Items in the SDK's input format.
            wrapper: The run context the SDK's ``Runner`` may pass; forwarded where accepted.

        Raises:
            ItemValidationError: an item is not storable; nothing was written.
            UnknownKeyError: the master key does not open the session's existing rows, the
                session's data key is wrapped under a key not configured, or it was shredded
                by another object; nothing was written.
        """
        self._check_open("add_items")
        texts = encode_items(items)  # validate the whole batch before any key store call
        if not texts:
            return
        await self._ready_to_write(wrapper)
        if self._inner is not None:
            await self._inner.add_items(items, wrapper=wrapper)
            return
        envelopes = [self._codec.seal(text) for text in texts]
        await self._call("add_items", envelopes, wrapper=wrapper)

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest readable item; None if there is none.

        Never returns an expired or unauthenticated item, and never removes one: over this
        package's sessions such rows are passed over in place. A row under a wrong key is
        one the session cannot read: lenient, it is passed over (None if no other item is
        readable); strict, :class:`~agent_sessions.errors.DecryptionError` is raised. Nothing
        is removed either way (the SDK raises ``InvalidToken`` here).

        Raises:
            DecryptionError: the newest row fails authentication and the session is strict.
        """
        self._check_open("pop_item")
        await self._keys_ready(writing=False)
        if self._inner is not None:
            return await self._inner.pop_item()
        raw, cancelled = await run_to_completion(self._call("pop_item", wrapper=wrapper))
        if raw is not None and cancelled:
            # It was the newest: the same place.
            await run_to_completion(self._call("add_items", [raw], wrapper=wrapper))
        if cancelled:
            raise asyncio.CancelledError
        if raw is None:
            return None
        try:
            item = decode_or_report(
                as_text(raw), session_id=self.session_id, strict=self.strict, codec=self._codec
            )
        except CorruptItemError:
            await self._call("add_items", [raw], wrapper=wrapper)
            raise
        if item is None:
            # Nothing below an unreadable newest item can be reached without removing it.
            await self._call("add_items", [raw], wrapper=wrapper)
        return item

    async def pop_turn(self) -> list[TResponseInputItem]:
        """Undo the last exchange at once; see :meth:`StoreSession.pop_turn`.

        Rows that cannot be read are passed over and stay stored.

        Raises:
            TypeError: the underlying session is not one of this package's (its rows cannot
                be removed in one transaction from here).
        """
        self._check_open("pop_turn")
        if self._inner is None:
            raise TypeError(
                "EncryptedSession.pop_turn() needs one of agent_sessions' sessions underneath "
                f"(got {type(self.underlying_session).__name__})"
            )
        await self._keys_ready(writing=False)
        return await self._inner.pop_turn()

    async def replace_items(
        self, items: Sequence[TResponseInputItem], *, drop_unreadable: bool = False
    ) -> None:
        """Replace the whole history with ``items``, encrypted, in one transaction.

        See :meth:`StoreSession.replace_items`; a row under a wrong key or tampered with counts
        as unreadable, an expired one may be replaced.

        Raises:
            ItemValidationError: an item is not storable; nothing was written.
            CorruptItemError: a stored row cannot be read and ``drop_unreadable`` is False.
            TypeError: the underlying session is not one of this package's (it cannot swap
                rows in one transaction from here).
        """
        self._check_open("replace_items")
        if self._inner is None:
            raise TypeError(
                "EncryptedSession.replace_items() needs one of agent_sessions' sessions "
                f"underneath (got {type(self.underlying_session).__name__})"
            )
        encode_items(items)  # validate the whole batch before any key store call
        await self._ready_to_write(None)
        await self._inner.replace_items(items, drop_unreadable=drop_unreadable)

    async def prune(
        self,
        *,
        keep_last_turns: int,
        keep_system: bool = True,
        dry_run: bool = False,
        archive: bool = False,
    ) -> PruneReport:
        """Remove whole old turns in one transaction; see :meth:`StoreSession.prune`.

        The kept rows stay as they are sealed (nothing is decrypted to be written again). A row
        under a wrong key or tampered with is never removed; an expired one goes with its turn.

        Returns:
            What was removed (or, with ``dry_run``, would be).

        Raises:
            TypeError: the underlying session is not one of this package's (its rows cannot
                be removed in one transaction from here), or ``keep_last_turns`` is not an int.
            ValueError: ``keep_last_turns`` is below 1.
        """
        self._check_open("prune")
        if self._inner is None:
            raise TypeError(
                "EncryptedSession.prune() needs one of agent_sessions' sessions underneath "
                f"(got {type(self.underlying_session).__name__})"
            )
        await self._keys_ready(writing=False)
        return await self._inner.prune(
            keep_last_turns=keep_last_turns,
            keep_system=keep_system,
            dry_run=dry_run,
            archive=archive,
        )

    async def archived_items(self) -> list[ArchivedItem]:
        """The archived items, decrypted, oldest first; see ``StoreSession.archived_items``.

        The archive holds the rows as they were stored (sealed). Rows that fail
        authentication are skipped with a logged warning, or raise when strict; expired ones
        are left out, as from the history.

        Raises:
            TypeError: the underlying session is not one of this package's (no archive).
        """
        self._check_open("archived_items")
        inner = self._archiving("archived_items")
        await self._keys_ready(writing=False)
        return await inner.archived_items()

    async def uncompact(self) -> int:
        """Undo the newest compaction; see ``StoreSession.uncompact`` (rows stay sealed)."""
        self._check_open("uncompact")
        inner = self._archiving("uncompact")
        await self._ready_to_write()
        return await inner.uncompact()

    def _archiving(self, method: str) -> StoreSession:
        if self._inner is None:
            raise TypeError(
                f"EncryptedSession.{method}() needs one of agent_sessions' sessions underneath "
                f"(got {type(self.underlying_session).__name__}): it keeps no archive"
            )
        return self._inner

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete every item of the session, readable or not."""
        self._check_open("clear_session")
        await self._call("clear_session", wrapper=wrapper)

    # Maintenance ---------------------------------------------------------------------------

    def _row_store(self, method: str) -> tuple[RowStore, str]:
        inner = self._inner
        if inner is None or not isinstance(inner.store, RowStore):
            raise TypeError(
                f"EncryptedSession.{method}() needs one of agent_sessions' sessions underneath "
                f"(got {type(self.underlying_session).__name__})"
            )
        return inner.store, inner.session_id

    async def purge_expired(self) -> int:
        """Delete the expired items from the underlying store, in one transaction.

        Only rows that authenticate under a configured key are judged expired and deleted;
        rows under unknown keys are left alone.

        Returns:
            How many rows were deleted.

        Raises:
            TypeError: the underlying session is not one of this package's.
        """
        self._check_open("purge_expired")
        store, store_id = self._row_store("purge_expired")
        await self._keys_ready(writing=False)
        return await self._purge_expired_rows(store, store_id)

    async def reencrypt(self) -> int:
        """Re-encrypt every readable item under the newest key, keeping its time and place.

        With a key store, the data key is re-wrapped under the newest master key too. Rows
        that no configured key opens are left as they are. Run it after putting a new key first
        in ``encryption_key``; then the old keys can be retired.

        Returns:
            How many rows were re-encrypted.

        Raises:
            TypeError: the underlying session is not one of this package's.
        """
        self._check_open("reencrypt")
        store, store_id = self._row_store("reencrypt")
        await self._keys_ready(writing=True)
        if self.key_store is not None:
            record = await self.key_store.load(self.session_id)
            if record is not None and wrapped_by(record) != self._masters[0].kid:
                data_key = self._unwrap(record)
                await self.key_store.replace(
                    self.session_id, self._masters[0].wrap(data_key, self.session_id)
                )
        cipher = self._codec.cipher
        changes: dict[int, str | None] = {}
        for row_id, text in await store.rows(store_id):
            try:
                plaintext, ts, kid = cipher.open(self._codec.envelope(text))
            except ValueError:
                continue
            if kid != cipher.ring.writer:
                changes[row_id] = _JSON.encode(self._codec.seal(plaintext, ts))  # type: ignore[arg-type]
        return await store.rewrite(store_id, changes) if changes else 0

    async def shred(self) -> None:
        """Destroy this session's data key, then delete its rows.

        Every copy of the session's ciphertext (backups included) becomes unreadable, provided
        the key store is kept apart from the data. Other sessions are untouched. Later writes
        get a new data key. Other open objects of this session refuse to write under the
        shredded key (``UnknownKeyError``); a new object writes under a new one.

        Raises:
            ValueError: the session has no key store.
        """
        self._check_open("shred")
        if self.key_store is None:
            raise ValueError("shred() needs a key_store: without one, the key is derived")
        await self.key_store.delete(self.session_id)
        self._use_data_key(None)
        self._data_key_known = False
        self._data_key_record = None
        await self.underlying_session.clear_session()

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Whether the session is open or closed."""
        return self._state

    async def ping(self) -> bool:
        """Check that the underlying session's server answers (its own ``ping()``).

        Returns:
            What the underlying session's ``ping()`` returns: True if its server answered,
            False if it could not be reached.

        Raises:
            SessionClosedError: the session is closed (a ``RuntimeError``).
            TypeError: the underlying session has no ``ping()`` (a SQLite file or any session
                without a server to check).
        """
        self._check_open("ping")
        ping = getattr(self.underlying_session, "ping", None)
        if not callable(ping):
            raise TypeError(
                f"{type(self.underlying_session).__name__} has no ping(): it has no server to check"
            )
        return bool(await ping())

    async def __aenter__(self) -> EncryptedSession:
        self._check_open("__aenter__")
        return self

    async def aclose(self) -> None:
        """Close the underlying session (and a key store this session opened); idempotent."""
        await self.close()

    def close(self) -> Closing:
        """Close the underlying session (and a key store this session opened); idempotent.

        Works both called and awaited, whatever the underlying session's ``close`` is (the
        package's one lifecycle rule): a synchronous close (SQLite) happens at once; an
        asynchronous one (SQLAlchemy) is started at once on the running loop, and awaiting
        the result waits for it.

        Returns:
            An awaitable that completes when everything is closed.

        Raises:
            RuntimeError: the underlying session closes only asynchronously and there is no
                running event loop to do it on (await ``aclose()`` inside one).
        """
        if self._state is SessionState.CLOSED:
            return Closing()
        pending = close_now(self.underlying_session)
        key_store = self.key_store if self._owns_key_store else None
        if isinstance(key_store, SQLiteKeyStore):
            key_store.close()
            key_store = None
        closing = Closing()
        if pending is not None or key_store is not None:
            closing = Closing.start(
                settle(pending, key_store), f"{type(self.underlying_session).__name__}"
            )
        self._state = SessionState.CLOSED
        return closing

    def __repr__(self) -> str:
        # Read through __dict__: a half-built object (a constructor that raised) still prints.
        state = self.__dict__
        if "_state" not in state:
            return f"<EncryptedSession session_id={state.get('session_id')!r} uninitialised>"
        kids = [master.kid for master in state["_masters"]]
        return (
            f"<EncryptedSession session_id={self.session_id!r} format={self.format!r} "
            f"keys={kids} {self._state.value}>"
        )

"""``EncryptedSession``: authenticated encryption at rest over any session, with TTL and rotation.

Over one of this package's sessions, the encryption is a codec wrapped around the plain one, run
by the same core as every backend: the store sees only envelopes, reads skip (or, strict, raise
on) rows they cannot authenticate, and ``pop_item`` passes over such rows without deleting them.
Over any other object with the SDK's session protocol, items are sealed into envelope dicts
before they reach it; see :class:`EncryptedSession` for what then differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from agents.items import TResponseInputItem
from agents.memory import Session
from agents.memory.session_settings import SessionSettings
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._crypto import (
    KeyRing,
    MasterKey,
    MasterKeyInput,
    SessionCipher,
    WeakKeyWarning,
    key_id,
    new_data_key,
    wrapped_by,
)
from ._crypto import parse_master_keys as _parse_keys
from ._encrypted_codec import EnvelopeCodec
from ._lifecycle import AsyncClosing
from .core import (
    SessionState,
    StoreSession,
    check_session_id,
    read_items,
    resolve_limit,
    run_to_completion,
)
from .errors import CorruptItemError, DecryptionError, SessionClosedError, UnknownKeyError
from .keystore import KeyStore, SQLiteKeyStore
from .serialization import JsonCodec, decode_or_report, decode_rows, encode_items, logger
from .store import RowStore

__all__ = ["EncryptedSession", "WeakKeyWarning"]

_JSON = JsonCodec()


class EncryptedSession(AsyncClosing):
    """A drop-in for ``agents.extensions.memory.EncryptedSession``: AES-256-GCM at rest, with TTL.

    Each session is encrypted under its own key: derived from the master key with HKDF bound to
    ``session_id``, or, with a ``key_store``, a random data key that can be shredded. The session
    id, key id and write time are authenticated with every item, so a row copied into another
    session, edited, or truncated is never returned as data.

    Args:
        session_id: The id the keys are bound to (normally the underlying session's id).
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
            kept in this :class:`~agent_sessions.keystore.KeyStore` (a path means a
            :class:`~agent_sessions.keystore.SQLiteKeyStore` there), so :meth:`shred` can
            destroy it.
        clock: Returns the time in seconds since the epoch (for tests).

    Raises:
        ValueError: a key is empty or too short, ``ttl`` is not positive, or
            ``max_scan_items`` is not positive.

    Example:
        >>> from cryptography.fernet import Fernet
        >>> from agent_sessions import EncryptedSession, SQLiteSession
        >>> key = Fernet.generate_key().decode()
        >>> session = EncryptedSession("u1", SQLiteSession("u1", "chats.db"), key, ttl=3600)

    Over another package's session object, the wrapper cannot reach the rows: ``pop_item``
    stops at an item it cannot return (putting it back on top), and :meth:`purge_expired`,
    :meth:`reencrypt` and :meth:`shred`'s clean-up need one of this package's sessions.
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_session_id(session_id)
        if ttl is not None and (isinstance(ttl, bool) or not ttl > 0):
            raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        if max_scan_items is not None and max_scan_items <= 0:
            raise ValueError("max_scan_items must be positive or None")
        self.session_id = session_id
        self.underlying_session = underlying_session
        self.ttl = ttl
        self.max_scan_items = max_scan_items
        self.strict = strict
        self._masters = _parse_keys(encryption_key)
        self._owns_key_store = isinstance(key_store, (str, Path))
        self.key_store: KeyStore | None = (
            SQLiteKeyStore(key_store) if isinstance(key_store, (str, Path)) else key_store
        )
        derived = {m.kid: AESGCM(m.session_key(session_id)) for m in reversed(self._masters)}
        self._derived = KeyRing(self._masters[0].kid, derived)
        self._codec = EnvelopeCodec(SessionCipher(session_id, self._derived), ttl, clock)
        # With a key store, the data key is looked up once, on first use, under this lock.
        self._data_key_known = self.key_store is None
        self._setup_lock: asyncio.Lock | None = None
        self._state = SessionState.OPEN
        self._inner: StoreSession | None = None
        if isinstance(underlying_session, StoreSession):
            self._inner = StoreSession(
                underlying_session.session_id,
                underlying_session.store,
                owns_store=False,
                strict=strict,
                codec=self._codec,
            )

    # Keys ----------------------------------------------------------------------------------

    def _use_data_key(self, data_key: bytes | None) -> None:
        """Encrypt with ``data_key`` (and still read the derived keys), or go back to them."""
        if data_key is None:
            ring = self._derived
        else:
            kid = key_id(data_key, b"data")
            ring = KeyRing(kid, {**self._derived.readers, kid: AESGCM(data_key)})
        self._codec.cipher = SessionCipher(self.session_id, ring)

    def _master(self, kid: str) -> MasterKey:
        for master in self._masters:
            if master.kid == kid:
                return master
        raise UnknownKeyError(
            self.session_id,
            f"its data key is wrapped under master key id {kid!r}, which is not configured",
        )

    def _unwrap(self, record: str) -> bytes:
        return self._master(wrapped_by(record)).unwrap(record, self.session_id)

    async def _keys_ready(self, writing: bool) -> None:
        """Load the session's data key from the key store (creating it for a first write).

        Raises:
            DecryptionError: the data key cannot be unwrapped, and the caller writes or the
                session is strict. A lenient read goes on without it, with a logged warning,
                so the rows under that key are skipped like any unreadable row.
        """
        if self._data_key_known or self.key_store is None:
            return
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            try:
                await self._load_data_key(self.key_store, writing)
            except DecryptionError as exc:
                if writing or self.strict:
                    raise
                logger.warning(
                    "reading session %r without its data key: %s", self.session_id, exc.detail
                )

    async def _load_data_key(self, key_store: KeyStore, writing: bool) -> None:
        if self._data_key_known:
            return  # another task loaded it while this one waited for the lock
        record = await key_store.load(self.session_id)
        if record is None and writing:
            wrapped = self._masters[0].wrap(new_data_key(), self.session_id)
            record = await key_store.create(self.session_id, wrapped)
        if record is None:
            return  # nothing was ever written under a data key; look again on a write
        self._use_data_key(self._unwrap(record))
        self._data_key_known = True

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
                f"EncryptedSession.{method}() was called after the session was closed"
            )

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """Return the newest ``limit`` readable items (all if None), oldest first.

        Expired items are left out; rows that fail authentication are skipped with a logged
        warning, or raise when the session is strict. Neither is removed.

        Raises:
            InvalidLimitError: ``limit`` is negative or not an int.
            DecryptionError: a row fails authentication and the session is strict.
        """
        self._check_open("get_items")
        wanted = resolve_limit(limit, self.session_settings)
        await self._keys_ready(writing=False)
        if self._inner is not None:
            return await self._inner.get_items(wanted)
        return await read_items(self._read_foreign, self._decode, wanted)

    async def _read_foreign(self, limit: int | None) -> list[str]:
        raw = await self.underlying_session.get_items(limit)
        return [_as_text(item) for item in raw]

    def _decode(self, texts: list[str]) -> list[TResponseInputItem]:
        return decode_rows(texts, session_id=self.session_id, strict=self.strict, codec=self._codec)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Encrypt and append items: all of them are stored, or none.

        Raises:
            ItemValidationError: an item is not storable; nothing was written.
            UnknownKeyError: the session's data key is wrapped under a key not configured.
        """
        self._check_open("add_items")
        texts = encode_items(items)  # validate the whole batch before any key store call
        if not texts:
            return
        await self._keys_ready(writing=True)
        if self._inner is not None:
            await self._inner.add_items(items)
            return
        envelopes = [self._codec.seal(text) for text in texts]
        await self.underlying_session.add_items(cast(list[TResponseInputItem], envelopes))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest readable item; None if there is none.

        Never returns an expired or unauthenticated item, and never removes one: over this
        package's sessions such rows are passed over in place.
        """
        self._check_open("pop_item")
        await self._keys_ready(writing=False)
        if self._inner is not None:
            return await self._inner.pop_item()
        underlying = self.underlying_session
        raw, cancelled = await run_to_completion(underlying.pop_item())
        if raw is not None and cancelled:
            await run_to_completion(underlying.add_items([raw]))  # it was the newest: same place
        if cancelled:
            raise asyncio.CancelledError
        if raw is None:
            return None
        try:
            item = decode_or_report(
                _as_text(raw), session_id=self.session_id, strict=self.strict, codec=self._codec
            )
        except CorruptItemError:
            await self.underlying_session.add_items([raw])
            raise
        if item is None:
            # Nothing below an unreadable newest item can be reached without removing it.
            await self.underlying_session.add_items([raw])
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

    async def clear_session(self) -> None:
        """Delete every item of the session, readable or not."""
        self._check_open("clear_session")
        await self.underlying_session.clear_session()

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
        doomed: dict[int, str | None] = {}
        for row_id, text in await store.rows(store_id):
            try:
                _, ts, _ = self._codec.cipher.open(self._codec.envelope(text))
            except ValueError:
                continue
            if self._codec.expired(ts):
                doomed[row_id] = None
        return await store.rewrite(store_id, doomed) if doomed else 0

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
        get a new data key. Other open objects of this session keep the key they loaded until
        they are closed.

        Raises:
            ValueError: the session has no key store.
        """
        self._check_open("shred")
        if self.key_store is None:
            raise ValueError("shred() needs a key_store: without one, the key is derived")
        await self.key_store.delete(self.session_id)
        self._use_data_key(None)
        self._data_key_known = False
        await self.underlying_session.clear_session()

    # Lifecycle -----------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Whether the session is open or closed."""
        return self._state

    async def __aenter__(self) -> EncryptedSession:
        self._check_open("__aenter__")
        return self

    async def aclose(self) -> None:
        """Close the underlying session (and a key store this session opened); idempotent."""
        if self._state is SessionState.CLOSED:
            return
        self._state = SessionState.CLOSED
        closer = getattr(self.underlying_session, "aclose", None)
        if closer is None:
            closer = getattr(self.underlying_session, "close", None)
        if closer is not None:
            result = closer()
            if asyncio.iscoroutine(result):
                await result
        if self._owns_key_store and self.key_store is not None:
            await self.key_store.aclose()

    def close(self) -> None:
        """Close without awaiting, where the underlying session can (like the SDK's SQLite).

        Raises:
            TypeError: the underlying session only closes asynchronously; use ``aclose()``.
        """
        if self._state is SessionState.CLOSED:
            return
        close = getattr(self.underlying_session, "close", None)
        if close is not None and asyncio.iscoroutinefunction(close):
            raise TypeError("the underlying session closes asynchronously; await aclose()")
        self._state = SessionState.CLOSED
        if close is not None:
            close()
        if self._owns_key_store and isinstance(self.key_store, SQLiteKeyStore):
            self.key_store.close()

    def __repr__(self) -> str:
        return f"<EncryptedSession session_id={self.session_id!r} {self._state.value}>"


def _as_text(item: Any) -> str:
    """Return a foreign session's stored item as row text, for the codec to judge."""
    try:
        return _JSON.encode(item)
    except (TypeError, ValueError):
        return ""

"""How ``EncryptedSession`` manages its keys: data keys from a key store, and write checks.

Without a key store a session's key is derived from the master key. With one, a random data key
is loaded (or made, on the first write) once, under a lock. Before writing, the session checks
that its keys are the session's: the master key must open one of the newest rows, and the data
key must still be the stored one (not shredded by another object since it was loaded).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from agents.run_context import RunContextWrapper
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..core import StoreSession
from ..errors import DecryptionError, UnknownKeyError
from ..serialization import logger
from .codec import EnvelopeCodec
from .crypto import KeyRing, MasterKey, SessionCipher, key_id, new_data_key, wrapped_by
from .delegation import KEY_CHECK_ROWS, as_text
from .keystore import KeyStore

__all__ = ["KeyManagement"]


class KeyManagement:
    """Mixin of ``EncryptedSession``: its data key and the checks before a write.

    The host class sets the attributes declared here and provides ``_call``.
    """

    session_id: str
    strict: bool
    key_store: KeyStore | None
    _masters: tuple[MasterKey, ...]
    _derived: KeyRing
    _codec: EnvelopeCodec
    _inner: StoreSession | None
    _data_key_known: bool
    _data_key_record: str | None
    _write_checked: bool
    _setup_lock: asyncio.Lock | None

    async def _call(
        self, method: str, *args: Any, wrapper: RunContextWrapper[Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def _use_data_key(self, data_key: bytes | None) -> None:
        """Encrypt with ``data_key`` (and still read the derived keys), or go back to them."""
        if data_key is None:
            ring = self._derived
        else:
            kid = key_id(data_key, b"data")
            readers = {**self._derived.readers, kid: AESGCM(data_key)}
            ring = KeyRing(kid, readers, self._derived.legacy)
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

    def _lock(self) -> asyncio.Lock:
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        return self._setup_lock

    async def _keys_ready(self, writing: bool) -> None:
        """Load the session's data key from the key store (creating it for a first write).

        Raises:
            DecryptionError: the data key cannot be unwrapped, and the caller writes or the
                session is strict. A lenient read goes on without it, with a logged warning,
                so the rows under that key are skipped like any unreadable row.
        """
        if self._data_key_known or self.key_store is None:
            return
        async with self._lock():
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
        self._data_key_record = record
        self._data_key_known = True

    async def _ready_to_write(self, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Load the keys and refuse a write that would be sealed under the wrong key.

        Before this object's first write, the session's newest row must open under a
        configured key (else the master key is wrong, and writing would split the history
        between two keys); before every write with a key store, the data key must still be
        the stored one (another object may have shredded it).

        Raises:
            UnknownKeyError: the master key does not open the session's existing rows, or the
                data key was shredded or replaced since this object loaded it.
        """
        await self._keys_ready(writing=True)
        if self.key_store is not None and self._data_key_record is not None:
            await self._check_data_key_current(self.key_store)
        if not self._write_checked:
            async with self._lock():
                if not self._write_checked:
                    await self._check_newest_row(wrapper)
                    self._write_checked = True

    async def _check_data_key_current(self, key_store: KeyStore) -> None:
        record = await key_store.load(self.session_id)
        if record == self._data_key_record:
            return
        if record is not None:
            mine = self._codec.cipher.ring.writer
            if key_id(self._unwrap(record), b"data") == mine:  # re-wrapped, same data key
                self._data_key_record = record
                return
        raise UnknownKeyError(
            self.session_id,
            "its data key was shredded (or replaced) by another object after this one loaded "
            "it; nothing was written. Open the session again to write under a new key",
        )

    async def _check_newest_row(self, wrapper: RunContextWrapper[Any] | None) -> None:
        if self._inner is not None:
            texts = await self._inner.store.read(self._inner.session_id, KEY_CHECK_ROWS)
        else:
            raw = await self._call("get_items", KEY_CHECK_ROWS, wrapper=wrapper)
            texts = [as_text(item) for item in cast(list[Any], raw)]
        unknown: UnknownKeyError | None = None
        for text in reversed(texts):
            try:
                self._codec.cipher.open(self._codec.envelope(text))
            except UnknownKeyError as exc:
                unknown = unknown or exc
                continue
            except ValueError:
                continue  # plaintext or tampered: no evidence either way
            return  # a recent row opens: the key is the session's
        if unknown is not None:
            raise UnknownKeyError(
                self.session_id,
                f"none of its newest {len(texts)} row(s) opens under the configured keys "
                f"({unknown.detail}); refusing to write under a different key, which would "
                "split the history (a wrong master key?). Nothing was written",
            ) from unknown

"""``EnvelopeCodec``: the JSON codec wrapped in encryption, with TTL expiry on read.

An item is encoded by the plain codec, sealed by a
:class:`~agent_sessions.encryption.crypto.SessionCipher` and stored as a small JSON envelope
``{"__enc__": "as1", "kid": ..., "ts": ..., "ct": ...}``, so rows stay JSON objects that any
tool (and the SDK) can load, while their content is ciphertext.

Every read of a conversation reads its recent rows again, so the codec remembers, per session
object, the plaintext of rows it has already authenticated, keyed by the whole stored text: a
row read again with the very same text is the same authenticated row, and skips the base64,
the decryption and the envelope parsing. The TTL is still checked on every read, and the memory
is dropped whenever the keys change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.items import TResponseInputItem

from ..errors import DecryptionError
from ..serialization import Codec, JsonCodec, SkipRow
from .crypto import SDK_KID, SessionCipher, ahead_of

__all__ = ["EnvelopeCodec"]

_JSON = JsonCodec()


class EnvelopeCodec:
    """Encrypts on encode; authenticates, decrypts and applies the TTL on decode.

    Args:
        cipher: The session's keys. It may be replaced later (a data key loaded or shredded).
        ttl: Seconds an item stays readable after it was written; None for no expiry.
        clock: Returns the time in seconds since the epoch.
        inner: The codec of the plaintext; compact JSON by default.
        remembered: How many authenticated rows to remember (0 to always decrypt).
    """

    def __init__(
        self,
        cipher: SessionCipher,
        ttl: float | None,
        clock: Callable[[], float],
        inner: Codec | None = None,
        remembered: int = 1024,
    ) -> None:
        self._cipher = cipher
        self.ttl = ttl
        self.clock = clock
        self.inner = inner or _JSON
        self.remembered = remembered
        # row text -> (ts, plaintext, whether it is the SDK's envelope)
        self._opened: dict[str, tuple[int, str, bool]] = {}

    def __repr__(self) -> str:
        return f"<EnvelopeCodec ttl={self.ttl!r} cipher={self._cipher!r}>"

    @property
    def cipher(self) -> SessionCipher:
        """The session's keys; replacing them forgets every remembered row."""
        return self._cipher

    @cipher.setter
    def cipher(self, cipher: SessionCipher) -> None:
        self._cipher = cipher
        self._opened.clear()

    def seal(self, plaintext: str, ts: int | None = None) -> dict[str, Any]:
        """Return the envelope of an encoded item, stamped now (or with ``ts``)."""
        return self.cipher.seal(plaintext, int(self.clock()) if ts is None else ts)

    def encode(self, item: TResponseInputItem) -> str:
        """Return the stored form of a validated item: its envelope as JSON text."""
        return _JSON.encode(self.seal(self.inner.encode(item)))  # type: ignore[arg-type]

    def envelope(self, text: str) -> dict[str, Any]:
        """Parse a stored row into its envelope, unauthenticated.

        Raises:
            ValueError: the row is not a JSON object.
        """
        return dict(_JSON.decode(text))

    def expired(self, ts: int) -> bool:
        """Whether an item stamped ``ts`` is past its TTL."""
        return self.ttl is not None and self.clock() - ts > self.ttl

    def decode(self, text: str) -> TResponseInputItem:
        """Return the item a stored row holds.

        The row is authenticated before its timestamp is trusted, so a row whose ``ts`` was
        moved into the past fails as tampered instead of passing for expired.

        Raises:
            SkipRow: the item has expired.
            DecryptionError: the row fails authentication; ``UnknownKeyError`` if its key is
                not configured.
        """
        known = self._opened.get(text)
        if known is None:
            plaintext, ts, kid = self._cipher.open(self.envelope(text))
            sdk = kid not in self._cipher.ring.readers
            if self.remembered:
                if len(self._opened) >= self.remembered:
                    del self._opened[next(iter(self._opened))]
                self._opened[text] = (ts, plaintext, sdk)
        else:
            ts, plaintext, sdk = known
        if sdk and ahead_of(ts, self.clock()):
            # Fernet refuses a token stamped further ahead than its clock skew; so do we.
            raise DecryptionError(
                self._cipher.session_id,
                f"its {SDK_KID!r} token is stamped {ts}, ahead of this machine's clock",
            )
        if self.expired(ts):
            raise SkipRow("expired")
        return self.inner.decode(plaintext)

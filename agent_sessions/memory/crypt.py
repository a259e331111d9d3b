"""Memory values encrypted at rest, with ``EncryptedSession``'s keys and envelope.

The master keys are parsed by :mod:`agent_sessions.encryption.crypto` (the same formats, the
same list for rotation: the first encrypts, every one decrypts). Each master key gives one
AES-256-GCM key for memories (HKDF, label ``memory/<table>``), and every value is sealed in the
``as1`` envelope with its namespace and key bound in as associated data: a value copied onto
another key, namespace or table does not decrypt. Namespaces, keys and times stay in plaintext
(they are what ``get``, prefix search and TTL use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import CorruptItemError
from ..serialization import JsonCodec

if TYPE_CHECKING:
    from ..encryption.crypto import KeyRing, SessionCipher

__all__ = ["ValueCipher"]

_JSON = JsonCodec()


class ValueCipher:
    """Seals and opens the values of one memories table.

    Args:
        keys: A master key (str or bytes, as ``EncryptedSession`` takes), or a list newest first.
        table: The memories table; bound into the derived keys.

    Raises:
        ValueError: a key is unusable or the list is empty.
        TypeError: a key is neither str nor bytes.
    """

    def __init__(self, keys: str | bytes | Sequence[str | bytes], table: str) -> None:
        # Loaded only by stores that encrypt: the encryption package imports the SDK.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        from ..encryption.crypto import KeyRing, parse_master_keys  # noqa: PLC0415

        masters = parse_master_keys(keys)
        label = f"agent_sessions/memory/{table}"
        readers = {m.kid: AESGCM(m.session_key(label)) for m in masters}
        self._ring: KeyRing = KeyRing(writer=masters[0].kid, readers=readers)
        self.key_ids = tuple(readers)

    def __repr__(self) -> str:
        return f"<ValueCipher keys={list(self.key_ids)!r} secrets=<redacted>>"

    def _cipher(self, namespace: str, key: str) -> SessionCipher:
        from ..encryption.crypto import SessionCipher  # noqa: PLC0415

        return SessionCipher(f"memory\x00{namespace}\x00{key}", self._ring)

    def seal(self, namespace: str, key: str, text: str, now: float) -> str:
        """Encrypt a value's JSON text into the envelope's JSON text."""
        envelope = self._cipher(namespace, key).seal(text, int(now))
        return _JSON.encode(envelope)  # type: ignore[arg-type]

    def open(self, namespace: str, key: str, stored: str) -> str:
        """Decrypt a stored envelope back to the value's JSON text.

        Raises:
            CorruptItemError: it is not an envelope, was sealed under an unknown key, was
                changed, or belongs to another namespace or key (``DecryptionError`` and
                ``UnknownKeyError`` are both ``CorruptItemError``).
        """
        cipher = self._cipher(namespace, key)
        try:
            envelope = _JSON.decode(stored)
        except (ValueError, TypeError) as exc:
            raise CorruptItemError(key, f"the stored value is not an envelope: {exc}") from exc
        plain, _, _ = cipher.open(envelope)
        return plain

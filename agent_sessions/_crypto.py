"""Keys and sealing for ``EncryptedSession``: master keys, per-session keys, AES-GCM envelopes.

A master key never encrypts an item itself. Each session gets its own AES-256-GCM key, either
derived from a master key with HKDF bound to the session id, or (for crypto-shredding) a random
data key that a master key wraps. Every key has a short public id (a one-way fingerprint), stored
beside each ciphertext, so a read picks the right key at once and can tell "unknown key" from
"tampered". The envelope's version, key id, timestamp and the session id are authenticated as
associated data: changing any of them, or moving a row to another session, fails decryption.
"""

from __future__ import annotations

import base64
import binascii
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import DecryptionError, UnknownKeyError

__all__ = [
    "ENVELOPE_VERSION",
    "KeyRing",
    "MasterKey",
    "SessionCipher",
    "WeakKeyWarning",
    "new_data_key",
    "parse_master_keys",
    "wrapped_by",
]

ENVELOPE_VERSION = "as1"
"""The ``__enc__`` tag of our envelope; bump it when the format changes."""

_NONCE_BYTES = 12
_KEY_BYTES = 32
_SALT = b"agent_sessions/encrypted-session/v1"


class WeakKeyWarning(UserWarning):
    """An encryption key was given as a plain string (a password), not as a generated key."""


MasterKeyInput = str | bytes
"""A master key as given: a Fernet key (urlsafe base64 of 32 bytes), 32+ raw bytes, or a string."""


def _hkdf(secret: bytes, info: bytes, length: int = _KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ciphertext_text(data: bytes) -> str:
    # Standard base64 through binascii: several times faster than the urlsafe variant.
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _ciphertext_bytes(text: str) -> bytes:
    return binascii.a2b_base64(text)


def _session_bytes(session_id: str) -> bytes:
    # surrogatepass: any str is a valid session id, even one with a lone surrogate.
    return session_id.encode("utf-8", "surrogatepass")


def key_id(secret: bytes, kind: bytes) -> str:
    """Return a key's public id: 8 characters of a one-way fingerprint of it."""
    return _b64(_hkdf(secret, b"key-id/" + kind, 6))


@dataclass(frozen=True)
class MasterKey:
    """A master key's secret bytes and its public id."""

    secret: bytes
    kid: str

    def session_key(self, session_id: str) -> bytes:
        """Derive this key's AES-256 key for one session (HKDF, bound to the session id)."""
        return _hkdf(self.secret, b"session/" + _session_bytes(session_id))

    def _wrapping(self) -> AESGCM:
        return AESGCM(_hkdf(self.secret, b"data-key-wrap"))

    def wrap(self, data_key: bytes, session_id: str) -> str:
        """Encrypt a session's data key for a key store: ``as1.<master kid>.<ciphertext>``."""
        nonce = os.urandom(_NONCE_BYTES)
        aad = b"data-key\x00" + _session_bytes(session_id)
        sealed = self._wrapping().encrypt(nonce, data_key, aad)
        return f"{ENVELOPE_VERSION}.{self.kid}.{_b64(nonce + sealed)}"

    def unwrap(self, record: str, session_id: str) -> bytes:
        """Decrypt a record made by :meth:`wrap` for the same session.

        Raises:
            DecryptionError: the record was changed, or belongs to another session.
        """
        try:
            blob = _unb64(record.split(".", 2)[2])
            aad = b"data-key\x00" + _session_bytes(session_id)
            return self._wrapping().decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
        except (InvalidTag, IndexError, ValueError, binascii.Error) as exc:
            raise DecryptionError(
                session_id,
                "its data key record failed authentication (changed, or another session's)",
            ) from exc


def wrapped_by(record: str) -> str:
    """Return the id of the master key a data key record was wrapped under ("" if malformed)."""
    parts = record.split(".", 2)
    return parts[1] if len(parts) == len(("version", "kid", "ciphertext")) else ""


def parse_master_key(key: MasterKeyInput) -> MasterKey:
    """Accept a master key the way the SDK does, refusing what cannot be a key.

    Raises:
        ValueError: the key is empty, or bytes shorter than 32.
        TypeError: the key is neither str nor bytes.
    """
    if isinstance(key, bytes):
        # Fernet.generate_key() returns bytes: the same key as its text form.
        secret = _fernet_key_bytes(key) or key
        if len(secret) < _KEY_BYTES:
            raise ValueError(f"a master key given as bytes needs 32 or more, got {len(key)}")
    elif isinstance(key, str):
        if not key:
            raise ValueError("encryption_key is empty")
        secret = _fernet_key_bytes(key) or b""
        if not secret:
            warnings.warn(
                "encryption_key is not a Fernet key, so it is used as a raw secret: HKDF does not "
                "strengthen a password. Use Fernet.generate_key() or 32 random bytes.",
                WeakKeyWarning,
                stacklevel=4,
            )
            secret = key.encode("utf-8", "surrogatepass")
    else:
        raise TypeError(f"encryption_key must be str or bytes, got {type(key).__name__}")
    return MasterKey(secret, key_id(secret, b"master"))


def _fernet_key_bytes(key: str | bytes) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii") if isinstance(key, str) else key)
    except (ValueError, binascii.Error):
        return None
    return raw if len(raw) == _KEY_BYTES else None


def parse_master_keys(keys: MasterKeyInput | Sequence[MasterKeyInput]) -> tuple[MasterKey, ...]:
    """Parse one master key, or a list of them newest first (the first one encrypts).

    Raises:
        ValueError: the list is empty, or a key is unusable.
    """
    if isinstance(keys, (str, bytes)):
        return (parse_master_key(keys),)
    if not isinstance(keys, (list, tuple)):
        raise TypeError(
            "encryption_key must be a key (str or bytes) or a list of keys, newest first; "
            f"got {type(keys).__name__}"
        )
    parsed = tuple(parse_master_key(key) for key in keys)
    if not parsed:
        raise ValueError("encryption_key is an empty list; give at least one key")
    return parsed


def new_data_key() -> bytes:
    """Return a fresh random AES-256 data key."""
    return AESGCM.generate_key(bit_length=256)


@dataclass(frozen=True)
class KeyRing:
    """A session's AES-GCM keys by id: the one that encrypts, and all that may decrypt."""

    writer: str
    readers: dict[str, AESGCM]


class SessionCipher:
    """Seals and opens one session's envelopes.

    Args:
        session_id: Bound into every ciphertext as associated data.
        ring: The keys; ``ring.writer`` must be among ``ring.readers``.
    """

    def __init__(self, session_id: str, ring: KeyRing) -> None:
        self.session_id = session_id
        self.ring = ring
        self._sid = _session_bytes(session_id)

    def _aad(self, kid: str, ts: int) -> bytes:
        return f"{ENVELOPE_VERSION}\x00{kid}\x00{ts}\x00".encode("ascii") + self._sid

    def seal(self, plaintext: str, ts: int, kid: str | None = None) -> dict[str, str | int]:
        """Encrypt ``plaintext`` under the writing key (or ``kid``), stamped with ``ts``."""
        kid = kid or self.ring.writer
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self.ring.readers[kid].encrypt(
            nonce, plaintext.encode("utf-8", "surrogatepass"), self._aad(kid, ts)
        )
        ct = _ciphertext_text(nonce + sealed)
        return {"__enc__": ENVELOPE_VERSION, "kid": kid, "ts": ts, "ct": ct}

    def open(self, envelope: object) -> tuple[str, int, str]:
        """Authenticate and decrypt an envelope.

        Returns:
            The plaintext, the timestamp it was sealed with, and the id of its key.

        Raises:
            UnknownKeyError: it was sealed under a key this ring does not hold.
            DecryptionError: it is not our envelope, or it fails authentication.
        """
        kid, ts, blob = self.parse(envelope)
        cipher = self.ring.readers.get(kid)
        if cipher is None:
            raise UnknownKeyError(
                self.session_id,
                f"it was encrypted under key id {kid!r}, which is not among the configured "
                "keys (a wrong or retired key, or a shredded data key)",
            )
        try:
            plain = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._aad(kid, ts))
        except InvalidTag as exc:
            raise DecryptionError(
                self.session_id,
                "its ciphertext failed authentication (tampered, truncated, or copied from "
                "another session)",
            ) from exc
        return plain.decode("utf-8", "surrogatepass"), ts, kid

    def parse(self, envelope: object) -> tuple[str, int, bytes]:
        """Return an envelope's key id, timestamp and raw ciphertext, unauthenticated.

        Raises:
            DecryptionError: it is not an envelope of this format.
        """
        if not isinstance(envelope, dict) or envelope.get("__enc__") != ENVELOPE_VERSION:
            raise DecryptionError(
                self.session_id, "the row is not an encrypted envelope (plaintext or foreign)"
            )
        kid, ts, ct = envelope.get("kid"), envelope.get("ts"), envelope.get("ct")
        if not isinstance(kid, str) or type(ts) is not int or not isinstance(ct, str):
            raise DecryptionError(self.session_id, "the envelope is missing kid, ts or ct")
        try:
            blob = _ciphertext_bytes(ct)
        except (ValueError, binascii.Error) as exc:
            raise DecryptionError(self.session_id, "the ciphertext is not base64") from exc
        if len(blob) < _NONCE_BYTES + 16:
            raise DecryptionError(self.session_id, "the ciphertext is truncated")
        return kid, ts, blob

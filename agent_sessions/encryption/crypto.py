"""Keys and sealing for ``EncryptedSession``: master keys, per-session keys, AES-GCM envelopes.

A master key never encrypts an item itself. Each session gets its own AES-256-GCM key, either
derived from a master key with HKDF bound to the session id, or (for crypto-shredding) a random
data key that a master key wraps. Every key has a short public id (a one-way fingerprint), stored
beside each ciphertext, so a read picks the right key at once and can tell "unknown key" from
"tampered". The envelope's version, key id, timestamp and the session id are authenticated as
associated data: changing any of them, or moving a row to another session, fails decryption.

The SDK's own ``EncryptedSession`` envelope (``{"__enc__": 1, "v": 1, "kid": "hkdf-v1",
"payload": <Fernet token>}``, the Fernet key derived with HKDF-SHA256 salted with the session
id) is read as a legacy format, authenticated and TTL-checked like the SDK does, and can be
written on request so that the SDK's class can read what this package stored.

Every object that holds key material has a ``repr`` that shows key ids only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import DecryptionError, UnknownKeyError

__all__ = [
    "ENVELOPE_VERSION",
    "SDK_KID",
    "KeyRing",
    "MasterKey",
    "SessionCipher",
    "WeakKeyWarning",
    "ahead_of",
    "new_data_key",
    "parse_master_keys",
    "sdk_kid",
    "wrapped_by",
]

ENVELOPE_VERSION = "as1"
"""The ``__enc__`` tag of our envelope; bump it when the format changes."""

SDK_KID = "hkdf-v1"
"""The ``kid`` the SDK's ``EncryptedSession`` writes into every envelope (one fixed value)."""

_SDK_INFO = b"agents.session-store.hkdf.v1"
_SDK_PREFIX = "sdk/"  # key ids of SDK-format keys, as this module reports them: sdk/<master kid>
_SDK_ENVELOPE_KEYS = frozenset({"__enc__", "v", "kid", "payload"})
_FERNET_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_MAX_CLOCK_SKEW = 60  # seconds a Fernet token may be stamped ahead of the clock, as Fernet allows
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
    """Decode our ciphertext strictly: only the canonical base64 of some bytes is accepted.

    ``a2b_base64`` alone skips characters outside the alphabet and ignores unused low bits,
    so a row with junk inserted (or its last character nudged) would decode to the same bytes
    and authenticate. Strict mode refuses the junk, and re-encoding the last group refuses
    unused bits.
    """
    blob = binascii.a2b_base64(text, strict_mode=True)
    tail = len(blob) % 3
    if tail and _ciphertext_text(blob[-tail:]) != text[-4:]:
        raise ValueError("the ciphertext is not canonical base64")
    return blob


def _fernet_token_bytes(token: str) -> bytes:
    """Return a Fernet token's bytes if it is exactly canonical urlsafe base64, else raise."""
    if not _FERNET_TOKEN.fullmatch(token) or len(token) % 4:
        raise ValueError("the Fernet token is not base64")
    raw = base64.urlsafe_b64decode(token)
    if base64.urlsafe_b64encode(raw).decode("ascii") != token:
        raise ValueError("the Fernet token is not canonical base64")
    return token.encode("ascii")


def _session_bytes(session_id: str) -> bytes:
    # surrogatepass: any str is a valid session id, even one with a lone surrogate.
    return session_id.encode("utf-8", "surrogatepass")


def key_id(secret: bytes, kind: bytes) -> str:
    """Return a key's public id: 8 characters of a one-way fingerprint of it."""
    return _b64(_hkdf(secret, b"key-id/" + kind, 6))


@dataclass(frozen=True, repr=False)
class MasterKey:
    """A master key's secret bytes and its public id; its ``repr`` shows the id only."""

    secret: bytes
    kid: str

    def __repr__(self) -> str:
        return f"<MasterKey kid={self.kid!r} secret=<redacted>>"

    def sdk_fernet(self, session_id: str) -> Fernet:
        """Return the Fernet the SDK's ``EncryptedSession`` derives from this key for a session."""
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=_KEY_BYTES,
            salt=_session_bytes(session_id),
            info=_SDK_INFO,
        ).derive(self.secret)
        return Fernet(base64.urlsafe_b64encode(derived))

    def session_key(self, session_id: str) -> bytes:
        """Derive this key's AES-256 key for one session (HKDF, bound to the session id)."""
        return _hkdf(self.secret, b"session/" + _session_bytes(session_id))

    def digest_key(self, session_id: str) -> bytes:
        """Derive the key that makes a session's item digests secret (HKDF, bound to the id).

        Provenance stores a digest per item to tell a retry from new items; keyed, it tells
        nothing about the plaintext to whoever reads the database.
        """
        return _hkdf(self.secret, b"item-digest/" + _session_bytes(session_id))

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
                stacklevel=5,
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

    A refusal is raised afresh from here, with the key deleted from this frame, so a
    traceback formatted with its locals (``capture_locals=True``) never shows the key.

    Raises:
        ValueError: the list is empty, or a key is unusable.
        TypeError: a key is neither str nor bytes, or the list is not a list.
    """
    try:
        return _parse_master_keys(keys)
    except (TypeError, ValueError) as exc:
        error: Exception = type(exc)(str(exc))
    finally:
        del keys
    raise error from None


def _parse_master_keys(keys: MasterKeyInput | Sequence[MasterKeyInput]) -> tuple[MasterKey, ...]:
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
    """A session's keys by id: the one that encrypts, and all that may decrypt.

    ``readers`` holds AES-GCM keys of our envelope; ``legacy`` the SDK's Fernet keys (by
    ``sdk/<master kid>``), tried in order on an SDK envelope. ``writer`` may name either.
    """

    writer: str
    readers: dict[str, AESGCM]
    legacy: dict[str, Fernet] = field(default_factory=dict)

    def __repr__(self) -> str:
        keys = ", ".join([*self.readers, *self.legacy])
        return f"<KeyRing writer={self.writer!r} keys=[{keys}] secrets=<redacted>>"


def sdk_kid(master_kid: str) -> str:
    """Return the id this module gives the SDK-format key derived from a master key."""
    return _SDK_PREFIX + master_kid


class SessionCipher:
    """Seals and opens one session's envelopes: ours, and the SDK's as a legacy format.

    Args:
        session_id: Bound into every ciphertext as associated data.
        ring: The keys; ``ring.writer`` must be among ``ring.readers`` or ``ring.legacy``
            (then :meth:`seal` writes the SDK's envelope).
    """

    def __init__(self, session_id: str, ring: KeyRing) -> None:
        self.session_id = session_id
        self.ring = ring
        self._sid = _session_bytes(session_id)

    def __repr__(self) -> str:
        return f"<SessionCipher session_id={self.session_id!r} ring={self.ring!r}>"

    def _aad(self, kid: str, ts: int) -> bytes:
        return f"{ENVELOPE_VERSION}\x00{kid}\x00{ts}\x00".encode("ascii") + self._sid

    def seal(self, plaintext: str, ts: int, kid: str | None = None) -> dict[str, str | int]:
        """Encrypt ``plaintext`` under the writing key (or ``kid``), stamped with ``ts``."""
        kid = kid or self.ring.writer
        data = plaintext.encode("utf-8", "surrogatepass")
        fernet = self.ring.legacy.get(kid)
        if fernet is not None:
            token = fernet.encrypt_at_time(data, ts).decode("ascii")
            return {"__enc__": 1, "v": 1, "kid": SDK_KID, "payload": token}
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self.ring.readers[kid].encrypt(nonce, data, self._aad(kid, ts))
        ct = _ciphertext_text(nonce + sealed)
        return {"__enc__": ENVELOPE_VERSION, "kid": kid, "ts": ts, "ct": ct}

    def open(self, envelope: object) -> tuple[str, int, str]:
        """Authenticate and decrypt an envelope.

        Returns:
            The plaintext, the timestamp it was sealed with, and the id of its key
            (``sdk/<master kid>`` for an SDK envelope).

        Raises:
            UnknownKeyError: it was sealed under a key this ring does not hold.
            DecryptionError: it is not an envelope, or it fails authentication.
        """
        if isinstance(envelope, dict) and envelope.get("__enc__") != ENVELOPE_VERSION:
            return self._open_sdk(envelope)
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

    def _open_sdk(self, envelope: dict[str, object]) -> tuple[str, int, str]:
        """Open the SDK's envelope: exactly its four fields, a canonical token, a known key."""
        payload = envelope.get("payload")
        if (
            envelope.keys() != _SDK_ENVELOPE_KEYS
            or type(envelope["__enc__"]) is not int
            or envelope["__enc__"] != 1
            or type(envelope["v"]) is not int
            or envelope["v"] != 1
            or envelope["kid"] != SDK_KID
            or not isinstance(payload, str)
        ):
            raise DecryptionError(
                self.session_id, "the row is not an encrypted envelope (plaintext or foreign)"
            )
        try:
            token = _fernet_token_bytes(payload)
        except ValueError as exc:
            raise DecryptionError(
                self.session_id, "the SDK envelope's token is not base64"
            ) from exc
        for kid, fernet in self.ring.legacy.items():
            try:
                ts = fernet.extract_timestamp(token)  # authenticates the whole token
                return fernet.decrypt(token).decode("utf-8", "surrogatepass"), ts, kid
            except InvalidToken:
                continue
        raise UnknownKeyError(
            self.session_id,
            "its SDK-format envelope opens under none of the configured master keys (a wrong "
            "key, or the token was changed)",
        )

    def parse(self, envelope: object) -> tuple[str, int, bytes]:
        """Return our envelope's key id, timestamp and raw ciphertext, unauthenticated.

        Raises:
            DecryptionError: it is not an envelope of this format.
        """
        if not isinstance(envelope, dict) or envelope.get("__enc__") != ENVELOPE_VERSION:
            raise DecryptionError(
                self.session_id, "the row is not an encrypted envelope (plaintext or foreign)"
            )
        kid, ts, ct = envelope.get("kid"), envelope.get("ts"), envelope.get("ct")
        if (
            len(envelope) != len(("__enc__", "kid", "ts", "ct"))
            or not isinstance(kid, str)
            or type(ts) is not int
            or not isinstance(ct, str)
        ):
            raise DecryptionError(self.session_id, "the envelope is missing kid, ts or ct")
        try:
            blob = _ciphertext_bytes(ct)
        except (ValueError, binascii.Error) as exc:
            raise DecryptionError(self.session_id, "the ciphertext is not base64") from exc
        if len(blob) < _NONCE_BYTES + 16:
            raise DecryptionError(self.session_id, "the ciphertext is truncated")
        return kid, ts, blob


def ahead_of(ts: int, now: float) -> bool:
    """Whether a Fernet timestamp is further ahead of ``now`` than Fernet's clock skew allows."""
    return ts > now + _MAX_CLOCK_SKEW

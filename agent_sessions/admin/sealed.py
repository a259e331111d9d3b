"""Opening an ``EncryptedSession``'s rows for an operator: decrypted, or counted by key id.

``agent-sessions show`` reads rows as stored. An envelope (``{"__enc__": "as1", "kid": ...}``,
or the SDK's ``{"__enc__": 1, "kid": "hkdf-v1", ...}``) is opened here with master keys given
by the operator, the way ``EncryptedSession`` derives them for the session: our envelope under
each key's per-session AES key, the SDK's under its Fernet key. A row no given key opens is
reported with its key id and the reason, never as data.

Rows sealed under a key store's data key (``key_store=``) open too when the session's data key
record is given (:func:`data_key_record` reads it from a ``SQLiteKeyStore`` file, read-only),
unwrapped with the same master keys. No TTL applies: it is the session object's setting, not
stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DecryptionError
from ..serialization import JsonCodec
from .rows import StoredRow

if TYPE_CHECKING:  # the cipher stack (and the SDK) loads only when a key is given
    from ..encryption.crypto import MasterKeyInput, SessionCipher

__all__ = ["Opened", "SealedSummary", "data_key_record", "envelope_kid", "open_rows"]

_JSON = JsonCodec()
_SDK_KID = "hkdf-v1"  # the key id of the SDK's envelope (encryption.crypto.SDK_KID)
_KEY_TABLE = "agent_session_keys"  # SQLiteKeyStore's table


@dataclass(frozen=True)
class Opened:
    """One row after an attempt to open it.

    Attributes:
        row: The row as stored.
        kid: The key id its envelope names (``hkdf-v1`` for the SDK's format); None if the
            row is not an envelope.
        plaintext: The decrypted item's JSON text; None if the row is not an envelope or
            could not be opened.
        problem: Why an envelope could not be opened (None if it was, or no key was given).
    """

    row: StoredRow
    kid: str | None
    plaintext: str | None = None
    problem: str | None = None


@dataclass
class SealedSummary:
    """How a session's rows are encrypted, for the header of ``show``.

    Attributes:
        encrypted: Rows that are envelopes.
        decrypted: Of those, rows a given key opened.
        key_ids: Envelopes per key id, in order of first appearance.
        undecryptable: Envelopes a given key did not open, per key id (empty without keys).
    """

    encrypted: int = 0
    decrypted: int = 0
    key_ids: dict[str, int] = field(default_factory=dict)
    undecryptable: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "encrypted": self.encrypted,
            "decrypted": self.decrypted,
            "key_ids": dict(self.key_ids),
            "undecryptable": dict(self.undecryptable),
        }


def envelope_kid(text: str) -> str | None:
    """The key id an encrypted row names, or None if the row is no envelope."""
    try:
        decoded: Any = _JSON.decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict) or "__enc__" not in decoded:
        return None
    kid = decoded.get("kid")
    return kid if isinstance(kid, str) else "?"


def data_key_record(path: str, session_id: str) -> str | None:
    """A session's data key record in a ``SQLiteKeyStore`` file, read-only; None if it has none.

    Raises:
        ValueError: the file does not exist or is not a key store.
    """
    from pathlib import Path  # noqa: PLC0415

    if not Path(path).is_file():
        raise ValueError(f"--key-store {path}: no such file")
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    query = f"SELECT record FROM {_KEY_TABLE} WHERE session_id = ?"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            found = conn.execute(query, (session_id,)).fetchone()
    except sqlite3.Error as exc:
        raise ValueError(f"--key-store {path}: not a key store file ({exc})") from exc
    return None if found is None else str(found[0])


def _cipher(
    session_id: str,
    keys: MasterKeyInput | Sequence[MasterKeyInput],
    record: str | None,
) -> SessionCipher:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    from ..encryption.crypto import (  # noqa: PLC0415
        KeyRing,
        SessionCipher,
        key_id,
        parse_master_keys,
        sdk_kid,
        wrapped_by,
    )

    try:
        masters = parse_master_keys(keys)
    finally:
        del keys  # keep the secret out of tracebacks formatted with locals
    readers = {m.kid: AESGCM(m.session_key(session_id)) for m in masters}
    if record is not None:
        wrapper = next((m for m in masters if m.kid == wrapped_by(record)), None)
        if wrapper is None:
            raise ValueError(
                f"the data key of session {session_id!r} is wrapped under master key id "
                f"{wrapped_by(record)!r}, which none of the given keys is"
            )
        data_key = wrapper.unwrap(record, session_id)
        readers[key_id(data_key, b"data")] = AESGCM(data_key)
    legacy = {sdk_kid(m.kid): m.sdk_fernet(session_id) for m in masters}
    return SessionCipher(session_id, KeyRing(masters[0].kid, readers, legacy))


def open_rows(
    rows: Sequence[StoredRow],
    session_id: str,
    keys: MasterKeyInput | Sequence[MasterKeyInput] | None,
    data_key: str | None = None,
) -> tuple[list[Opened], SealedSummary]:
    """Open a session's encrypted rows with master keys (newest first), read only.

    Args:
        rows: The rows as stored, oldest first.
        session_id: Their session (bound into every ciphertext).
        keys: One master key or a list of them, as ``EncryptedSession`` takes them; None to
            only count the envelopes by key id.
        data_key: The session's data key record from its key store (see
            :func:`data_key_record`), unwrapped with ``keys``; None without a key store.

    Returns:
        Each row with its plaintext where a key opened it, and the summary.

    Raises:
        ValueError: a key is empty or unusable, or no key unwraps ``data_key``.
        DecryptionError: ``data_key`` fails authentication (changed, or another session's).
    """
    cipher = None if keys is None else _cipher(session_id, keys, data_key)
    del keys
    summary = SealedSummary()
    opened: list[Opened] = []
    for row in rows:
        kid = envelope_kid(row.text)
        if kid is None:
            opened.append(Opened(row, None))
            continue
        summary.encrypted += 1
        summary.key_ids[kid] = summary.key_ids.get(kid, 0) + 1
        if cipher is None:
            opened.append(Opened(row, kid))
            continue
        try:
            plaintext, _, _ = cipher.open(_JSON.decode(row.text))
        except DecryptionError as exc:
            summary.undecryptable[kid] = summary.undecryptable.get(kid, 0) + 1
            problem = exc.detail if kid != _SDK_KID else f"{exc.detail} (SDK format)"
            opened.append(Opened(row, kid, problem=problem))
            continue
        summary.decrypted += 1
        opened.append(Opened(row, kid, plaintext))
    return opened, summary

"""Per-session state under ``EncryptedSession``: each value sealed, bound to its session and name.

A value is encoded by the codec (:func:`~agent_sessions.serialization.encode_state`) inside a
small JSON object that also names the state, and that text is sealed with the session's derived
key like an item (its session id is the ciphertext's associated data). So a value copied to
another session fails authentication, and one copied to another name opens but is refused: it
names another state. The TTL of items does not apply to state: a paused run waits for as long
as its human does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.memory import Session

from ..core import StoreSession, check_state_name
from ..errors import CorruptItemError, DecryptionError
from ..serialization import JSONValue, decode_state, encode_state, logger
from .codec import EnvelopeCodec

__all__ = ["EncryptedState"]


class EncryptedState:
    """Mixin of ``EncryptedSession``: ``_read_state``, ``_write_state`` and ``_update_state``.

    The host class provides the attributes and methods declared here.
    """

    session_id: str
    underlying_session: Session
    strict: bool
    _codec: EnvelopeCodec

    def _check_open(self, method: str) -> None:
        raise NotImplementedError

    async def _keys_ready(self, writing: bool) -> None:
        raise NotImplementedError

    async def _ready_to_write(self, wrapper: Any = None) -> None:
        raise NotImplementedError

    def _state_target(self, method: str) -> Any:
        self._check_open(method)
        target = self.underlying_session
        if isinstance(target, StoreSession) or hasattr(target, "_update_state"):
            return target
        raise TypeError(
            f"EncryptedSession.{method}() needs one of agent_sessions' sessions underneath "
            f"(got {type(target).__name__}): the SDK's sessions keep no per-session state"
        )

    def _seal_state(self, name: str, value: JSONValue) -> JSONValue:
        plaintext = encode_state({"state": name, "value": value}, name)
        return self._codec.seal(plaintext)

    def _open_state(self, name: str, envelope: JSONValue) -> JSONValue | None:
        plaintext, _, _ = self._codec.cipher.open(envelope)
        opened = decode_state(plaintext, session_id=self.session_id, name=name)
        if not isinstance(opened, dict) or opened.get("state") != name or "value" not in opened:
            raise DecryptionError(
                self.session_id,
                f"state {name!r} holds a value sealed for another state name (copied?)",
            )
        return opened["value"]

    async def _read_state(self, name: str) -> JSONValue | None:
        """Return the value stored under ``name``, decrypted, or None.

        A value that fails authentication (tampered, copied from another session or name,
        wrong key) is never returned: it raises when the session is strict, else it is
        logged and None is returned. It stays stored.
        """
        check_state_name(name)
        target = self._state_target("_read_state")
        await self._keys_ready(writing=False)
        envelope = await target._read_state(name)  # noqa: SLF001 - our private API
        if envelope is None:
            return None
        try:
            return self._open_state(name, envelope)
        except (CorruptItemError, ValueError, TypeError) as exc:
            if self.strict:
                raise
            logger.warning("session %r: state %r not returned: %s", self.session_id, name, exc)
            return None

    async def _write_state(self, name: str, value: JSONValue | None) -> None:
        """Seal ``value`` and store it under ``name`` in one transaction; None deletes it."""
        check_state_name(name)
        target = self._state_target("_write_state")
        sealed = None if value is None else self._seal_state(name, value)
        await self._ready_to_write()
        await target._write_state(name, sealed)  # noqa: SLF001 - our private API

    async def _update_state(
        self, name: str, change: Callable[[JSONValue | None], JSONValue | None]
    ) -> JSONValue | None:
        """Read, decrypt, change, seal and write one value in one transaction.

        Raises:
            DecryptionError: the stored value fails authentication; nothing was written (an
                update never overwrites what it could not read, strict or not).
        """
        check_state_name(name)
        target = self._state_target("_update_state")
        await self._ready_to_write()
        result: list[JSONValue | None] = []

        def sealed_change(envelope: JSONValue | None) -> JSONValue | None:
            old = None if envelope is None else self._open_state(name, envelope)
            new = change(old)
            result[:] = [new]
            return None if new is None else self._seal_state(name, new)

        await target._update_state(name, sealed_change)  # noqa: SLF001 - our private API
        return result[0] if result else None

"""One :class:`SQLiteStore` per database file for the SDK-style ``SQLiteSession(id, path)``.

Twenty ``SQLiteSession`` objects on one file used to open twenty worker threads and forty
connections, and every connection re-read the pages another had written (9,673 ``pread64``
calls in the chat benchmark against 105 for one connection). Sessions made by the drop-in
constructor now share one store per file, as ``SQLiteStore.session()`` always allowed: one
thread, one writer and one reader, and concurrent writes committed together.

Why a module-level registry, when STYLE rule 6 says "no class-level registries": the SDK's
constructor takes only a path, so the sessions of one file can find each other nowhere else
(issue 16 asks for exactly this). The rule's worries are kept away by how it is built:

- It holds no store alive. Entries are weak (``WeakValueDictionary``); each session holds a
  reference-counted :class:`Lease`, and the store is closed, and its entry dropped, when the
  last session closes. A test that closes its sessions leaves nothing behind.
- It is bound to no event loop: the store's worker is a thread, and every call is answered on
  the loop that made it, so sessions in different loops or threads share a store safely (the
  loop-side reader serves one thread at a time; others read through the worker).
- A session collected unclosed still warns (``ResourceWarning``) and gives its lease back.
- A file deleted or replaced since its store opened is not shared any more: a new session gets
  a new store on the new file, while the old store's sessions report ``DatabaseFileGoneError``.
- ``":memory:"`` databases are private to their session, as before.

The key is the file's resolved real path with the table names, durability, busy timeout and
store class: sessions that differ in any of them get stores of their own.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..schema import TableNames
from ._sqlite_connection import create_owner_only, file_identity

__all__ = ["Lease", "abandon", "lease"]

_Key = tuple[str, str, str, bool, float, str]


class _Store(Protocol):
    """What the registry needs of a store (``SQLiteStore``, which imports this module)."""

    @property
    def closed(self) -> bool: ...

    def abandon(self) -> None: ...


S = TypeVar("S", bound=_Store)


class _Shared(Generic[S]):
    """A store and how many sessions hold it; only touched under ``_lock``."""

    def __init__(self, key: _Key, store: S, identity: tuple[int, int] | None) -> None:
        self.key = key
        self.store = store
        self.identity = identity
        self.users = 0


_lock = threading.Lock()
_shared: weakref.WeakValueDictionary[_Key, _Shared[Any]] = weakref.WeakValueDictionary()


class Lease(Generic[S]):
    """One session's claim on a shared store; given back once (close, aclose or collection)."""

    def __init__(self, shared: _Shared[S]) -> None:
        self._shared: _Shared[S] | None = shared

    def release(self) -> S | None:
        """Give the claim back; return the store if it was the last one (the caller closes it)."""
        with _lock:
            shared, self._shared = self._shared, None
            if shared is None:
                return None
            shared.users -= 1
            if shared.users:
                return None
            store, key = shared.store, shared.key
            if _shared.get(key) is shared:
                del _shared[key]
            return store


def lease(
    path: str,
    tables: TableNames,
    durable: bool,
    busy_timeout: float,
    make: Callable[[], S],
    *,
    kind: str = "SQLiteStore",
) -> tuple[S, Lease[S]]:
    """Return the open store of this file and settings, made by ``make`` if there is none.

    ``kind`` names the store class: an advanced session and a plain one on one file have
    stores of their own.

    A store whose file was deleted or replaced since it opened is passed over: its sessions
    keep it (and learn of it on their next write), new sessions get a store of their own.
    """
    real = os.path.realpath(path)
    key: _Key = (real, tables.sessions, tables.messages, durable, busy_timeout, kind)
    now = file_identity(real)
    with _lock:
        shared: _Shared[Any] | None = _shared.get(key)
        if shared is not None and shared.identity is None:
            shared.identity = now  # the file did not exist yet when the store was made
        if shared is None or shared.store.closed or (now != shared.identity):
            # Create the file now (as the worker would, 0600): its identity is known from the
            # start, so a file deleted before the worker opened it is not shared either.
            create_owner_only(real)
            shared = _Shared(key, make(), file_identity(real))
            _shared[key] = shared
        shared.users += 1
        return shared.store, Lease(shared)


def abandon(lease: Lease[_Store], label: str) -> None:
    """A session's finalizer: it was collected unclosed. Warn, and give its lease back.

    The last lease stops the store's thread without waiting (a finalizer must not block).
    """
    warnings.warn(
        f"{label} was never closed; call close() or use 'async with'", ResourceWarning, stacklevel=2
    )
    store = lease.release()
    if store is not None:
        store.abandon()

"""How ``EncryptedSession`` delegates: to the SDK's compaction session, and helpers for the rest.

The compaction pass-through drives the hooks the SDK's ``OpenAIResponsesCompactionSession`` offers
to wrappers (``_run_compaction(read_items=..., prepare_items=..., read_snapshot=...)``), so the
compaction model sees decrypted items and what it returns is stored encrypted. With the SDK's
wrapper over ``EncryptedSession`` instead, the same happens through the hooks the wrapper looks up
on the session below it (``_get_compaction_snapshot``, ``_read_compaction_items``,
``_atomic_replace_items``). Rows that cannot be read are never handed to a compaction that would
replace them.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession, Session
from agents.run_context import RunContextWrapper

try:  # the SDK's snapshot type (openai-agents >= 0.24)
    from agents.memory.session import _CompactionSnapshot
except ImportError:  # pragma: no cover - older SDKs have no suffix compaction
    _CompactionSnapshot = None  # type: ignore[assignment,misc]

from .._lifecycle import Closing
from ..core import StoreSession

if _CompactionSnapshot is not None:
    from ..core import ArchivingSnapshot
from ..errors import DecryptionError
from ..provenance import takes_wrapper
from ..serialization import JsonCodec, SkipRow, logger
from ..store import RowStore
from .codec import EnvelopeCodec
from .keystore import KeyStore

__all__ = [
    "COMPACTION_HOOKS",
    "KEY_CHECK_ROWS",
    "PROTOCOL",
    "CompactionPassThrough",
    "as_text",
    "check_same_id",
    "close_now",
    "protocol_is_ours",
    "settle",
    "system_clock",
    "takes_wrapper",
]

_JSON = JsonCodec()

KEY_CHECK_ROWS = 16  # newest rows a first write looks at for one the keys open

PROTOCOL = ("get_items", "add_items", "pop_item", "clear_session")
# The SDK's compaction session hooks the Runner looks up by name on the outermost session.
COMPACTION_HOOKS = frozenset(
    {
        "_get_items_with_generation",
        "_add_items_with_generation",
        "_get_deferred_compaction_response_id",
        "_clear_deferred_compaction",
        "_ignore_ids_for_matching",
    }
)


class CompactionPassThrough:
    """Mixin of ``EncryptedSession``: ``run_compaction`` over the SDK's compaction session.

    The host class provides the attributes and methods declared here.
    """

    session_id: str
    underlying_session: Session
    _codec: EnvelopeCodec

    def _check_open(self, method: str) -> None:
        raise NotImplementedError

    async def _ready_to_write(self, wrapper: RunContextWrapper[Any] | None = None) -> None:
        raise NotImplementedError

    async def _keys_ready(self, writing: bool) -> None:
        raise NotImplementedError

    def _seal_items(self, items: list[TResponseInputItem]) -> list[TResponseInputItem]:
        raise NotImplementedError

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the host's decrypted items."""
        raise NotImplementedError

    def _compaction(self) -> OpenAIResponsesCompactionSession:
        session = self.underlying_session
        hook = getattr(session, "_run_compaction", None)
        if not isinstance(session, OpenAIResponsesCompactionSession) or not has_params(
            hook, "read_items", "prepare_items", "read_snapshot"
        ):
            raise TypeError(
                "EncryptedSession.run_compaction() needs the SDK's "
                "OpenAIResponsesCompactionSession (openai-agents >= 0.24) underneath"
            )
        return session

    async def _encrypted_run_compaction(
        self,
        args: Any = None,
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        """Compact the decrypted history with the compaction session underneath.

        The compaction model sees plaintext; what it returns is stored encrypted. A manual
        (not Runner-triggered) compaction replaces the whole stored history, so it is refused
        while any stored row cannot be read: that row would be deleted unread.

        Raises:
            DecryptionError: a manual compaction would delete rows that cannot be read.
        """
        self._check_open("run_compaction")
        session = self._compaction()
        await self._ready_to_write(wrapper)
        if not getattr(wrapper, "_session_compaction_is_automatic", False):
            _, unreadable = await self._compaction_rows(None)
            if unreadable:
                raise DecryptionError(
                    self.session_id,
                    f"run_compaction() would replace {unreadable} stored row(s) that cannot be "
                    "read (wrong key or tampered); nothing was compacted",
                )
        await session._run_compaction(  # noqa: SLF001 - the SDK's hook for wrappers
            args,
            wrapper=wrapper,
            read_items=self._compaction_reader(wrapper),
            prepare_items=self._seal_items,
            read_snapshot=self._get_compaction_snapshot,
        )

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: Callable[[TResponseInputItem], bool] | None = None
    ) -> Any:
        """The SDK's suffix-compaction hook: the newest ``limit`` rows decrypted, and their swap.

        Built on the underlying session's own snapshot (this package's sessions over a store
        that swaps rows atomically, or the SDK's): its rows are decrypted here, and the
        replacement suffix is encrypted before the underlying session swaps it in, which it
        does only if the rows are still exactly the ones read. Expired rows are left out of
        the items; after a swap over this package's sessions the session's expired rows are
        purged (:meth:`purge_expired`), as the SDK prunes its expired prefix. Returns None
        (the SDK then compacts only a history it can read whole) when the underlying session
        has no snapshot, when a prefix should be pruned, or when any row in the window cannot
        be read: such a row is never returned and never deleted.
        """
        self._check_open("get_items")
        backend = self.underlying_session
        if isinstance(backend, OpenAIResponsesCompactionSession):
            backend = backend.underlying_session
        reader = getattr(backend, "_get_compaction_snapshot", None)
        if _CompactionSnapshot is None or reader is None or prune_prefix is not None:
            return None
        await self._keys_ready(writing=False)
        # Over this package's sessions the expired rows are purged after a swap; a foreign
        # snapshot (the SDK's) is asked to prune the expired prefix with the swap itself.
        rows: RowStore | None = None
        if isinstance(backend, StoreSession) and protocol_is_ours(backend):
            rows = backend.store if isinstance(backend.store, RowStore) else None
            raw = await reader(limit)
        elif has_params(reader, "prune_prefix"):
            raw = await reader(limit, prune_prefix=self._is_expired_envelope)
        else:
            raw = await reader(limit)
        if raw is None:
            return None
        items: list[TResponseInputItem] = []
        positions: list[int] = []  # where each item's row is in the raw window
        for index, entry in enumerate(raw.items):
            try:
                items.append(self._codec.decode(as_text(entry)))
            except SkipRow:
                continue  # expired: authenticated and past its TTL, never shown
            except (ValueError, TypeError, RecursionError):
                return None  # never compact around (or over) a row that cannot be read
            positions.append(index)

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            if not 0 <= start < len(positions):
                return False
            self._check_open("add_items")
            sealed = self._seal_items(output)  # validated and encrypted before anything moves
            await self._ready_to_write()
            # From the window's first row when the whole window goes (expired rows included).
            swapped: bool = await raw.replace_suffix(0 if start == 0 else positions[start], sealed)
            if swapped and rows is not None:
                await self._purge_after_compaction(rows, backend.session_id)
            return swapped

        raw_archive = getattr(raw, "archive_prefix", None)
        if raw_archive is None:
            return _CompactionSnapshot(items, bool(raw.complete), replace_suffix)

        async def archive_prefix(cut: int, output: list[TResponseInputItem], summary: int) -> bool:
            # The archived rows are the sealed rows themselves; the new ones are sealed here.
            if not 0 <= cut <= len(positions):
                return False
            self._check_open("add_items")
            sealed = self._seal_items(output)
            await self._ready_to_write()
            raw_cut = positions[cut] if cut < len(positions) else len(raw.items)
            swapped = bool(await raw_archive(raw_cut, sealed, summary))
            if swapped and rows is not None:
                await self._purge_after_compaction(rows, backend.session_id)
            return swapped

        return ArchivingSnapshot(items, bool(raw.complete), replace_suffix, archive_prefix)

    def _is_expired_envelope(self, item: TResponseInputItem) -> bool:
        """Whether a stored envelope authenticates under our keys and is past its TTL."""
        try:
            _, ts, _ = self._codec.cipher.open(self._codec.envelope(as_text(item)))
        except (ValueError, TypeError, RecursionError):
            return False  # unreadable is not expired: such a row is never deleted
        return self._codec.expired(ts)

    async def _purge_expired_rows(self, store: RowStore, session_id: str) -> int:
        """Delete, in one transaction, the rows that authenticate and are past their TTL."""
        doomed: dict[int, str | None] = {}
        for row_id, text in await store.rows(session_id):
            try:
                _, ts, _ = self._codec.cipher.open(self._codec.envelope(text))
            except ValueError:
                continue
            if self._codec.expired(ts):
                doomed[row_id] = None
        return await store.rewrite(session_id, doomed) if doomed else 0

    async def _purge_after_compaction(self, store: RowStore, session_id: str) -> None:
        """Delete the expired rows a suffix compaction left before its window (best effort).

        Expired rows are authenticated and past their TTL, so never shown; the SDK prunes
        them with the swap. The swap is already committed here, so a failure is logged only.
        """
        try:
            await self._purge_expired_rows(store, session_id)
        except Exception as exc:  # noqa: BLE001 - the compaction itself succeeded
            logger.warning(
                "session %r: expired rows were not purged after compaction: %s",
                self.session_id,
                exc,
            )

    async def _read_compaction_items(
        self, limit: int | None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> tuple[list[TResponseInputItem], bool]:
        """The SDK's compaction read hook: decrypted items, complete only if all are readable.

        Without it the SDK's wrapper reads ``get_items``, which passes over unreadable rows,
        takes the history for whole, and replaces it with ``clear_session``: the unreadable
        rows would be deleted.
        """
        self._check_open("get_items")
        return await self._compaction_reader(wrapper)(limit)

    async def _atomic_replace_items(self, output_items: list[TResponseInputItem]) -> bool:
        """The SDK's whole-history replacement hook: refuse while a row cannot be read.

        Over one of this package's sessions the history is replaced, encrypted, in one
        transaction (True); over another, False tells the SDK's wrapper to clear and re-add,
        with its rollback.

        Raises:
            DecryptionError: a stored row cannot be read; nothing was replaced.
        """
        self._check_open("run_compaction")
        _, unreadable = await self._compaction_rows(None)
        if unreadable:
            raise DecryptionError(
                self.session_id,
                f"compaction would replace {unreadable} stored row(s) that cannot be read "
                "(wrong key or tampered); nothing was compacted",
            )
        replace = getattr(self, "replace_items", None)
        if getattr(self, "_inner", None) is None or replace is None:
            return False
        await replace(output_items)
        return True

    async def _encrypted_defer_compaction(
        self,
        response_id: str,
        store: bool | None = None,
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        await self._compaction()._defer_compaction(  # noqa: SLF001 - the SDK's hook
            response_id, store, read_items=self._compaction_reader(wrapper)
        )

    def _compaction_reader(
        self, wrapper: RunContextWrapper[Any] | None
    ) -> Callable[[int | None], Awaitable[tuple[list[TResponseInputItem], bool]]]:
        async def read(limit: int | None) -> tuple[list[TResponseInputItem], bool]:
            if limit is None:
                return await self.get_items(wrapper=wrapper), False
            items, unreadable = await self._compaction_rows(limit)
            # Complete only if the rows read are the whole history and all of it can be
            # replaced: an unreadable row must never be deleted by a compaction.
            return (items, True) if items is not None and not unreadable else ([], False)

        return read

    async def _compaction_rows(
        self, limit: int | None
    ) -> tuple[list[TResponseInputItem] | None, int]:
        """Decode the whole history if it holds fewer than ``limit`` readable items.

        Returns:
            The items (None if ``limit`` or more are readable), and how many rows are
            unreadable. Expired rows count for neither, so the window widens past them.
        """
        window = limit
        while True:
            raw = cast(list[Any], await self.underlying_session.get_items(window))
            items: list[TResponseInputItem] = []
            unreadable = 0
            for entry in raw:
                try:
                    items.append(self._codec.decode(as_text(entry)))
                except SkipRow:
                    continue  # expired: the SDK's compaction drops these too
                except (ValueError, TypeError, RecursionError):
                    unreadable += 1
            if window is None or len(raw) < window:
                return items, unreadable
            if limit is not None and len(items) >= limit:
                return None, unreadable
            window *= 2


def system_clock() -> float:
    """Return the wall-clock time in seconds since the epoch (the default TTL clock)."""
    return time.time()


def close_now(resource: object) -> Awaitable[None] | None:
    """Close ``resource`` now if it closes synchronously; else return what is left to await."""
    close = getattr(resource, "close", None)
    if close is not None and not inspect.iscoroutinefunction(close):
        result = close()
        if isinstance(result, Closing) and result.done():
            return None
        return cast(Awaitable[None], result) if inspect.isawaitable(result) else None
    closer = getattr(resource, "aclose", None) or close
    return None if closer is None else cast(Awaitable[None], closer())


async def settle(pending: Awaitable[None] | None, key_store: KeyStore | None) -> None:
    """Finish a close: await what ``close_now`` left, then close the key store if any."""
    if pending is not None:
        await pending
    if key_store is not None:
        await key_store.aclose()


def protocol_is_ours(session: StoreSession) -> bool:
    """Whether every protocol method of ``session`` is this package's (none overridden)."""
    return all(
        getattr(type(session), name).__module__.startswith("agent_sessions.") for name in PROTOCOL
    )


def has_params(method: object, *names: str) -> bool:
    try:
        parameters = inspect.signature(method).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return all(name in parameters for name in names)


def check_same_id(session_id: str, underlying: object) -> None:
    """Refuse to seal one session's rows into another session's history."""
    underlying_id = getattr(underlying, "session_id", None)
    if isinstance(underlying_id, str) and underlying_id != session_id:
        raise ValueError(
            f"EncryptedSession session_id {session_id!r} differs from the underlying "
            f"session's {underlying_id!r}: rows sealed for {session_id!r} would be stored in "
            f"{underlying_id!r}'s history. Pass the same id to both"
        )


def as_text(item: Any) -> str:
    """Return a foreign session's stored item as row text, for the codec to judge."""
    try:
        return _JSON.encode(item)
    except (TypeError, ValueError):
        return ""

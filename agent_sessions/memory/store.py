"""The :class:`MemoryStore`: one namespaced memory store over a backend (SQLite or SQLAlchemy)."""

from __future__ import annotations

import enum
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._lifecycle import AsyncClosing, Closing
from ..errors import ItemValidationError, MemoryValueError, SessionClosedError
from ..schema import validate_identifier
from ..serialization import encode_items
from .embed import check_index, embed_texts, texts_at
from .filter import compile_filter, filter_hints
from .fulltext import searchable_text
from .keys import (
    check_key,
    check_page,
    check_ttl,
    decode_namespace,
    encode_namespace,
    encode_prefix,
    shape_namespaces,
)
from .schema import DEFAULT_MEMORY_TABLE
from .search import Page, Reader, when
from .specs import resolve_index
from .sqlite import SQLiteMemoryBackend
from .types import IndexConfig, MemoryBackend, MemoryItem, Record, SearchItem
from .vectors import pack, unit

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .crypt import ValueCipher

__all__ = ["MemoryStore", "MemoryStoreState"]


class MemoryStoreState(enum.Enum):
    """Where a store is in its life: open until ``aclose()``, then closed for good."""

    OPEN = "open"
    CLOSED = "closed"


def _warn_unclosed(label: str) -> None:
    warnings.warn(
        f"{label} was never closed, so its connection pool stays open; call aclose() or use "
        "'async with'",
        ResourceWarning,
        stacklevel=1,
    )


class MemoryStore(AsyncClosing):
    """Long-term memory: JSON values under namespaced keys, with search, TTL and an index.

    Args:
        db_path: A SQLite file (it may be the sessions' file: the memories get their own
            table), or ``":memory:"`` (the default) for a private in-memory database.
        table: The memories table; a plain SQL identifier.
        index: How ``search(query=...)`` ranks. ``"auto"`` (the default): by meaning with the
            shipped local model when the ``embeddings`` extra is installed, else by keywords
            (see :attr:`search_mode`). ``"local"``, ``"openai:text-embedding-3-small"``, or a
            config ``{"dims": 384, "embed": fn, "fields": ["text"]}`` (see
            :class:`IndexConfig`): by meaning. None: by keywords, through the database's
            full-text index.
        durable: SQLite only: ``synchronous=FULL`` (True) or faster ``NORMAL`` commits.
        strict: Raise :class:`~agent_sessions.errors.CorruptMemoryError` on an undecodable
            stored value instead of skipping it with a logged warning.
        clock: Returns the current time in seconds since the epoch (for TTLs and timestamps).
        backend: Use this backend instead of opening ``db_path`` (a custom database).
        encryption_key: Encrypt every value at rest (AES-256-GCM, keys as
            ``EncryptedSession`` takes them; a list newest first rotates keys). Namespaces,
            keys and times stay in plaintext. See docs/memory.md, "Encryption at rest".
        searchable: With ``encryption_key``, still store what leaks content so the database
            can search it: each memory's words (the full-text index) and, with an index, its
            vectors. False (the default) keeps both out: keyword search then decrypts the
            scope in process, and an explicit index is refused.

    Example:
        >>> async def remember_style() -> None:
        ...     async with MemoryStore("memories.db") as store:
        ...         await store.put(("users", "alice"), "style", {"text": "detailed"}, ttl=86400)
        ...         item = await store.get(("users", "alice"), "style")
    """

    def __init__(
        self,
        db_path: str | Path = ":memory:",
        *,
        table: str = DEFAULT_MEMORY_TABLE,
        index: IndexConfig | str | None = "auto",
        durable: bool = True,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        backend: MemoryBackend | None = None,
        encryption_key: str | bytes | Sequence[str | bytes] | None = None,
        searchable: bool = False,
    ) -> None:
        self._cipher: ValueCipher | None = None
        if encryption_key is not None:
            from .crypt import ValueCipher  # noqa: PLC0415 - loads the encryption package

            bound = table if backend is None else getattr(backend, "table", table)
            self._cipher = ValueCipher(encryption_key, str(getattr(bound, "name", bound)))
            if not searchable:
                if index not in ("auto", None):
                    raise ValueError(
                        "an index stores vectors that leak the values' content; with "
                        "encryption_key pass searchable=True to keep one, or index=None"
                    )
                index = None
        self._index = check_index(resolve_index(index))
        self._owns_embedder = isinstance(index, str) or (
            isinstance(index, dict) and isinstance(index.get("embed"), str)
        )
        self._words = self._cipher is None or searchable
        self.strict = strict
        self._clock = clock
        self._state = MemoryStoreState.OPEN
        self._finalizer: weakref.finalize[..., object] | None = None
        self._backend: MemoryBackend = backend or SQLiteMemoryBackend(
            db_path, table, durable=durable
        )
        if getattr(self._backend, "owns_engine", False):
            # The SQLite backend's worker warns by itself; an engine's pool needs our help.
            label = f"MemoryStore on {getattr(self._backend, 'where', 'an engine')}"
            self._finalizer = weakref.finalize(self, _warn_unclosed, label)
            self._finalizer.atexit = False
        self._reader = Reader(self._backend, self._index, strict, self._cipher)

    @classmethod
    def from_engine(
        cls,
        engine: AsyncEngine,
        *,
        table: str = DEFAULT_MEMORY_TABLE,
        index: IndexConfig | str | None = "auto",
        create_tables: bool = True,
        strict: bool = False,
        clock: Callable[[], float] = time.time,
        encryption_key: str | bytes | Sequence[str | bytes] | None = None,
        searchable: bool = False,
    ) -> MemoryStore:
        """Open a store on an async SQLAlchemy engine, which it never disposes of.

        Args:
            engine: ``postgresql+asyncpg``, ``mysql+aiomysql``, ``sqlite+aiosqlite``, ...
            table: The memories table.
            index: See the class.
            create_tables: Create the table on first use (safe from many processes at once).
            strict: See the class.
            clock: See the class.
            encryption_key: See the class.
            searchable: See the class.
        """
        from .sqlalchemy import SQLAlchemyMemoryBackend  # noqa: PLC0415 - lazy backend

        backend = SQLAlchemyMemoryBackend(
            engine, table, create_tables=create_tables, owns_engine=False
        )
        return cls(
            index=index,
            strict=strict,
            clock=clock,
            backend=backend,
            encryption_key=encryption_key,
            searchable=searchable,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        engine_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> MemoryStore:
        """Open a store on a database URL; closing the store disposes of the engine.

        Args:
            url: An async SQLAlchemy URL, e.g. ``postgresql+asyncpg://app@db/agents``.
            engine_kwargs: Passed to ``create_async_engine``.
            **kwargs: Passed to :meth:`from_engine` (``table``, ``index``, ``create_tables``,
                ``strict``, ``clock``, ``encryption_key``, ``searchable``).

        Raises:
            ValueError: the URL cannot be parsed or names an unknown driver.
            MissingDependencyError: the URL's driver is not installed.

        Example:
            >>> async def shared_memory() -> None:
            ...     url = "postgresql+asyncpg://app@db/agents"
            ...     async with MemoryStore.from_url(url) as store:
            ...         await store.put(("users", "alice"), "tz", {"text": "Europe/Paris"})
        """
        from ..backends._sqlalchemy_engine import engine_from_url  # noqa: PLC0415
        from .sqlalchemy import SQLAlchemyMemoryBackend  # noqa: PLC0415 - lazy backend

        table = validate_identifier(kwargs.pop("table", DEFAULT_MEMORY_TABLE), "memory table name")
        create_tables = kwargs.pop("create_tables", True)
        engine = engine_from_url(url, engine_kwargs)  # after the checks: nothing to dispose of
        backend = SQLAlchemyMemoryBackend(
            engine, table, create_tables=create_tables, owns_engine=True
        )
        return cls(backend=backend, **kwargs)

    @property
    def state(self) -> MemoryStoreState:
        """Whether the store is open or closed."""
        return self._state

    @property
    def index(self) -> IndexConfig | None:
        """The semantic index configuration, or None for keyword search."""
        return self._index

    @property
    def encrypted(self) -> bool:
        """Whether values are encrypted at rest (``encryption_key`` was given)."""
        return self._cipher is not None

    @property
    def search_mode(self) -> Literal["semantic", "keyword"]:
        """How ``search(query=...)`` ranks: ``"semantic"`` (an index) or ``"keyword"`` only.

        ``"keyword"`` means no embedder is configured (the default without the ``embeddings``
        extra): queries match words, through the database's full-text index.
        """
        return "keyword" if self._index is None else "semantic"

    def _check(self, method: str) -> None:
        if self._state is MemoryStoreState.CLOSED:
            raise SessionClosedError(f"MemoryStore.{method}() was called after aclose()")

    async def put(
        self,
        namespace: tuple[str, ...],
        key: str,
        value: dict[str, Any],
        *,
        ttl: float | None = None,
        index: Literal[False] | Sequence[str] | None = None,
    ) -> None:
        """Store ``value`` under ``key``, replacing what was there (its creation time is kept).

        Args:
            namespace: Where the memory lives, e.g. ``("users", "alice")``.
            key: Its name within the namespace.
            value: A JSON object; it must come back exactly as given (no tuples, NaN, ...).
            ttl: Seconds until it expires (None: never). Expired memories are never returned.
            index: Which fields to embed (None: the store's ``fields``; False: do not embed,
                so semantic search will not find it). Ignored without an index config.

        Raises:
            InvalidNamespaceError: the namespace or key is malformed.
            MemoryValueError: the value is not a storable JSON object (a ``TypeError``).
            EmbeddingError: the embedder returned the wrong number or size of vectors.
        """
        self._check("put")
        stored_namespace = encode_namespace(namespace)
        check_key(key)
        if type(value) is not dict:
            raise MemoryValueError(key, f"expected a dict, got {type(value).__name__}")
        try:
            (text,) = encode_items([value])
        except ItemValidationError as exc:
            raise MemoryValueError(key, exc.reason) from exc
        seconds = check_ttl(ttl)
        embedding = await self._embed(value, index)
        now = self._clock()
        expires_at = None if seconds is None else now + seconds
        if self._cipher is not None:
            text = self._cipher.seal(stored_namespace, key, text, now)
        words = searchable_text(value) if self._words else None
        record = Record(stored_namespace, key, text, now, expires_at, seconds, embedding, words)
        await self._backend.put(record)

    async def _embed(
        self, value: dict[str, Any], index: Literal[False] | Sequence[str] | None
    ) -> bytes | None:
        if self._index is None or index is False:
            return None
        if index is not None and (isinstance(index, str) or not isinstance(index, Sequence)):
            raise TypeError("index must be False, None or a list of field paths")
        fields = self._index.get("fields", ("$",)) if index is None else index
        texts = texts_at(value, list(fields))
        if not texts:
            return None
        dims = self._index["dims"]
        vectors = await embed_texts(self._index["embed"], texts)
        return pack([unit(vector, dims) for vector in vectors])

    async def get(
        self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool = False
    ) -> MemoryItem | None:
        """Return the memory stored under ``key``, or None if there is none or it expired.

        Args:
            namespace: Its namespace.
            key: Its key.
            refresh_ttl: Restart its TTL from now (a write); memories without one are untouched.

        Raises:
            InvalidNamespaceError: the namespace or key is malformed.
        """
        self._check("get")
        stored_namespace = encode_namespace(namespace)
        check_key(key)
        now = self._clock()
        row = await self._backend.get(stored_namespace, key, now)
        if row is None:
            return None
        value = self._reader.decode(row)
        if value is None:
            return None
        if refresh_ttl:
            await self._backend.refresh([row.id], now)
        created = when(row.created_at)
        updated = created if row.updated_at == row.created_at else when(row.updated_at)
        return MemoryItem(decode_namespace(stored_namespace), key, value, created, updated)

    async def delete(self, namespace: tuple[str, ...], key: str) -> bool:
        """Delete a memory; return whether one was stored under ``key``.

        Raises:
            InvalidNamespaceError: the namespace or key is malformed.
        """
        self._check("delete")
        stored_namespace = encode_namespace(namespace)
        return await self._backend.delete(stored_namespace, check_key(key))

    async def search(
        self,
        namespace_prefix: tuple[str, ...],
        /,
        *,
        query: str | None = None,
        filter: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh_ttl: bool = False,
    ) -> list[SearchItem]:
        """Find memories under a namespace prefix: all of them, filtered, or ranked by a query.

        Args:
            namespace_prefix: ``("users", "alice")`` searches that namespace and those below it,
                never ``("users", "alice2")``; ``()`` searches everything.
            query: Rank by meaning (with an index: every memory, nearest first) or by words
                (without one: the memories that hold a query word or a word starting like it,
                best first). None or "": newest first.
            filter: Conditions on value keys: ``{"kind": "preference"}``, or operators like
                ``{"stars": {"$gte": 4}}`` ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin).
            limit: At most this many results.
            offset: Skip this many results first (for paging).
            refresh_ttl: Restart the TTL of every returned memory (a write).

        Returns:
            The page of results; ``score`` is set when a ``query`` ranked them.

        Raises:
            InvalidNamespaceError: the prefix is malformed.
            InvalidFilterError: the filter cannot be applied.
            InvalidLimitError: ``limit`` or ``offset`` is not a non-negative int.
        """
        self._check("search")
        prefix = encode_prefix(namespace_prefix)
        limit, offset = check_page(limit, offset)
        match = compile_filter(filter)
        if query is not None and not isinstance(query, str):
            raise TypeError(f"query must be a str or None, got {type(query).__name__}")
        now = self._clock()
        # Hints compare stored JSON in SQL: an encrypted value holds none to compare.
        hints = filter_hints(filter) if self._cipher is None else []
        page = Page(prefix, now, match, limit, offset, hints)
        found: list[tuple[int, SearchItem]] = []
        if limit == 0:
            pass
        elif not query:
            found = await self._reader.listing(page)
        elif self._index is None:
            found = await self._reader.keywords(page, query, indexed=self._words)
        else:
            found = await self._reader.semantic(page, query)
        if refresh_ttl and found:
            await self._backend.refresh([row_id for row_id, _ in found], now)
        return [item for _, item in found]

    async def list_namespaces(
        self,
        *,
        prefix: tuple[str, ...] | None = None,
        suffix: tuple[str, ...] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """List the namespaces that hold live memories, sorted.

        Args:
            prefix: Only namespaces under this one.
            suffix: Only namespaces ending with these labels.
            max_depth: Cut longer namespaces to this many labels (duplicates merged).
            limit: At most this many.
            offset: Skip this many first.

        Raises:
            InvalidNamespaceError: the prefix or suffix is malformed.
            InvalidLimitError: ``limit``, ``offset`` or ``max_depth`` is not a valid count.
        """
        self._check("list_namespaces")
        stored_prefix = encode_prefix(prefix or ())
        ending = decode_namespace(encode_prefix(suffix or (), "namespace suffix"))
        limit, offset = check_page(limit, offset)
        if max_depth is not None:
            check_page(max_depth, 0)
        stored = await self._backend.namespaces(stored_prefix, self._clock())
        return shape_namespaces(
            stored, suffix=ending, max_depth=max_depth, limit=limit, offset=offset
        )

    async def sweep(self) -> int:
        """Delete every expired memory now; return how many were deleted.

        Expired memories are never returned even before a sweep; sweeping frees their space.
        """
        self._check("sweep")
        return await self._backend.sweep(self._clock())

    async def aclose(self) -> None:
        """Close the store and release its database (idempotent)."""
        if self._state is MemoryStoreState.CLOSED:
            return
        self._mark_closed()
        await self._release()

    def close(self) -> Closing:
        """Close the store; idempotent. Works both called and awaited, as on every session.

        A SQLite store closes at once; a SQLAlchemy one (or a store that owns an embedder to
        close) starts closing on the running event loop, and awaiting the result waits for it.

        Raises:
            RuntimeError: the store closes only asynchronously and no event loop is running
                (await ``aclose()`` inside one).
        """
        if self._state is MemoryStoreState.CLOSED:
            return Closing()
        now = getattr(self._backend, "close", None)
        if callable(now) and self._embedder_closer() is None:
            self._mark_closed()
            now()
            return Closing()
        closing = Closing.start(self._release(), "MemoryStore")
        self._mark_closed()
        return closing

    def _mark_closed(self) -> None:
        self._state = MemoryStoreState.CLOSED
        if self._finalizer is not None:
            self._finalizer.detach()

    def _embedder_closer(self) -> Callable[[], Any] | None:
        close = getattr(self._index and self._index["embed"], "aclose", None)
        return close if close is not None and self._owns_embedder else None

    async def _release(self) -> None:
        try:
            close = self._embedder_closer()
            if close is not None:
                await close()
        finally:
            await self._backend.aclose()

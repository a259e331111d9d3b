"""How the memory store reads: decoding rows into items, and its three kinds of search.

A search without a query lists the newest memories; with a query and no index it ranks by words
(found through the database's full-text index where it has one, see ``fulltext``); with an
index it ranks by vector similarity (nearest first). A filter is applied to every decoded
value, after the backend used its hints to leave out rows that cannot match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from ..errors import CorruptItemError, CorruptMemoryError
from ..serialization import JsonCodec, decode_rows, logger
from .embed import embed_texts
from .filter import Filter
from .fulltext import query_terms, term_score
from .keys import decode_namespace
from .types import Hint, IndexConfig, MemoryBackend, Row, SearchItem

if TYPE_CHECKING:
    from .crypt import ValueCipher
from .vectors import rank, unit

__all__ = ["Page", "Reader", "when"]

_CODEC = JsonCodec()


class Page(NamedTuple):
    """What one search covers: the scope, the time it runs at, the filter and the page."""

    prefix: str
    now: float
    match: Filter | None
    limit: int
    offset: int
    hints: list[Hint]


def when(seconds: float) -> datetime:
    """A stored time (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=UTC)


class Reader:
    """Turns a backend's rows into items, for one store.

    Args:
        backend: Where the rows come from.
        index: The store's semantic index, or None.
        strict: Raise on an undecodable value instead of skipping it with a warning.
    """

    def __init__(
        self,
        backend: MemoryBackend,
        index: IndexConfig | None,
        strict: bool,
        cipher: ValueCipher | None = None,
    ) -> None:
        self.backend = backend
        self.index = index
        self.strict = strict
        self.cipher = cipher

    def value_of(self, namespace: str, key: str, stored: str) -> dict[str, Any]:
        """Decrypt (when the store encrypts) and decode a stored value.

        Raises:
            CorruptItemError: it cannot be decrypted; ValueError/TypeError: not a JSON object.
        """
        text = stored if self.cipher is None else self.cipher.open(namespace, key, stored)
        value = _CODEC.decode(text)
        if not isinstance(value, dict):
            raise TypeError(f"the stored value is a {type(value).__name__}, not an object")
        return cast(dict[str, Any], value)

    def decode(self, row: Row) -> dict[str, Any] | None:
        """The value of a row, or None (with a warning, or an error when strict) if corrupt."""
        try:
            return self.value_of(row.namespace, row.key, row.value)
        except (ValueError, TypeError, RecursionError, CorruptItemError) as exc:
            where = f"{decode_namespace(row.namespace)!r}/{row.key!r}"
            if self.strict:
                raise CorruptMemoryError(where, str(exc)) from exc
            logger.warning("skipping the undecodable memory %s: %s", where, exc)
            return None

    async def listing(self, page: Page) -> list[tuple[int, SearchItem]]:
        """Return one page of live memories under the prefix, newest first."""
        prefix, now, match, limit, offset, _ = page
        if match is None:
            rows = await self.backend.scan(prefix, now, limit=limit, offset=offset, vectors=False)
            return self.collect([(row, None) for row in rows])
        # The backend may narrow rows with the hints; read pages of them until enough match.
        wanted, found, start = offset + limit, [], 0
        chunk = wanted  # the SQL prefilter is usually exact: one page of rows is enough
        while True:
            rows = await self.backend.scan(
                prefix, now, limit=chunk, offset=start, vectors=False, hints=page.hints
            )
            found += self.collect([(row, None) for row in rows], match)
            if len(found) >= wanted or len(rows) < chunk:
                return found[offset:wanted]
            start, chunk = start + chunk, chunk * 4

    async def keywords(
        self, page: Page, query: str, *, indexed: bool
    ) -> list[tuple[int, SearchItem]]:
        """Return one page of memories ranked by the words of ``query``.

        With ``indexed`` (the store writes ``words``) and a backend that has ``fulltext``, the
        database's full-text index finds the candidates; otherwise the scope is scanned.
        """
        prefix, now, match, limit, offset, _ = page
        terms = query_terms(query)
        fulltext = getattr(self.backend, "fulltext", None) if indexed and terms else None
        rows = None if fulltext is None else await fulltext(prefix, terms, now)
        from_index = rows is not None
        if rows is None:
            rows = await self.backend.scan(
                prefix, now, limit=None, offset=0, vectors=False, hints=page.hints
            )
        scored: list[tuple[float, int, SearchItem]] = []
        for row_id, item in self.collect([(row, None) for row in rows], match):
            score = term_score(terms, item.value)
            if score == 0 and from_index:
                score = 0.5 / len(terms)  # the database's stemmer matched a form we do not
            if score > 0:
                scored.append((-score, row_id, item))
        scored.sort(key=lambda entry: entry[0])  # stable: index rank, or newest, among equals
        return [
            (row_id, replace(item, score=-negative))
            for negative, row_id, item in scored[offset : offset + limit]
        ]

    async def semantic(self, page: Page, query: str) -> list[tuple[int, SearchItem]]:
        """Return one page of memories ranked by similarity of their vectors to ``query``."""
        prefix, now, match, limit, offset, _ = page
        assert self.index is not None  # noqa: S101 - the store checked
        dims = self.index["dims"]
        (vector,) = await embed_texts(self.index["embed"], [query])
        target = unit(vector, dims)
        wanted = offset + limit
        if match is None:
            ranked = await self.backend.nearest(prefix, target, now, wanted, dims)
            by_id = {row.id: row for row in await self.backend.fetch([i for i, _ in ranked], now)}
            return self.collect([(by_id[i], score) for i, score in ranked if i in by_id])[offset:]
        rows = await self.backend.scan(
            prefix, now, limit=None, offset=0, vectors=True, hints=page.hints
        )
        kept = {row.id: row for row in rows if (v := self.decode(row)) is not None and match(v)}
        ranked = rank(target, [(i, row.embedding) for i, row in kept.items()], wanted, dims)
        return self.collect([(kept[i], score) for i, score in ranked])[offset:]

    def collect(
        self, pairs: Sequence[tuple[Row, float | None]], match: Filter | None = None
    ) -> list[tuple[int, SearchItem]]:
        """Decode rows into ``(row id, item)``, skipping corrupt rows and filtered-out values."""
        values: Sequence[dict[str, Any] | None] | None = None
        if self.cipher is None:
            try:
                # One tight loop for the usual batch of sound rows; a bad row: a careful pass.
                decoded = decode_rows([row.value for row, _ in pairs], session_id="", strict=True)
                values = cast(list[dict[str, Any]], decoded)
            except CorruptItemError:
                pass
        if values is None:
            values = [self.decode(row) for row, _ in pairs]
        namespaces: dict[str, tuple[str, ...]] = {}
        items: list[tuple[int, SearchItem]] = []
        for (row, score), value in zip(pairs, values, strict=True):
            if value is None or (match is not None and not match(value)):
                continue
            namespace = namespaces.get(row.namespace)
            if namespace is None:
                namespace = namespaces[row.namespace] = decode_namespace(row.namespace)
            created = when(row.created_at)
            changed = created if row.updated_at == row.created_at else when(row.updated_at)
            item = SearchItem(namespace, row.key, value, created, changed, score)
            items.append((row.id, item))
        return items

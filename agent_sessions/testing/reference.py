"""The reference store the conformance suite is proven against: a ``Store`` held in a dict."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from ..errors import ProvenanceConflictError, SessionClosedError
from ..store import ArchiveBatch, ArchivedRow, Popped, RowTag, StoredRecord, Taker, always

__all__ = ["DictStore"]

T = TypeVar("T")


class DictStore:
    """A :class:`~agent_sessions.store.Store` held in a dict: the reference the suite is proven on.

    Use it with :class:`~agent_sessions.core.StoreSession` to see the smallest correct backend.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[int, str]]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._state: dict[tuple[str, str], str] = {}
        self._archive: dict[str, list[ArchivedRow]] = {}
        self._tags: dict[int, tuple[RowTag, str]] = {}  # by row id: kept while the row is

    def _session_rows(self, session_id: str) -> list[tuple[int, str]]:
        if self._closed:
            raise SessionClosedError("DictStore is closed")
        return self._rows.setdefault(session_id, [])

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows (all if None), oldest first."""
        rows = self._session_rows(session_id)
        chosen = rows if limit is None else rows[max(0, len(rows) - limit) :] if limit else []
        return [text for _, text in chosen]

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows after the newest one."""
        self._session_rows(session_id).extend((next(self._ids), t) for t in texts)

    async def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> int:
        """Store rows with their tags, skipping the ones their run stored before.

        ``fresh`` is accepted and not needed: the check costs no extra round trip here.
        """
        rows = self._session_rows(session_id)
        stored = {
            (tag.run_id, tag.position): tag.digest
            for row_id, _ in rows
            if (tagged := self._tags.get(row_id)) is not None
            for tag in (tagged[0],)
        }
        new: list[tuple[str, RowTag]] = []
        for text, tag in zip(texts, tags, strict=True):
            digest = stored.get((tag.run_id, tag.position))
            if digest is None:
                new.append((text, tag))
                stored[tag.run_id, tag.position] = tag.digest
            elif digest != tag.digest:
                raise ProvenanceConflictError(session_id, tag.run_id, tag.position)
        now = datetime.now(UTC).isoformat(sep=" ")
        for text, tag in new:
            row_id = next(self._ids)
            rows.append((row_id, text))
            self._tags[row_id] = (tag, now)
        return len(new)

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the newest ``limit`` rows with their tags (all if None), oldest first."""
        rows = self._session_rows(session_id)
        chosen = rows if limit is None else rows[max(0, len(rows) - limit) :] if limit else []
        records = []
        for row_id, text in chosen:
            tagged = self._tags.get(row_id)
            if tagged is None:
                records.append(StoredRecord(text, None, None, None, None))
            else:
                tag, at = tagged
                records.append(StoredRecord(text, tag.agent_name, tag.run_id, tag.position, at))
        return records

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove and return the newest row ``decode`` accepts."""
        taken = await self.pop_through(session_id, decode, always)
        return taken[0] if taken else None

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove the newest rows down to the first item ``stop`` accepts."""
        rows = self._session_rows(session_id)
        taker = Taker(decode, stop)
        for row_id, text in reversed(rows):
            if taker.feed(row_id, text):
                break
        taken = {p.row_id for p in taker.result()}
        rows[:] = [row for row in rows if row[0] not in taken]
        return taker.result()

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Put popped rows back in id order, at once; not into a session cleared since."""
        cleared = session_id not in self._rows
        rows = self._session_rows(session_id)
        if not cleared:
            rows.extend((p.row_id, p.text) for p in popped)
            rows.sort()

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the newest ``limit`` rows, oldest first, and whether they are all rows."""
        rows = self._session_rows(session_id)
        chosen = rows[max(0, len(rows) - limit) :] if limit else []
        return list(chosen), len(chosen) == len(rows)

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the newest rows for ``texts`` if they are exactly ``expected``."""
        rows = self._session_rows(session_id)
        count = len(expected)
        if not count or [tuple(row) for row in rows[-count:]] != [tuple(e) for e in expected]:
            return False
        del rows[-count:]
        rows.extend((next(self._ids), text) for text in texts)
        return True

    async def clear(self, session_id: str) -> None:
        """Forget a session."""
        for row_id, _ in self._session_rows(session_id):
            self._tags.pop(row_id, None)
        self._rows.pop(session_id, None)
        for key in [key for key in self._state if key[0] == session_id]:
            del self._state[key]
        self._archive.pop(session_id, None)

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Return every row as ``(row_id, text)``, oldest first."""
        return list(self._session_rows(session_id))

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text, or delete the rows whose new text is None."""
        rows = self._session_rows(session_id)
        kept = [(i, changes.get(i, t)) for i, t in rows if changes.get(i, t) is not None]
        changed = sum(1 for i, _ in rows if i in changes)
        rows[:] = cast(list[tuple[int, str]], kept)
        return changed

    async def read_state(self, session_id: str, name: str) -> str | None:
        """Return the text stored under ``name``, or None."""
        self._session_rows(session_id)
        return self._state.get((session_id, name))

    async def write_state(self, session_id: str, name: str, text: str | None) -> None:
        """Store ``text`` under ``name``; None deletes it."""
        self._session_rows(session_id)
        if text is None:
            self._state.pop((session_id, name), None)
        else:
            self._state[session_id, name] = text

    async def update_state(
        self, session_id: str, name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read, change and write one value (no await in between: atomic on the loop)."""
        new = change(await self.read_state(session_id, name))
        await self.write_state(session_id, name, new)
        return new

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows, oldest batch first."""
        self._session_rows(session_id)
        return list(self._archive.get(session_id, []))

    def _add_batch(self, session_id: str, batch: ArchiveBatch) -> None:
        rows = self._archive.setdefault(session_id, [])
        number = max((row.batch for row in rows), default=0) + 1
        rows += [ArchivedRow(number, batch.kind, "item", t, "") for t in batch.items]
        rows += [ArchivedRow(number, batch.kind, "summary", t, "") for t in batch.summary]

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """``replace_tail`` that also archives ``batch``."""
        swapped = await self.replace_tail(session_id, expected, texts)
        if swapped:
            self._add_batch(session_id, batch)
        return swapped

    async def rewrite_archiving(
        self, session_id: str, changes: Mapping[int, str | None], batch: ArchiveBatch
    ) -> int:
        """``rewrite`` that also archives ``batch``."""
        changed = await self.rewrite(session_id, changes)
        self._add_batch(session_id, batch)
        return changed

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """``replace_tail`` that also drops archive batch ``batch``."""
        swapped = await self.replace_tail(session_id, expected, texts)
        if swapped:
            rows = self._archive.get(session_id, [])
            self._archive[session_id] = [row for row in rows if row.batch != batch]
        return swapped

    async def aclose(self) -> None:
        """Refuse every later call; idempotent."""
        self._closed = True

    def write_raw(self, session_id: str, text: str) -> None:
        """Append a row as-is, bypassing validation (to plant corrupt data in tests)."""
        self._rows.setdefault(session_id, []).append((next(self._ids), text))

    def row_tags(self, session_id: str) -> list[RowTag | None]:
        """Return the tag of each of a session's rows, oldest first (None: untagged)."""
        rows = self._rows.get(session_id, [])
        return [tagged[0] if (tagged := self._tags.get(i)) else None for i, _ in rows]

    def count_rows(self, session_id: str) -> int:
        """Count a session's rows, decodable or not."""
        return len(self._rows.get(session_id, []))

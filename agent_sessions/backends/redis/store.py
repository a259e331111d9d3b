r"""RedisStore: the store primitives on a Redis server, in the SDK's ``RedisSession`` key layout.

A session lives in the SDK's three keys: ``{prefix}:{session_id}`` (a hash: ``session_id``,
``created_at``, ``updated_at``), ``{prefix}:{session_id}:messages`` (a list of the items' JSON
text, oldest first) and ``{prefix}:{session_id}:counter`` (deleted and expired with the others),
and in two of ours when they are used: ``...\0state`` (a hash of state values) and ``...\0archive``
(a list of archived rows). Keys and ids are in :mod:`.layout`.
Every mutation is one Lua script (see :mod:`.scripts`), so it is atomic on the server.

A list element has no id of its own, so a row's id is computed from what it is: its position in
the list (1 = oldest) shifted left 160 bits, plus the SHA-1 of its stored bytes. A write that
names rows (a pop, a swap, a rewrite) sends the hashes of every row it touches or keeps, and the
script changes nothing if any of them moved or changed meanwhile; the store then reads again.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import ProvenanceConflictError, SessionClosedError, StorageError
from ...store import ArchiveBatch, ArchivedRow, Popped, RowTag, StoredRecord, Taker, always
from .._restore import ClearLog, with_mark
from .layout import (
    APPEND_SCRIPT,
    APPEND_TAGGED_SCRIPT,
    ARCHIVE_SCRIPT,
    CLEAR_SCRIPT,
    HASH_BITS,
    NO_ARCHIVE,
    READ_SCRIPT,
    RECORDS_SCRIPT,
    RESTORE_SCRIPT,
    SPLICE_SCRIPT,
    STATE_SCRIPT,
    TAIL_SCRIPT,
    Archive,
    Script,
    SessionKeys,
    archive_args,
    as_text,
    batch_args,
    parse_provenance,
    row_id,
    row_position,
    sha1hex,
    translated,
    unpack,
    unpack_texts,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStore", "SessionKeys", "row_id", "row_position"]

T = TypeVar("T")
_POP_WINDOW = 4
"""How many newest rows a pop reads first; it widens the window past undecodable ones."""
_TAILS = 1024
"""How many sessions' last known tails a store remembers (see ``RedisStore._tails``)."""

_STATE_TRIES = 1000
"""How often ``update_state`` reads a value again when other writers keep changing it."""


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _record(text: str, raw: bytes) -> StoredRecord:
    """A row and the provenance the store keeps for its bytes (``b''``: none)."""
    return StoredRecord(text, *parse_provenance(raw))


class RedisStore:
    """A :class:`~agent_sessions.store.Store` (and ``RowStore``, ``SuffixStore``) on Redis.

    Commands go out on a connection of the client's pool. A read whose connection drops is sent
    once more on a fresh one; a write is sent once (a write whose reply was lost might have run,
    so it is reported as :class:`~agent_sessions.errors.StorageUnavailableError`, never repeated).

    Args:
        client: A ``redis.asyncio.Redis`` client (a standalone server; any ``decode_responses``).
        key_prefix: Prefix of every key, as the SDK's ``key_prefix``.
        ttl: Seconds after the last append until a session's keys expire; None for never.
        owns_client: Close the client when the store closes.
    """

    def __init__(
        self,
        client: Redis,
        *,
        key_prefix: str = "agents:session",
        ttl: int | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl = ttl
        self._ttl_arg = "" if ttl is None else str(ttl * 1000)
        self._owns_client = owns_client
        self._state = _State.OPEN
        self._clears = ClearLog()
        # What this store last saw at the end of a session's list, after its own append or pop:
        # (length, newest value, record's created_at). A pop tries it first, in one round trip;
        # the script checks it, so a stale entry only costs the usual read.
        self._tails: OrderedDict[str, tuple[int, bytes, Any]] = OrderedDict()

    def keys(self, session_id: str) -> SessionKeys:
        """The keys a session's data lives under."""
        return SessionKeys(self.key_prefix, session_id)

    def _check_open(self, operation: str) -> None:
        if self._state is _State.CLOSED:
            raise SessionClosedError(f"RedisStore is closed: {operation} was called after close")

    async def _send(self, args: Sequence[Any], *, retry: bool) -> Any:
        pool = self.client.connection_pool
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_command(*args)
                return await conn.read_response(disable_decoding=True)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await conn.disconnect()
                if attempt + 1 == attempts:
                    raise
            finally:
                await pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _script(
        self,
        script: Script,
        keys: SessionKeys | tuple[str, ...],
        args: Sequence[Any],
        *,
        write: bool,
    ) -> Any:
        names = keys.all() if isinstance(keys, SessionKeys) else keys
        head = (len(names), *names, *args)
        try:
            return await self._send(("EVALSHA", script.sha, *head), retry=not write)
        except NoScriptError:
            return await self._send(("EVAL", script.source, *head), retry=not write)

    async def ping(self) -> bool:
        """Whether the server answers a ``PING``."""
        self._check_open("ping")
        try:
            await self._send(("PING",), retry=False)
        except (RedisError, OSError):
            return False
        return True

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """Return the newest ``limit`` rows of a session (all if None), oldest first."""
        self._check_open("read")
        if limit == 0:
            return []
        start = 0 if limit is None else -limit
        with translated("read"):
            key = self.keys(session_id).messages
            lens, blob = await self._script(READ_SCRIPT, (key,), (start,), write=False)
        return unpack_texts(lens, blob)

    async def _snapshot(self, keys: SessionKeys, newest: int) -> tuple[int, list[bytes], Any]:
        """The list's length, its newest ``newest`` values (0: all), and the record's mark."""
        with translated("read"):
            total, lens, blob, created = await self._script(
                TAIL_SCRIPT, keys, (newest,), write=False
            )
        return int(total), unpack(lens, blob), created

    async def append(self, session_id: str, texts: Sequence[str]) -> None:
        """Store rows after the session's newest row, in one script."""
        self._check_open("append")
        self._tails.pop(session_id, None)
        with translated("append"):
            total, created = await self._script(
                APPEND_SCRIPT,
                self.keys(session_id),
                (session_id, self._ttl_arg, *texts),
                write=True,
            )
        if texts:
            self._remember(session_id, int(total), texts[-1].encode(), created)

    async def append_tagged(
        self,
        session_id: str,
        texts: Sequence[str],
        tags: Sequence[RowTag],
        *,
        fresh: bool = False,
    ) -> int:
        """Append the rows of a tagged batch not stored before, in one script (see scripts).

        ``fresh`` is accepted and not needed: the check costs no extra round trip here.
        """
        self._check_open("append_tagged")
        if len(texts) != len(tags):
            raise ValueError("append_tagged needs one tag per text")
        if not texts:
            return 0
        args: list[object] = [session_id, self._ttl_arg, len(texts)]
        for text, tag in zip(texts, tags, strict=True):
            tag_json = json.dumps([tag.agent_name, tag.run_id, tag.position], ensure_ascii=False)
            args += (text, f"{tag.run_id}\x00{tag.position}", tag.digest, tag_json)
        self._tails.pop(session_id, None)
        with translated("append"):
            reply = await self._script(
                APPEND_TAGGED_SCRIPT, self.keys(session_id), args, write=True
            )
        count = int(reply[0])
        if count < 0:
            tag = tags[int(reply[1]) - 1]
            raise ProvenanceConflictError(session_id, tag.run_id, tag.position)
        if count:
            self._remember(session_id, int(reply[1]), reply[3], reply[2])
        return count

    async def records(self, session_id: str, limit: int | None) -> list[StoredRecord]:
        """Return the newest ``limit`` rows with their provenance (all if None), oldest first."""
        self._check_open("records")
        if limit == 0:
            return []
        start = 0 if limit is None else -limit
        with translated("read"):
            lens, blob, tlens, tblob = await self._script(
                RECORDS_SCRIPT, self.keys(session_id), (start,), write=False
            )
        out: list[StoredRecord] = []
        for text, raw in zip(unpack_texts(lens, blob), unpack(tlens, tblob), strict=True):
            out.append(_record(text, raw))
        return out

    def _remember(self, session_id: str, total: int, newest: Any, created: Any) -> None:
        if newest is None or total < 1:
            self._tails.pop(session_id, None)
            return
        self._tails[session_id] = (total, bytes(newest), created)
        self._tails.move_to_end(session_id)
        if len(self._tails) > _TAILS:
            self._tails.popitem(last=False)

    async def _splice(
        self,
        keys: SessionKeys,
        session_id: str,
        *,
        total: int,
        start: int,
        hashes: Sequence[str],
        out: Sequence[tuple[str, object]],
        refresh: bool,
        archive: Archive = NO_ARCHIVE,
    ) -> bool:
        args: list[object] = [total, start, len(hashes), *hashes, self._ttl_arg]
        args += ["1" if refresh else "0", session_id, len(out)]
        for kind, value in out:
            args += (kind, value)
        args += archive_args(archive)
        self._tails.pop(session_id, None)
        with translated("write"):
            reply = await self._script(SPLICE_SCRIPT, keys, args, write=True)
        if not reply:
            return False
        total, newest, created = reply
        self._remember(session_id, int(total), newest, created)
        return True

    async def pop(self, session_id: str, decode: Callable[[str], T | None]) -> Popped[T] | None:
        """Remove and return the newest row that ``decode`` accepts, in one script."""
        taken = await self.pop_through(session_id, decode, always)
        return taken[0] if taken else None

    async def pop_through(
        self, session_id: str, decode: Callable[[str], T | None], stop: Callable[[T], bool]
    ) -> list[Popped[T]]:
        """Remove the newest rows down to the first item ``stop`` accepts, in one script."""
        self._check_open("pop")
        keys = self.keys(session_id)
        known = self._tails.get(session_id)
        if known is not None:
            taken = await self._pop_known(keys, session_id, known, decode, stop)
            if taken:
                return taken
        window = _POP_WINDOW
        while True:
            total, values, created = await self._snapshot(keys, window)
            first = total - len(values) + 1
            taker: Taker[T] = Taker(decode, stop)
            for offset in range(len(values) - 1, -1, -1):
                raw = values[offset]
                if taker.feed(row_id(first + offset, raw), as_text(raw)):
                    break
            if not taker.done and len(values) < total:
                window *= 4
                continue
            taken = taker.result()
            if not taken:
                return []
            gone = {row_position(row.row_id) for row in taken}
            low = min(gone)
            kept = values[low - first :]
            hashes = [hashlib.sha1(raw).hexdigest() for raw in kept]  # noqa: S324
            out = [("k", low + i) for i in range(len(kept)) if low + i not in gone]
            if await self._splice(
                keys, session_id, total=total, start=low, hashes=hashes, out=out, refresh=False
            ):
                record = None if created is None else bytes(created)
                return with_mark(taken, self._clears.mark(session_id, record))

    async def _pop_known(
        self,
        keys: SessionKeys,
        session_id: str,
        known: tuple[int, bytes, Any],
        decode: Callable[[str], T | None],
        stop: Callable[[T], bool],
    ) -> list[Popped[T]]:
        """Pop the newest row as this store last saw it, if it is the row ``stop`` wants."""
        total, raw, created = known
        taker: Taker[T] = Taker(decode, stop)
        if not taker.feed(row_id(total, raw), as_text(raw)):
            return []
        hashes = [hashlib.sha1(raw).hexdigest()]  # noqa: S324
        if not await self._splice(
            keys, session_id, total=total, start=total, hashes=hashes, out=[], refresh=False
        ):
            return []
        record = None if created is None else bytes(created)
        return with_mark(taker.result(), self._clears.mark(session_id, record))

    async def restore(self, session_id: str, popped: Sequence[Popped[Any]]) -> None:
        """Put popped rows back at their positions, unless the session was cleared since."""
        self._check_open("restore")
        rows = sorted(popped, key=lambda row: row.row_id)
        mark = getattr(rows[0], "mark", None) if rows else None
        if not rows or (mark is not None and self._clears.cleared_since(mark.key, mark.clears)):
            return
        seen = b"" if mark is None or mark.record is None else mark.record
        args: list[object] = [seen]
        for row in rows:
            args += (row_position(row.row_id), row.text)
        self._tails.pop(session_id, None)
        with translated("restore"):
            await self._script(RESTORE_SCRIPT, self.keys(session_id), args, write=True)

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """Return the newest ``limit`` rows as ``(row_id, text)``, oldest first, and if all."""
        self._check_open("tail")
        total, values, _ = await self._snapshot(self.keys(session_id), max(limit, 1))
        if limit <= 0:
            return [], total == 0
        first = total - len(values) + 1
        rows = [(row_id(first + i, raw), as_text(raw)) for i, raw in enumerate(values)]
        return rows, len(values) == total

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the newest rows for ``texts`` if they are exactly ``expected``, in one script."""
        self._check_open("replace_tail")
        return await self._replace_tail(session_id, expected, texts, NO_ARCHIVE)

    async def replace_tail_archiving(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: ArchiveBatch,
    ) -> bool:
        """``replace_tail`` that also archives ``batch``, in the same script."""
        self._check_open("replace_tail_archiving")
        return await self._replace_tail(session_id, expected, texts, batch_args(batch))

    async def unarchive(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        batch: int,
    ) -> bool:
        """``replace_tail`` that also drops archive batch ``batch``, in the same script."""
        self._check_open("unarchive")
        return await self._replace_tail(session_id, expected, texts, ("", str(batch), (), ()))

    async def archived(self, session_id: str) -> list[ArchivedRow]:
        """Return the session's archived rows, oldest batch first, in order within a batch."""
        self._check_open("archived")
        with translated("read"):
            raw = await self._send(("LRANGE", self.keys(session_id).archive, 0, -1), retry=True)
        rows: list[ArchivedRow] = []
        for entry in raw:
            try:
                row = json.loads(entry)
                moment = datetime.fromtimestamp(int(row["at"]), UTC)
                at = moment.strftime("%Y-%m-%d %H:%M:%S")
                rows.append(
                    ArchivedRow(int(row["batch"]), row["kind"], row["role"], row["text"], at)
                )
            except (ValueError, TypeError, KeyError, OverflowError):
                continue  # not an entry this store wrote: never returned as an archived row
        return rows

    async def _replace_tail(
        self,
        session_id: str,
        expected: Sequence[tuple[int, str]],
        texts: Sequence[str],
        archive: Archive,
    ) -> bool:
        if not expected:
            return False
        positions = [row_position(row) for row, _ in expected]
        start = positions[0]
        if positions != list(range(start, start + len(positions))):
            return False
        hashes = [sha1hex(row) for row, _ in expected]
        out = [("t", text) for text in texts]
        return await self._splice(
            self.keys(session_id),
            session_id,
            total=positions[-1],
            start=start,
            hashes=hashes,
            out=out,
            refresh=True,
            archive=archive,
        )

    async def clear(self, session_id: str) -> None:
        """Delete the session's keys, in one script."""
        self._check_open("clear")
        self._tails.pop(session_id, None)
        with translated("clear"):
            await self._script(CLEAR_SCRIPT, self.keys(session_id), (), write=True)
        self._clears.note(session_id)

    async def read_state(self, session_id: str, name: str) -> str | None:
        """Return the text stored under ``name`` for the session, or None."""
        self._check_open("read_state")
        with translated("read"):
            raw = await self._send(("HGET", self.keys(session_id).state, name), retry=True)
        return None if raw is None else as_text(raw)

    async def _set_state(
        self, session_id: str, name: str, text: str | None, expected: bytes | None, check: bool
    ) -> bool:
        args = (name, "1" if check else "0", expected or b"", text or "", int(text is not None))
        with translated("write"):
            return bool(await self._script(STATE_SCRIPT, self.keys(session_id), args, write=True))

    async def write_state(self, session_id: str, name: str, text: str | None) -> None:
        """Store ``text`` under ``name`` (None deletes it), in one script."""
        self._check_open("write_state")
        await self._set_state(session_id, name, text, None, check=False)

    async def update_state(
        self, session_id: str, name: str, change: Callable[[str | None], str | None]
    ) -> str | None:
        """Read, change and write one value; written only if nobody changed it meanwhile.

        Another writer in between makes it read again and call ``change`` on the new value,
        so concurrent updates from any task or process each see the one before.
        """
        self._check_open("update_state")
        key = self.keys(session_id).state
        for _ in range(_STATE_TRIES):
            with translated("read"):
                raw = await self._send(("HGET", key, name), retry=True)
            current = None if raw is None else bytes(raw)
            new = change(None if current is None else as_text(current))
            if await self._set_state(session_id, name, new, current, check=True):
                return new
        raise StorageError(
            f"update_state of {name!r} in session {session_id!r}: the value kept changing "
            f"({_STATE_TRIES} tries); nothing was written"
        )

    async def rows(self, session_id: str) -> list[tuple[int, str]]:
        """Return every row of a session as ``(row_id, text)``, oldest first."""
        rows, _ = await self.tail(session_id, 2**62)
        return rows

    async def rewrite(self, session_id: str, changes: Mapping[int, str | None]) -> int:
        """Replace rows' text (or delete rows whose new text is None), in one script.

        Ids whose row moved or changed since it was read are passed over.
        """
        self._check_open("rewrite")
        return await self._rewrite(session_id, changes, NO_ARCHIVE)

    async def rewrite_archiving(
        self, session_id: str, changes: Mapping[int, str | None], batch: ArchiveBatch
    ) -> int:
        """``rewrite`` that also archives ``batch``, in the same script."""
        self._check_open("rewrite_archiving")
        return await self._rewrite(session_id, changes, batch_args(batch))

    async def _rewrite(
        self,
        session_id: str,
        changes: Mapping[int, str | None],
        archive: Archive,
    ) -> int:
        if not changes:
            if archive[0]:
                await self._archive_only(session_id, archive)
            return 0
        keys = self.keys(session_id)
        low = max(1, min(row_position(row) for row in changes))
        while True:
            total, values, _ = await self._snapshot(keys, 0)
            if low > total:
                if archive[0]:
                    await self._archive_only(session_id, archive)
                return 0
            kept = values[low - 1 :]
            hashes = [hashlib.sha1(raw).hexdigest() for raw in kept]  # noqa: S324
            out: list[tuple[str, object]] = []
            changed = 0
            for i in range(len(kept)):
                position = low + i
                rid = (position << HASH_BITS) | int(hashes[i], 16)
                if rid not in changes:
                    out.append(("k", position))
                    continue
                changed += 1
                text = changes[rid]
                if text is not None:  # the row's provenance follows it to its new bytes
                    out.append((f"r{position}", text))
            if not changed:
                if archive[0]:
                    await self._archive_only(session_id, archive)
                return 0
            if await self._splice(
                keys,
                session_id,
                total=total,
                start=low,
                hashes=hashes,
                out=out,
                refresh=False,
                archive=archive,
            ):
                return changed

    async def _archive_only(self, session_id: str, archive: Archive) -> None:
        with translated("write"):
            await self._script(
                ARCHIVE_SCRIPT, self.keys(session_id), archive_args(archive), write=True
            )

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._state is _State.CLOSED

    async def aclose(self) -> None:
        """Refuse later calls and close the client if the store owns it; idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_client:
            await self.client.aclose()

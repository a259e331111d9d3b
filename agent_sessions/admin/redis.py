"""RedisDatabase: the administrative view of the sessions a Redis server holds under a prefix.

The sessions are those of :class:`~agent_sessions.RedisSession` and the SDK's ``RedisSession``
(the same keys). Values are handled as the stored text, never decoded, so encrypted envelopes
and undecodable values are listed, exported, imported and migrated byte for byte. Exports use
format version 1 of ``agent_sessions.admin`` (version 3 when sessions have state values or an
archive, 4 when items were written in a run: they carry their agent, run, position, digest and
the time of their provenance entry; Redis keeps no time for other items, which carry
``created_at: null``), which :class:`~agent_sessions.admin.SessionDatabase` imports, and the
other way round: :func:`copy_between` moves sessions between a SQL database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import redis.asyncio as aioredis

from ..backends.redis.layout import SessionKeys, parse_provenance, provenance_value
from ..errors import SessionClosedError, SessionExistsError, SessionNotFoundError, StorageError
from ..metadata import METADATA_STATE
from ..serialization import JSONValue
from ..store import RowTag
from .catalogue import SessionInfo
from .db import canonical_time, parse_time
from .files import ExportTarget, FileFailed, finish, write
from .jsonl import (
    FORMAT,
    PROVENANCE,
    Begin,
    End,
    Item,
    Stream,
    Tree,
    add_item,
    encode,
    item_record,
    scan_file,
)
from .metadata import check_where, matches, view
from .rows import Digest, StoredRow
from .transfer import Conflict, TransferReport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["RedisDatabase", "copy_between"]

_SUFFIX = ":messages"
_GLOB = str.maketrans({c: "\\" + c for c in "*?[]\\"})

_SNAPSHOT = """
local values = redis.call('LRANGE', KEYS[2], 0, -1)
local record = redis.call('HMGET', KEYS[1], 'created_at', 'updated_at')
local state = {}
if redis.call('TYPE', KEYS[4])['ok'] == 'hash' then state = redis.call('HGETALL', KEYS[4]) end
local archive = {}
if redis.call('TYPE', KEYS[5])['ok'] == 'list' then
  archive = redis.call('LRANGE', KEYS[5], 0, -1)
end
local tags, runs = {}, {}
if redis.call('TYPE', KEYS[6])['ok'] == 'hash' then
  for i = 1, #values do tags[i] = redis.call('HGET', KEYS[6], redis.sha1hex(values[i])) or '' end
end
if redis.call('TYPE', KEYS[7])['ok'] == 'hash' then runs = redis.call('HGETALL', KEYS[7]) end
return {values, record[1], record[2], state, archive, tags, runs}
"""
_SIZE = """
local total, n = 0, 0
for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do total = total + #v; n = n + 1 end
local record = redis.call('HMGET', KEYS[1], 'created_at', 'updated_at')
return {n, total, record[1], record[2]}
"""
_WRITE = """#!lua
-- ARGV: replace ('1'/'0'), session_id, created_at, updated_at, n values, the values,
--       n state pairs, name value ..., n provenance pairs, SHA-1 value ...,
--       n run pairs, run key value ..., then the archive's entries
local exists = redis.call('EXISTS', KEYS[1], KEYS[2]) > 0
if exists and ARGV[1] ~= '1' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'session_id', ARGV[2], 'created_at', ARGV[3], 'updated_at', ARGV[4])
local function push(key, first, last)
  for i = first, last, 1000 do
    redis.call('RPUSH', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end
local values = tonumber(ARGV[5])
push(KEYS[2], 6, 5 + values)
local at = 6 + values
for _, key in ipairs({KEYS[4], KEYS[6], KEYS[7]}) do
  local pairs_ = tonumber(ARGV[at])
  for i = at + 1, at + 2 * pairs_, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
  at = at + 2 * pairs_ + 1
end
push(KEYS[5], at, #ARGV)
return 1
"""


def _moment(seconds: Any) -> datetime | None:
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(int(seconds), UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None


def _seconds(stamp: str | None, default: int) -> int:
    moment = parse_time(stamp) if stamp is not None else None
    return default if moment is None else int(moment.replace(tzinfo=UTC).timestamp())


class _Snapshot(NamedTuple):
    """One session read at once: its values, record times, state and archive records."""

    texts: list[str]
    created: Any
    updated: Any
    sides: list[dict[str, Any]]
    tags: list[RowTag | None]
    """Each value's provenance (None: untagged), see :func:`_tags`."""
    times: list[str | None]
    """When each tagged value was written (naive UTC text); None for the others."""


def _tags(
    values: list[bytes], raw_tags: list[bytes], runs: list[bytes]
) -> tuple[list[RowTag | None], list[str | None]]:
    """Each value's provenance, as the store keeps it per distinct bytes.

    The store keys provenance by a value's SHA-1, so equal values share one entry. A run's
    position belongs to one row: the newest value with those bytes that the run's entry
    names; older equal values read as untagged here.
    """
    digests: dict[bytes, tuple[str, bytes]] = {}
    for key, entry in zip(runs[::2], runs[1::2], strict=True):
        digest, _, sha = entry.partition(b"\x00")
        digests[key] = (digest.decode("ascii", "replace"), sha)
    tags: list[RowTag | None] = [None] * len(values)
    times: list[str | None] = [None] * len(values)
    claimed: set[bytes] = set()
    for index in range(len(raw_tags) - 1, -1, -1):
        agent, run_id, position, created = parse_provenance(raw_tags[index])
        if run_id is None or position is None:
            continue
        key = f"{run_id}\x00{position}".encode()
        found = digests.get(key)
        sha = hashlib.sha1(values[index]).hexdigest().encode()  # noqa: S324 - the store's key
        if key in claimed or found is None or found[1] != sha:
            continue
        claimed.add(key)
        tags[index] = RowTag(agent, run_id, position, found[0])
        times[index] = created
    return tags, times


class Exportable(Protocol):
    """What :func:`copy_between` needs of either side: export and import a JSON Lines file."""

    async def export_jsonl(self, destination: str | os.PathLike[str]) -> TransferReport:
        """Export every session to a new file."""
        ...

    async def import_jsonl(
        self, source: str | os.PathLike[str], *, on_conflict: Conflict = "error"
    ) -> TransferReport:
        """Import a file written by ``export_jsonl``."""
        ...


class RedisDatabase:
    """The sessions a Redis server keeps under ``key_prefix``: list, read, export, import.

    Args:
        url: A Redis URL, such as ``"redis://localhost:6379/0"``.
        key_prefix: The sessions' prefix, as given to ``RedisSession``.
        redis_kwargs: Passed on to ``redis.asyncio.from_url``.

    Example:
        >>> async def backup() -> None:
        ...     async with RedisDatabase("redis://localhost:6379/0") as db:
        ...         await db.export_jsonl("sessions.jsonl")
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "agents:session",
        redis_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.location = url
        self.key_prefix = key_prefix
        self._client = aioredis.from_url(url, **(redis_kwargs or {}))
        self._closed = False

    async def __aenter__(self) -> RedisDatabase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    @property
    def _where(self) -> str:
        return f"{self.location} under {self.key_prefix!r}"

    def _check(self, method: str) -> None:
        if self._closed:
            raise SessionClosedError(f"RedisDatabase.{method}() was called after aclose()")

    def _keys(self, session_id: str) -> tuple[str, ...]:
        return SessionKeys(self.key_prefix, session_id).all()

    async def _eval(self, script: str, session_id: str, *args: Any) -> Any:
        try:
            keys = self._keys(session_id)
            return await self._client.eval(script, len(keys), *keys, *args)
        except (aioredis.RedisError, OSError) as exc:
            raise StorageError(f"Redis at {self.location}: {exc}") from exc

    async def session_ids(self) -> list[str]:
        """Every session's id, in code point order: those with items or a session record."""
        self._check("session_ids")
        start = len(self.key_prefix) + 1
        pattern = self.key_prefix.translate(_GLOB) + ":*"
        found: set[str] = set()
        try:
            async for key in self._client.scan_iter(match=pattern, count=1000, _type="list"):
                name = key.decode("utf-8", "surrogateescape")
                if name.endswith(_SUFFIX) and len(name) > start + len(_SUFFIX):
                    found.add(name[start : -len(_SUFFIX)])
            async for key in self._client.scan_iter(match=pattern, count=1000, _type="hash"):
                name = key.decode("utf-8", "surrogateescape")[start:]
                owner: Any = await self._client.hget(key, "session_id")
                if isinstance(owner, str):
                    owner = owner.encode("utf-8", "surrogateescape")
                if owner is not None and owner.decode("utf-8", "surrogateescape") == name:
                    found.add(name)
        except (aioredis.RedisError, OSError) as exc:
            raise StorageError(f"Redis at {self.location}: {exc}") from exc
        return sorted(found)

    async def list_sessions(
        self,
        *,
        limit: int | None = None,
        where: Mapping[str, JSONValue] | None = None,
        agent: str | None = None,
    ) -> list[SessionInfo]:
        """Each session with its item count, stored bytes, record times and metadata, by id.

        Args:
            limit: At most this many sessions.
            where: Only sessions whose plaintext metadata has each of these top-level keys
                equal to the value given (JSON equality, as ``SessionDatabase``'s).
            agent: Only sessions with at least one item this agent wrote.

        Raises:
            ValueError: a ``where`` key is empty.
            TypeError: a ``where`` value is not JSON-compatible.
        """
        if where:
            check_where(where)
        found: list[SessionInfo] = []
        for sid in await self.session_ids():
            if limit is not None and len(found) >= limit:
                break
            stored = await self._metadata(sid)
            if where and not matches(stored, where):
                continue
            if agent is not None:
                tags = (await self._snapshot(sid)).tags
                if not any(tag is not None and tag.agent_name == agent for tag in tags):
                    continue
            status, value = view(stored)
            info = await self.session(sid)
            found.append(dataclasses.replace(info, metadata_status=status, metadata=value))
        return found

    async def _metadata(self, session_id: str) -> str | None:
        """The session's stored metadata text (``session.update_metadata``), or None."""
        key = SessionKeys(self.key_prefix, session_id).state
        try:
            if await self._client.type(key) not in (b"hash", "hash"):
                return None
            raw: Any = await self._client.hget(key, METADATA_STATE)
        except (aioredis.RedisError, OSError) as exc:
            raise StorageError(f"Redis at {self.location}: {exc}") from exc
        if raw is None:
            return None
        return raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")

    async def session(self, session_id: str) -> SessionInfo:
        """One session's entry.

        Raises:
            SessionNotFoundError: it has neither items nor a session record.
        """
        self._check("session")
        items, size, created, updated = await self._eval(_SIZE, session_id)
        if not items and created is None and updated is None:
            raise SessionNotFoundError([session_id], self._where)
        return SessionInfo(
            session_id=session_id,
            items=int(items),
            bytes=int(size),
            created_at=_moment(created),
            updated_at=_moment(updated),
            first_item_at=None,
            last_item_at=None,
        )

    async def _snapshot(self, session_id: str) -> _Snapshot:
        values, created, updated, state, archive, raw_tags, runs = await self._eval(
            _SNAPSHOT, session_id
        )

        def text(raw: bytes, what: str) -> str:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise StorageError(
                    f"{what} of session {session_id!r} is not UTF-8 text; it cannot be exported "
                    "or shown as text"
                ) from None

        texts = [text(raw, f"value {i}") for i, raw in enumerate(values, start=1)]
        names = [text(raw, "a state name") for raw in state[::2]]
        sides: list[dict[str, Any]] = [
            {"type": "kv", "name": name, "value": text(raw, f"state {name!r}"), "updated_at": None}
            for name, raw in sorted(zip(names, state[1::2], strict=True))
        ]
        for entry in archive:
            row = json.loads(entry)
            sides.append(
                {
                    "type": "archived",
                    "batch": int(row["batch"]),
                    "kind": row["kind"],
                    "role": row["role"],
                    "data": row["text"],
                    "archived_at": canonical_time(_moment(row["at"])),
                }
            )
        tags, times = _tags(values, raw_tags, runs)
        return _Snapshot(texts, created, updated, sides, tags, times)

    async def rows(self, session_id: str) -> list[StoredRow]:
        """A session's stored values, oldest first; ``id`` is the position (1 = oldest)."""
        self._check("rows")
        snap = await self._snapshot(session_id)
        return [
            StoredRow(i, text, at, tag)
            for i, (text, at, tag) in enumerate(
                zip(snap.texts, snap.times, snap.tags, strict=True), start=1
            )
        ]

    async def export_jsonl(
        self,
        destination: str | os.PathLike[str],
        session_ids: Sequence[str] | None = None,
        *,
        overwrite: bool = False,
    ) -> TransferReport:
        """Export sessions (all if None) to a new JSON Lines file (format version 1, 3 or 4).

        Each session is read in one snapshot. The file is written under a temporary name and
        renamed when complete.

        Raises:
            SessionNotFoundError: a named session does not exist; nothing was written.
            FileExistsError: the file exists and ``overwrite`` is False.
        """
        self._check("export_jsonl")
        ids = sorted(set(session_ids)) if session_ids is not None else await self.session_ids()
        for sid in ids if session_ids is not None else ():
            await self.session(sid)
        snapshots = [(sid, await self._snapshot(sid)) for sid in ids]
        started = time.perf_counter()
        target = ExportTarget(Path(destination), None, overwrite=overwrite)
        try:
            out = await asyncio.to_thread(target.open)
        except FileFailed as failed:
            raise failed.error from None
        total = 0
        if any(tag is not None for _, snap in snapshots for tag in snap.tags):
            version = PROVENANCE
        else:
            version = 3 if any(snapshot.sides for _, snapshot in snapshots) else 1
        try:
            await write(out, encode({"format": FORMAT, "version": version}) + "\n")
            for sid, snap in snapshots:
                lines = [_session_line(sid, snap.created, snap.updated)]
                digest = Digest()
                for text, at, tag in zip(snap.texts, snap.times, snap.tags, strict=True):
                    add_item(digest, text, tag)
                    lines.append(encode(item_record(text, at, tag)))
                for record in snap.sides:
                    lines.append(encode(record))
                    digest.add(lines[-1])
                end: dict[str, Any] = {"type": "end", "session_id": sid, "items": len(snap.texts)}
                if version > 1:
                    end["records"] = len(snap.sides)
                end["sha256"] = digest.hexdigest()
                lines.append(encode(end))
                await write(out, "\n".join(lines) + "\n")
                total += len(snap.texts)
            footer = {"type": "footer", "sessions": len(ids), "items": total}
            await write(out, encode(footer) + "\n")
            await finish(out, close=True)
            await asyncio.to_thread(target.commit)
        except FileFailed as failed:
            raise failed.error from None
        finally:
            with contextlib.suppress(OSError):
                out.close()
            target.discard()
        return TransferReport(len(ids), total, time.perf_counter() - started)

    async def import_jsonl(
        self, source: str | os.PathLike[str], *, on_conflict: Conflict = "error"
    ) -> TransferReport:
        """Import an export file (any version, without branch trees), a session per script.

        The whole file is checked first; nothing is written unless it is intact. Items with
        provenance (format version 4) get it in the session's provenance and runs hashes, so
        ``get_records()`` returns it.

        Raises:
            ExportFormatError: the file is not a complete, intact export.
            SessionExistsError: sessions exist and ``on_conflict`` is ``error``.
            ValueError: a session has a branch tree, which Redis sessions cannot hold.
        """
        self._check("import_jsonl")
        path = Path(source)
        started = time.perf_counter()
        scanned = await scan_file(path)
        trees = [entry.session_id for entry in scanned if entry.trees]
        if trees:
            raise ValueError(
                f"{len(trees)} session(s) have branch trees ({trees[0]!r} first), which a Redis "
                "session cannot hold; export them from an advanced database without branches"
            )
        if on_conflict == "error":
            present = set(await self.session_ids()) & {entry.session_id for entry in scanned}
            if present:
                raise SessionExistsError(
                    sorted(present), self._where, "nothing was imported (choose skip or replace)"
                )
        report = TransferReport(0, 0, 0.0)
        now = int(time.time())
        async for begin, items, sides in _sessions(path):
            texts = [item.data for item in items]
            created = _seconds(begin.created_at, now)
            args: list[object] = [
                "1" if on_conflict == "replace" else "0",
                begin.session_id,
                str(created),
                str(_seconds(begin.updated_at, created)),
                len(texts),
                *texts,
            ]
            state = [record for record in sides if record["type"] == "kv"]
            args.append(len(state))
            for record in state:
                args += (record["name"], record["value"])
            args += _provenance_args(items, now)
            args += [_archive_entry(record, now) for record in sides if record["type"] != "kv"]
            existed = on_conflict == "replace" and await self._exists(begin.session_id)
            if not await self._eval(_WRITE, begin.session_id, *args):
                report.skipped.append(begin.session_id)
                continue
            if existed:
                report.replaced.append(begin.session_id)
            report = TransferReport(
                report.sessions + 1,
                report.items + len(texts),
                0.0,
                report.skipped,
                report.replaced,
            )
        return TransferReport(
            report.sessions,
            report.items,
            time.perf_counter() - started,
            report.skipped,
            report.replaced,
        )

    async def _exists(self, session_id: str) -> bool:
        record, messages = self._keys(session_id)[:2]
        return bool(await self._client.exists(record, messages))


def _session_line(session_id: str, created: Any, updated: Any) -> str:
    return encode(
        {
            "type": "session",
            "session_id": session_id,
            "created_at": canonical_time(_moment(created)),
            "updated_at": canonical_time(_moment(updated)),
        }
    )


def _archive_entry(record: dict[str, Any], now: int) -> str:
    """An ``archived`` record as the Redis store keeps it in a session's archive list."""
    entry = {
        "batch": record["batch"],
        "kind": record["kind"],
        "role": record["role"],
        "text": record["data"],
        "at": _seconds(record.get("archived_at"), now),
    }
    return json.dumps(entry, separators=(",", ":"))


def _provenance_args(items: list[Item], now: int) -> list[object]:
    """The provenance part of a write: the two hashes' pairs, as the store keeps them.

    The provenance hash is keyed by a value's SHA-1 (equal values share one entry, as in the
    store); the runs hash maps ``run_id NUL position`` to ``digest NUL SHA-1``. An item without
    a time gets the import's.
    """
    provenance: dict[str, str] = {}
    runs: dict[str, str] = {}
    for item in items:
        tag = item.tag
        if tag is None:
            continue
        sha = hashlib.sha1(item.data.encode("utf-8")).hexdigest()  # noqa: S324 - the store's key
        moment = parse_time(item.created_at) or datetime.fromtimestamp(now, UTC)
        provenance[sha] = provenance_value(tag.agent_name, tag.run_id, tag.position, moment)
        runs[f"{tag.run_id}\x00{tag.position}"] = f"{tag.digest}\x00{sha}"
    args: list[object] = [len(provenance)]
    for field_, value in provenance.items():
        args += (field_, value)
    args.append(len(runs))
    for field_, value in runs.items():
        args += (field_, value)
    return args


async def _sessions(path: Path) -> AsyncIterator[tuple[Begin, list[Item], list[dict[str, Any]]]]:
    """Each session of a checked export file: its items and its side records."""
    handle = await asyncio.to_thread(path.open, encoding="utf-8")
    try:
        stream = Stream(handle, str(path))
        begin: Begin | None = None
        items: list[Item] = []
        sides: list[dict[str, Any]] = []
        while (event := await stream.next()) is not None:
            if isinstance(event, Begin):
                begin, items, sides = event, [], []
            elif isinstance(event, Item):
                items.append(event)
            elif isinstance(event, End) and begin is not None:
                yield begin, items, sides
            elif isinstance(event, Tree):
                if event.record.get("type") not in ("kv", "archived"):  # pragma: no cover
                    raise ValueError("a branch tree cannot be imported into Redis")
                sides.append(event.record)
    finally:
        await asyncio.to_thread(handle.close)


async def copy_between(
    source: Exportable, destination: Exportable, *, on_conflict: Conflict = "error"
) -> TransferReport:
    """Copy every session from one database to another through a checked export file.

    Either side may be a :class:`RedisDatabase` or a ``SessionDatabase`` (SQLite, PostgreSQL,
    MariaDB): SQL to Redis, Redis to SQL, or Redis to Redis. The file lives in a private
    temporary directory and is removed afterwards; the import checks its checksums before it
    writes anything.

    Returns:
        The import's report.
    """
    with tempfile.TemporaryDirectory(prefix="agent-sessions-copy-") as tmp:
        path = Path(tmp) / "sessions.jsonl"
        await source.export_jsonl(path)
        return await destination.import_jsonl(path, on_conflict=on_conflict)

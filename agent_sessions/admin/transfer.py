r"""Export to and import from JSON Lines, losslessly and verifiably.

The format (version 1), one JSON object per line, compact, ASCII, keys in a fixed order::

    {"format":"agent-sessions-export","version":1}
    {"type":"session","session_id":"u1","created_at":"2025-01-02 10:00:00","updated_at":"..."}
    {"type":"item","created_at":"2025-01-02 10:00:00","data":"{\"role\":\"user\",...}"}
    {"type":"end","session_id":"u1","items":1,"sha256":"..."}
    {"type":"footer","sessions":1,"items":1}

Sessions come in order of their ids (code points), items in stored order, each with its stored
text unchanged in ``data``. Each session ends with its item count and a SHA-256 of its texts
(see :class:`~agent_sessions.admin.rows.Digest`), and the footer with the totals, so a cut or
edited file is refused. Exporting, importing into an empty database and exporting again gives
identical bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, NamedTuple, TextIO, cast

from ..errors import ExportFormatError, SessionExistsError
from ..serialization import JsonCodec
from .catalogue import SessionInfo
from .db import Database, canonical_time, parse_time
from .files import ExportTarget, file_error, finish, write
from .rows import BATCH, Digest, delete_session, existing, insert_rows, insert_session
from .rows import read_rows as stored_rows

__all__ = [
    "FORMAT",
    "VERSION",
    "Conflict",
    "TransferReport",
    "export_to",
    "export_to_file",
    "import_from",
    "scan_file",
]

FORMAT = "agent-sessions-export"
VERSION = 1
Conflict = Literal["error", "skip", "replace"]
"""What an import does with a session that already exists: refuse, keep it, or replace it."""
ProgressCallback = Callable[[int, int], None]
"""Called with (items done, items in all) as work advances."""

_JSON = JsonCodec()


@dataclass(frozen=True)
class TransferReport:
    """What an export or an import did.

    Attributes:
        sessions: Sessions written.
        items: Items written.
        seconds: Wall-clock time taken.
        skipped: Sessions an import left alone because they existed (``skip``).
        replaced: Sessions an import replaced (``replace``).
    """

    sessions: int
    items: int
    seconds: float
    skipped: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


def _line(record: dict[str, Any]) -> str:
    return _JSON.encode(cast(Any, record)) + "\n"


async def export_to(
    db: Database, out: TextIO, infos: list[SessionInfo], progress: ProgressCallback | None
) -> TransferReport:
    """Write the sessions (already ordered by id) and their rows to ``out``."""
    started, total = time.perf_counter(), sum(info.items for info in infos)
    done = 0
    await write(out, _line({"format": FORMAT, "version": VERSION}))
    async with db.engine.connect() as conn:
        for info in infos:
            digest = Digest()
            lines = [
                _line(
                    {
                        "type": "session",
                        "session_id": info.session_id,
                        # A session with rows but no record gets its rows' times.
                        "created_at": canonical_time(info.created_at or info.first_item_at),
                        "updated_at": canonical_time(info.updated_at or info.last_item_at),
                    }
                )
            ]
            async for rows in stored_rows(db, conn, info.session_id):
                for row in rows:
                    digest.add(row.text)
                    lines.append(
                        _line(
                            {
                                "type": "item",
                                "created_at": canonical_time(row.created_at),
                                "data": row.text,
                            }
                        )
                    )
                await write(out, "".join(lines))
                lines.clear()
                done += len(rows)
                if progress is not None:
                    progress(done, max(total, done))
            end = {"type": "end", "session_id": info.session_id, "items": digest.count}
            end["sha256"] = digest.hexdigest()
            lines.append(_line(end))
            await write(out, "".join(lines))
    footer = {"type": "footer", "sessions": len(infos), "items": done}
    await write(out, _line(footer))
    await finish(out, close=False)
    return TransferReport(len(infos), done, time.perf_counter() - started)


async def export_to_file(
    db: Database,
    path: Path,
    infos: list[SessionInfo],
    progress: ProgressCallback | None,
    *,
    overwrite: bool,
) -> TransferReport:
    """Export to a file under a temporary name, renamed when complete.

    A failed export therefore never leaves a file that looks whole, and never a partial one.
    The database itself, or any SQLite file, is never overwritten; another existing file only
    with ``overwrite``.
    """
    target = ExportTarget(path, db.path, overwrite=overwrite)
    out = await asyncio.to_thread(target.open)
    try:
        report = await export_to(db, out, infos, progress)
        await finish(out, close=True)
        await asyncio.to_thread(target.commit)
    finally:
        with contextlib.suppress(OSError):
            out.close()  # after a failure: the data is abandoned anyway
        target.discard()
    return report


class _Begin(NamedTuple):
    session_id: str
    created_at: str | None
    updated_at: str | None


class _Item(NamedTuple):
    data: str
    created_at: str | None


class _End(NamedTuple):
    session_id: str
    items: int


_Event = _Begin | _Item | _End


def _stamp(record: dict[str, Any], key: str, where: str) -> str | None:
    """A record's timestamp: null, or text that reads as a date and time on every database."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ExportFormatError(f"{where}: {key!r} must be a string or null")
    if parse_time(value) is None:
        raise ExportFormatError(
            f"{where}: {key!r} is not a timestamp ({value[:40]!r}); expected "
            "'YYYY-MM-DD HH:MM:SS[.ffffff]' or null"
        )
    return value


def _text(record: dict[str, Any], key: str, where: str) -> str:
    """A record's text field, refused if no database could store it as it is."""
    value = record.get(key)
    if not isinstance(value, str):
        raise ExportFormatError(f"{where}: {key!r} must be a string")
    if "\x00" in value:
        raise ExportFormatError(
            f"{where}: {key!r} holds a NUL character, which not every database stores"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ExportFormatError(
            f"{where}: {key!r} holds a lone surrogate (\\u{ord(value[exc.start]):04x}), "
            "which is not text any database stores"
        ) from None
    return value


class _Checker:
    """Checks an export record by record: order, checksums, totals."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.current: _Begin | None = None
        self.digest = Digest()
        self.sessions = self.items = 0
        self.finished = False

    def feed(self, record: dict[str, Any], where: str) -> _Event | None:
        """Check one record after the header; return its event (None for the footer)."""
        kind = record.get("type")
        if self.current is None and kind == "session":
            return self._begin(record, where)
        if self.current is not None and kind == "item":
            data = _text(record, "data", where)
            self.digest.add(data)
            return _Item(data, _stamp(record, "created_at", where))
        if self.current is not None and kind == "end":
            return self._end(self.current, record, where)
        if self.current is None and kind == "footer":
            if record.get("sessions") != self.sessions or record.get("items") != self.items:
                raise ExportFormatError(f"{where}: the footer's totals do not match the file")
            self.finished = True
            return None
        expected = "an item or the end of the session" if self.current else "a session or footer"
        raise ExportFormatError(f"{where}: found {kind!r}, expected {expected}")

    def _begin(self, record: dict[str, Any], where: str) -> _Begin:
        session_id = _text(record, "session_id", where)
        if session_id in self.seen:
            raise ExportFormatError(f"{where}: session {session_id!r} appears twice")
        self.seen.add(session_id)
        created, updated = _stamp(record, "created_at", where), _stamp(record, "updated_at", where)
        self.current, self.digest = _Begin(session_id, created, updated), Digest()
        return self.current

    def _end(self, current: _Begin, record: dict[str, Any], where: str) -> _End:
        if record.get("session_id") != current.session_id:
            raise ExportFormatError(f"{where}: end of {current.session_id!r} expected")
        digest = self.digest
        if record.get("items") != digest.count or record.get("sha256") != digest.hexdigest():
            raise ExportFormatError(
                f"{where}: session {current.session_id!r} does not match its checksum "
                f"({digest.count} items read, {record.get('items')!r} recorded): the file was "
                "altered or damaged"
            )
        self.sessions, self.items = self.sessions + 1, self.items + digest.count
        self.current = None
        return _End(current.session_id, digest.count)


def _events(lines: Iterable[str], name: str) -> Iterator[_Event]:
    """Parse and check an export, yielding its sessions' events; raise on any defect."""
    checker = _Checker()
    number = 0
    rows = iter(lines)
    for number, line in enumerate(rows, start=1):
        where = f"{name}, line {number}"
        if checker.finished:
            if line.strip():
                raise ExportFormatError(f"{where}: data after the footer")
            continue
        try:
            record = cast(dict[str, Any], _JSON.decode(line))
        except ValueError as exc:
            raise ExportFormatError(f"{where}: not a JSON object ({exc})") from exc
        except RecursionError:
            raise ExportFormatError(f"{where}: nested too deeply to be an export record") from None
        if number == 1:
            _check_header(record, where)
        elif (event := checker.feed(record, where)) is not None:
            yield event
    if number == 0:
        raise ExportFormatError(f"{name} is empty, not an agent-sessions export")
    if not checker.finished:
        raise ExportFormatError(f"{name} is truncated after line {number}: the footer is missing")


def _check_header(record: dict[str, Any], where: str) -> None:
    if record.get("format") != FORMAT:
        raise ExportFormatError(f"{where}: not an agent-sessions export (no {FORMAT!r} header)")
    version = record.get("version")
    if not isinstance(version, int) or version < 1:
        raise ExportFormatError(f"{where}: invalid format version {version!r}")
    if version > VERSION:
        raise ExportFormatError(
            f"{where}: format version {version} is newer than this agent-sessions reads "
            f"({VERSION}); upgrade agent-sessions"
        )


def _scan(path: Path) -> list[tuple[str, int]]:
    """Check a whole export before anything is written; return its sessions and sizes."""
    with path.open(encoding="utf-8", newline="\n") as handle:
        return [(e.session_id, e.items) for e in _events(handle, str(path)) if type(e) is _End]


class _Stream:
    """An export's events, parsed on a worker thread in batches so the loop never waits."""

    def __init__(self, handle: TextIO, name: str) -> None:
        self._events = _events(handle, name)
        self._buffer: deque[_Event] = deque()

    async def next(self) -> _Event | None:
        if not self._buffer:
            self._buffer.extend(await asyncio.to_thread(list, islice(self._events, BATCH)))
        return self._buffer.popleft() if self._buffer else None


async def scan_file(path: Path) -> list[tuple[str, int]]:
    """Check a whole export file without touching any database; return its sessions and sizes.

    Raises:
        ExportFormatError: the file is not a complete, intact export.
        FileFailed: the file cannot be read.
    """
    try:
        return await asyncio.to_thread(_scan, path)
    except UnicodeDecodeError as exc:
        raise ExportFormatError(f"{path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise file_error(exc, path, "read") from exc


async def import_from(
    db: Database,
    path: Path,
    sessions: list[tuple[str, int]],
    on_conflict: Conflict,
    progress: ProgressCallback | None,
) -> TransferReport:
    """Write each session of a checked export file (see :func:`scan_file`) in a transaction.

    Raises:
        SessionExistsError: sessions exist and ``on_conflict`` is ``error``; nothing was
            written.
    """
    started = time.perf_counter()
    async with db.engine.connect() as conn:
        found = await existing(db, conn, [sid for sid, _ in sessions])
        now = await db.now(conn)
    if found and on_conflict == "error":
        hint = "use --replace to overwrite them or --skip-existing to keep them"
        raise SessionExistsError(sorted(found), db.label, hint)
    total, done, items, written = sum(n for _, n in sessions), 0, 0, 0
    skipped: list[str] = []
    with path.open(encoding="utf-8", newline="\n") as handle:
        stream = _Stream(handle, str(path))
        while (event := await stream.next()) is not None:
            begin = cast(_Begin, event)
            if begin.session_id in found and on_conflict == "skip":
                skipped.append(begin.session_id)
                while type(await stream.next()) is _Item:
                    done += 1
            else:
                count = await _write_session(db, stream, begin, now, begin.session_id in found)
                done, items, written = done + count, items + count, written + 1
            if progress is not None:
                progress(done, total)
    replaced = sorted(found) if on_conflict == "replace" else []
    return TransferReport(written, items, time.perf_counter() - started, skipped, replaced)


async def _write_session(
    db: Database, stream: _Stream, begin: _Begin, now: Any, replace: bool
) -> int:
    """Write one session from the stream in one transaction; return its item count."""
    count = 0
    async with db.writing() as conn:
        if replace:
            await delete_session(db, conn, begin.session_id)
        created = db.stamp_value(begin.created_at, now)
        updated = db.stamp_value(begin.updated_at, now)
        await insert_session(db, conn, begin.session_id, created, updated)
        pending: list[tuple[str, str | None]] = []
        while True:
            event = await stream.next()
            if type(event) is _Item:
                pending.append((event.data, event.created_at))
                if len(pending) < BATCH:
                    continue
            await insert_rows(db, conn, begin.session_id, pending, now)
            count += len(pending)
            pending.clear()
            if type(event) is _End or event is None:
                return count

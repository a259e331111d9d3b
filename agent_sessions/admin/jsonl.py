"""Reading an export file: every line checked before anything is written (see :mod:`.transfer`).

A file is read twice: first whole, by :func:`scan_file`, which checks its structure, every
record's fields, each session's count and checksum and the footer's totals; then session by
session, as :class:`Stream` events, while an import writes them. Any defect is an
:class:`~agent_sessions.errors.ExportFormatError` naming the file and the line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TextIO, cast

from ..errors import ExportFormatError
from ..serialization import JsonCodec
from ..store import RowTag
from .db import parse_time
from .files import file_error
from .rows import BATCH, Digest

__all__ = [
    "FORMAT",
    "VERSION",
    "Begin",
    "End",
    "Event",
    "Item",
    "Scanned",
    "Stream",
    "Tree",
    "add_item",
    "encode",
    "item_record",
    "provenance_fields",
    "scan_file",
]

FORMAT = "agent-sessions-export"
VERSION = 4
"""The newest format version: 1 (items only), 2 (items, then each session's branch tree), 3
(then each session's state values and archived rows) or 4 (items with their provenance)."""

_JSON = JsonCodec()
_TREE_KINDS = ("branch", "record", "usage", "state")
"""The tree records of format version 2, in the order a session lists them."""
_TREES = 2
"""The first format version with branch trees."""
_SIDE_KINDS = ("kv", "archived")
"""The side records of format version 3, after the tree records (see ``admin.side``)."""
_SIDES = 3
"""The first format version with state values and archived rows."""
_ALL_KINDS = _TREE_KINDS + _SIDE_KINDS
PROVENANCE = 4
"""The first format version whose items may carry their provenance."""
_MAX_NAME = 255  # the agent_name and run_id columns on MariaDB
_MAX_DIGEST = 64  # the item_digest column on MariaDB: a SHA-256 or HMAC in hex
_MAX_TURN = 2**31 - 1  # turn columns are 32-bit integers on a server
_MAX_WHOLE = 2**63 - 1
_MAX_TYPE = 64  # a server's message_type column


def encode(record: dict[str, Any]) -> str:
    """One record as its line's text (compact ASCII JSON, keys in the given order)."""
    return _JSON.encode(cast(Any, record))


class Begin(NamedTuple):
    """A session's record: the first line of each session."""

    session_id: str
    created_at: str | None
    updated_at: str | None


class Item(NamedTuple):
    """One stored row of the session, and its provenance (format version 4) if it has one."""

    data: str
    created_at: str | None
    tag: RowTag | None = None


def item_record(data: str, created_at: str | None, tag: RowTag | None) -> dict[str, Any]:
    """An item's record: its time, its provenance (tagged rows, version 4) and its text."""
    record: dict[str, Any] = {"type": "item", "created_at": created_at}
    if tag is not None:
        record.update(provenance_fields(tag))
    record["data"] = data
    return record


def provenance_fields(tag: RowTag) -> dict[str, Any]:
    """A tag as an item record's fields; also what the session's checksum covers of it."""
    return {
        "agent_name": tag.agent_name,
        "run_id": tag.run_id,
        "run_position": tag.position,
        "item_digest": tag.digest,
    }


def add_item(digest: Digest, data: str, tag: RowTag | None) -> None:
    """Add an item to a session's checksum: its text, then its provenance if it has one."""
    digest.add(data)
    if tag is not None:
        digest.add(encode(provenance_fields(tag)))


class Tree(NamedTuple):
    """One record of the session's branch tree (format version 2), checked."""

    record: dict[str, Any]


class End(NamedTuple):
    """The end of a session, with its counts checked."""

    session_id: str
    items: int
    records: int
    trees: int = 0
    """How many of the records are branch-tree records (the others: state and archive)."""


Event = Begin | Item | Tree | End


class Scanned(NamedTuple):
    """A session of a checked file: its id, item count and record counts."""

    session_id: str
    items: int
    records: int
    trees: int = 0
    """How many of the records are branch-tree records (the others: state and archive)."""
    tagged: int = 0
    """How many of the items carry provenance (format version 4)."""


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


def _text(record: dict[str, Any], key: str, where: str, *, null: bool = False) -> Any:
    """A record's text field, refused if no database could store it as it is."""
    value = record.get(key)
    if value is None and null:
        return None
    if not isinstance(value, str):
        raise ExportFormatError(f"{where}: {key!r} must be a string" + (" or null" * null))
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


def _whole(
    record: dict[str, Any], key: str, where: str, most: int, *, null: bool = False
) -> int | None:
    """A record's whole number in ``[0, most]`` (or null, if allowed)."""
    value = record.get(key)
    if value is None and null:
        return None
    if type(value) is not int or not 0 <= value <= most:
        also = " or null" if null else ""
        raise ExportFormatError(f"{where}: {key!r} must be a whole number from 0 to {most}{also}")
    return value


def _check_side(record: dict[str, Any], kind: str, where: str) -> None:
    """Check the fields of one side record (a state value or an archived row)."""
    if kind == "kv":
        if len(_text(record, "name", where)) > 255:  # noqa: PLR2004 - the key column's size
            raise ExportFormatError(f"{where}: 'name' is longer than 255 characters")
        _text(record, "value", where)
        _stamp(record, "updated_at", where)
    elif kind == "archived":
        if _whole(record, "batch", where, _MAX_WHOLE) == 0:
            raise ExportFormatError(f"{where}: 'batch' must be 1 or more")
        if _text(record, "kind", where) not in ("compaction", "prune"):
            raise ExportFormatError(f"{where}: 'kind' must be 'compaction' or 'prune'")
        if _text(record, "role", where) not in ("item", "summary"):
            raise ExportFormatError(f"{where}: 'role' must be 'item' or 'summary'")
        _text(record, "data", where)
        _stamp(record, "archived_at", where)


def _check_tree(record: dict[str, Any], kind: str, items: int, where: str) -> None:
    """Check the fields of one tree (or side) record of a session with ``items`` items."""
    if kind in _SIDE_KINDS:
        _check_side(record, kind, where)
    elif kind == "branch":
        _text(record, "branch_id", where)
        _text(record, "parent_id", where, null=True)
        _whole(record, "cutoff", where, items, null=True)
        _stamp(record, "created_at", where)
    elif kind == "record":
        if items == 0 or type(record.get("item")) is not int or not 0 <= record["item"] < items:
            raise ExportFormatError(
                f"{where}: 'item' must be the index of one of the session's {items} items"
            )
        _text(record, "branch_id", where)
        if len(_text(record, "message_type", where)) > _MAX_TYPE:
            raise ExportFormatError(f"{where}: 'message_type' is longer than {_MAX_TYPE}")
        _whole(record, "sequence", where, _MAX_WHOLE)
        _whole(record, "turn", where, _MAX_TURN, null=True)
        _whole(record, "branch_turn", where, _MAX_TURN, null=True)
        _text(record, "tool_name", where, null=True)
        _stamp(record, "created_at", where)
    elif kind == "usage":
        _text(record, "branch_id", where)
        _whole(record, "turn", where, _MAX_TURN)
        for key in ("requests", "input_tokens", "output_tokens", "total_tokens"):
            _whole(record, key, where, _MAX_WHOLE, null=True)
        _text(record, "input_tokens_details", where, null=True)
        _text(record, "output_tokens_details", where, null=True)
        _stamp(record, "created_at", where)
    else:
        _text(record, "current", where, null=True)
        _whole(record, "generation", where, _MAX_WHOLE, null=True)
        reserved = record.get("reserved")
        if not isinstance(reserved, list):
            raise ExportFormatError(f"{where}: 'reserved' must be a list of branch ids")
        for branch in reserved:
            _text({"reserved": branch}, "reserved", where)
        if len(set(reserved)) != len(reserved):
            raise ExportFormatError(f"{where}: 'reserved' lists a branch id twice")


class _Checker:
    """Checks an export record by record: order, fields, checksums, totals."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.seen: set[str] = set()
        self.current: Begin | None = None
        self.digest = Digest()
        self.items = 0  # items in the current session
        self.phase = -1  # the last tree kind met in the current session (its index)
        self.keys: set[tuple[str, Any]] = set()  # branch and usage keys met, for duplicates
        self.records = self.trees = 0
        self.sessions = self.total = 0
        self.finished = False

    def feed(self, record: dict[str, Any], where: str) -> Event | None:
        """Check one record after the header; return its event (None for the footer)."""
        kind = record.get("type")
        if self.current is None and kind == "session":
            return self._begin(record, where)
        if self.current is not None and kind == "item" and self.phase < 0:
            data = _text(record, "data", where)
            tag = self._tag(record, where) if self.version >= PROVENANCE else None
            add_item(self.digest, data, tag)
            self.items += 1
            return Item(data, _stamp(record, "created_at", where), tag)
        if self.current is not None and kind in _TREE_KINDS and self.version >= _TREES:
            return self._tree(record, str(kind), where)
        if self.current is not None and kind in _SIDE_KINDS and self.version >= _SIDES:
            return self._tree(record, str(kind), where)
        if self.current is not None and kind == "end":
            return self._end(self.current, record, where)
        if self.current is None and kind == "footer":
            if record.get("sessions") != self.sessions or record.get("items") != self.total:
                raise ExportFormatError(f"{where}: the footer's totals do not match the file")
            self.finished = True
            return None
        raise ExportFormatError(f"{where}: found {kind!r}, expected {self._expected()}")

    def _tag(self, record: dict[str, Any], where: str) -> RowTag | None:
        """An item's provenance: all of run, position and digest, or none of them."""
        fields = ("run_id", "run_position", "item_digest")
        if all(record.get(key) is None for key in (*fields, "agent_name")):
            return None
        if any(record.get(key) is None for key in fields):
            raise ExportFormatError(
                f"{where}: an item's provenance needs 'run_id', 'run_position' and "
                "'item_digest' (or none of them, and no 'agent_name')"
            )
        agent = _text(record, "agent_name", where, null=True)
        run_id = _text(record, "run_id", where)
        digest = _text(record, "item_digest", where)
        for key, value, most in (
            ("agent_name", agent, _MAX_NAME),
            ("run_id", run_id, _MAX_NAME),
            ("item_digest", digest, _MAX_DIGEST),
        ):
            if value is not None and len(value) > most:
                raise ExportFormatError(f"{where}: {key!r} is longer than {most} characters")
        if not run_id:
            raise ExportFormatError(f"{where}: 'run_id' is empty")
        position = cast(int, _whole(record, "run_position", where, _MAX_TURN))
        run_key: tuple[str, Any] = ("run", (run_id, position))
        if run_key in self.keys:
            raise ExportFormatError(
                f"{where}: run {run_id!r} has two items at position {position} in the session"
            )
        self.keys.add(run_key)
        return RowTag(agent, run_id, position, digest)

    def _expected(self) -> str:
        if self.current is None:
            return "a session or the footer"
        if self.version < _TREES:
            return "an item or the end of the session"
        kinds = _ALL_KINDS if self.version >= _SIDES else _TREE_KINDS
        later = ", ".join(repr(k) for k in kinds[max(self.phase, 0) :])
        return ("an item, " if self.phase < 0 else "") + f"{later} or the end of the session"

    def _begin(self, record: dict[str, Any], where: str) -> Begin:
        session_id = _text(record, "session_id", where)
        if session_id in self.seen:
            raise ExportFormatError(f"{where}: session {session_id!r} appears twice")
        self.seen.add(session_id)
        created, updated = _stamp(record, "created_at", where), _stamp(record, "updated_at", where)
        self.current, self.digest = Begin(session_id, created, updated), Digest()
        self.items, self.phase, self.records, self.keys = 0, -1, 0, set()
        self.trees = 0
        return self.current

    def _tree(self, record: dict[str, Any], kind: str, where: str) -> Tree:
        phase = _ALL_KINDS.index(kind)
        if phase < self.phase or (phase == self.phase and kind == "state"):
            raise ExportFormatError(f"{where}: found {kind!r}, expected {self._expected()}")
        self.phase = phase
        _check_tree(record, kind, self.items, where)
        if kind in ("branch", "usage", "kv"):
            name = record["name" if kind == "kv" else "branch_id"]
            key = (kind, name if kind != "usage" else (name, record["turn"]))
            if key in self.keys:
                raise ExportFormatError(f"{where}: this {kind} is listed twice in the session")
            self.keys.add(key)
        self.digest.add(encode(record))
        self.records += 1
        self.trees += kind in _TREE_KINDS
        return Tree(record)

    def _end(self, current: Begin, record: dict[str, Any], where: str) -> End:
        if record.get("session_id") != current.session_id:
            raise ExportFormatError(f"{where}: end of {current.session_id!r} expected")
        digest = self.digest
        records = record.get("records", 0) if self.version >= _TREES else 0
        if (
            record.get("items") != self.items
            or records != self.records
            or (self.version >= _TREES and "records" not in record)
            or record.get("sha256") != digest.hexdigest()
        ):
            raise ExportFormatError(
                f"{where}: session {current.session_id!r} does not match its checksum "
                f"({self.items} items read, {record.get('items')!r} recorded): the file was "
                "altered or damaged"
            )
        self.sessions, self.total = self.sessions + 1, self.total + self.items
        self.current = None
        return End(current.session_id, self.items, self.records, self.trees)


def _check_header(record: dict[str, Any], where: str) -> int:
    if record.get("format") != FORMAT:
        raise ExportFormatError(f"{where}: not an agent-sessions export (no {FORMAT!r} header)")
    version = record.get("version")
    if type(version) is not int or version < 1:
        raise ExportFormatError(f"{where}: invalid format version {version!r}")
    if version > VERSION:
        raise ExportFormatError(
            f"{where}: format version {version} is newer than this agent-sessions reads "
            f"({VERSION}); upgrade agent-sessions"
        )
    return version


def _events(lines: Iterable[str], name: str) -> Iterator[Event]:
    """Parse and check an export, yielding its sessions' events; raise on any defect."""
    checker: _Checker | None = None
    number = 0
    for number, line in enumerate(lines, start=1):
        where = f"{name}, line {number}"
        if checker is not None and checker.finished:
            if line.strip():
                raise ExportFormatError(f"{where}: data after the footer")
            continue
        try:
            record = cast(dict[str, Any], _JSON.decode(line))
        except ValueError as exc:
            raise ExportFormatError(f"{where}: not a JSON object ({exc})") from exc
        except RecursionError:
            raise ExportFormatError(f"{where}: nested too deeply to be an export record") from None
        if checker is None:
            checker = _Checker(_check_header(record, where))
        elif (event := checker.feed(record, where)) is not None:
            yield event
    if checker is None:
        raise ExportFormatError(f"{name} is empty, not an agent-sessions export")
    if not checker.finished:
        raise ExportFormatError(f"{name} is truncated after line {number}: the footer is missing")


def _scan(path: Path) -> list[Scanned]:
    """Check a whole export before anything is written; return its sessions and sizes."""
    scanned, tagged = [], 0
    with path.open(encoding="utf-8", newline="\n") as handle:
        for event in _events(handle, str(path)):
            if type(event) is Item:
                tagged += event.tag is not None
            elif type(event) is End:
                scanned.append(Scanned(event.session_id, event.items, event.records, event.trees))
                scanned[-1] = scanned[-1]._replace(tagged=tagged)
                tagged = 0
    return scanned


async def scan_file(path: Path) -> list[Scanned]:
    """Check a whole export file without touching any database; return its sessions.

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


class Stream:
    """An export's events, parsed on a worker thread in batches so the loop never waits."""

    def __init__(self, handle: TextIO, name: str) -> None:
        self._events = _events(handle, name)
        self._buffer: deque[Event] = deque()

    async def next(self) -> Event | None:
        """The next event; None after the last."""
        if not self._buffer:
            self._buffer.extend(await asyncio.to_thread(list, islice(self._events, BATCH)))
        return self._buffer.popleft() if self._buffer else None

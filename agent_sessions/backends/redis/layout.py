"""How a session lives in Redis: its keys, its rows' ids, packed replies, the scripts' arguments.

See :mod:`.store` for the layout itself and why a row's id is its position and its bytes' SHA-1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import StorageError, StorageUnavailableError
from ...store import ArchiveBatch
from . import scripts

__all__ = [
    "APPEND_SCRIPT",
    "APPEND_TAGGED_SCRIPT",
    "ARCHIVE_SCRIPT",
    "CLEAR_SCRIPT",
    "HASH_BITS",
    "NO_ARCHIVE",
    "READ_SCRIPT",
    "RECORDS_SCRIPT",
    "RESTORE_SCRIPT",
    "SPLICE_SCRIPT",
    "STATE_SCRIPT",
    "TAIL_SCRIPT",
    "Archive",
    "Script",
    "SessionKeys",
    "archive_args",
    "as_text",
    "batch_args",
    "parse_provenance",
    "provenance_value",
    "row_id",
    "row_position",
    "sha1hex",
    "translated",
    "unpack",
    "unpack_texts",
]

Archive = tuple[str, str, Sequence[str], Sequence[str]]
"""The archive part of a write: kind ('' for none), batch to drop ('' for none), items, summary."""

HASH_BITS = 160


def row_id(position: int, raw: bytes) -> int:
    """The id of the row at ``position`` (1 = oldest) whose stored bytes are ``raw``."""
    return (position << HASH_BITS) | int.from_bytes(hashlib.sha1(raw).digest(), "big")  # noqa: S324 - a fingerprint, not a secret


def row_position(row: int) -> int:
    """The position (1 = oldest) a row id was read at."""
    return row >> HASH_BITS


def sha1hex(row: int) -> str:
    """The SHA-1 (hex) of the stored bytes a row id was read with."""
    return format(row & ((1 << HASH_BITS) - 1), "040x")


def as_text(raw: bytes) -> str:
    """A stored value as the codec's input; invalid UTF-8 becomes text no codec decodes."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "\x00invalid UTF-8: " + raw.decode("utf-8", "replace")


def unpack(lens: bytes, blob: bytes) -> list[bytes]:
    """The values a read script packed: split ``blob`` at the comma-separated byte lengths."""
    if not lens:
        return []
    values: list[bytes] = []
    position = 0
    for length in map(int, lens.split(b",")):
        values.append(blob[position : position + length])
        position += length
    return values


def unpack_texts(lens: bytes, blob: bytes) -> list[str]:
    """The values a read script packed, as the codec's input (see :func:`as_text`)."""
    if not blob.isascii():  # offsets count bytes: slice bytes, then decode each value
        return [as_text(raw) for raw in unpack(lens, blob)]
    text = blob.decode("ascii")
    texts: list[str] = []
    position = 0
    for length in map(int, lens.split(b",")) if lens else ():
        texts.append(text[position : position + length])
        position += length
    return texts


Provenance = tuple[str | None, str | None, int | None, str | None]
"""A row's agent, run id, position and time (naive UTC text); all None when untagged."""
_UNTAGGED: Provenance = (None, None, None, None)


def parse_provenance(raw: bytes) -> Provenance:
    """A value of a session's provenance hash (``seconds.micros NUL tag JSON``), parsed.

    Anything else (``b''``: the row has none; a damaged value) reads as untagged.
    """
    at, sep, body = raw.partition(b"\x00")
    if not sep:
        return _UNTAGGED
    try:
        agent, run_id, position = json.loads(body)
        seconds, _, micros = at.decode("ascii").partition(".")
        moment = datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=int(micros or 0))
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        return _UNTAGGED
    created = moment.replace(tzinfo=None).isoformat(sep=" ")
    return agent, run_id, int(position), created


def provenance_value(agent_name: str | None, run_id: str, position: int, moment: datetime) -> str:
    """The provenance hash's value for a row tagged so, written at ``moment`` (UTC)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    seconds = int(aware.replace(microsecond=0).timestamp())
    tag = json.dumps([agent_name, run_id, position], ensure_ascii=False)
    return f"{seconds}.{aware.microsecond:06d}\x00{tag}"


class SessionKeys:
    """The keys of one session: the SDK's three, and ours for per-session state."""

    __slots__ = ("archive", "counter", "messages", "provenance", "record", "runs", "state")

    def __init__(self, key_prefix: str, session_id: str) -> None:
        self.record = f"{key_prefix}:{session_id}"
        self.messages = f"{self.record}:messages"
        self.counter = f"{self.record}:counter"
        # A NUL byte, which no session id holds, so that no session's keys can be this one
        # (a ':state' suffix would be the record of the session whose id ends in ':state').
        self.state = f"{self.record}\x00state"
        self.archive = f"{self.record}\x00archive"
        self.provenance = f"{self.record}\x00provenance"
        self.runs = f"{self.record}\x00runs"

    def all(self) -> tuple[str, str, str, str, str, str, str]:
        """The keys in the order the scripts take them."""
        return (
            self.record,
            self.messages,
            self.counter,
            self.state,
            self.archive,
            self.provenance,
            self.runs,
        )


class Script:
    """One Lua script: its source and SHA-1, run by ``EVALSHA`` (``EVAL`` when not cached)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's script id


READ_SCRIPT = Script(scripts.READ)
APPEND_SCRIPT = Script(scripts.APPEND)
APPEND_TAGGED_SCRIPT = Script(scripts.APPEND_TAGGED)
RECORDS_SCRIPT = Script(scripts.RECORDS)
TAIL_SCRIPT = Script(scripts.TAIL)
SPLICE_SCRIPT = Script(scripts.SPLICE)
RESTORE_SCRIPT = Script(scripts.RESTORE)
CLEAR_SCRIPT = Script(scripts.CLEAR)
STATE_SCRIPT = Script(scripts.STATE)
ARCHIVE_SCRIPT = Script(scripts.ARCHIVE)
NO_ARCHIVE: Archive = ("", "", (), ())


def archive_args(archive: Archive) -> list[object]:
    """The archive part of a script's arguments: kind, batch to drop, item count, texts."""
    kind, drop, items, summary = archive
    return [kind, drop, len(items), *items, *summary]


def batch_args(batch: ArchiveBatch) -> Archive:
    """The archive part of a write that archives ``batch``."""
    return batch.kind, "", batch.items, batch.summary


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Raise the redis client's errors as the package's, naming ``operation``."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StorageUnavailableError(f"Redis {operation} failed: {exc}") from exc
    except RedisError as exc:
        raise StorageError(f"Redis {operation} failed: {exc}") from exc

"""An administrative view of one memory store: what ``agent-sessions memory`` is built on.

It opens an existing memory table (never creating a file or a table), lists namespaces with
their counts, shows one memory with its expiry, runs a search the way an agent's ``recall``
does, exports the live memories as JSON Lines and purges the expired ones.

Example:
    >>> async def report(path: str) -> None:
    ...     async with MemoryDatabase(path) as db:
    ...         for summary in await db.namespaces():
    ...             print(summary.namespace, summary.memories)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from .._lifecycle import AsyncClosing
from ..errors import CorruptItemError, StorageError
from ..schema import validate_identifier
from ..serialization import JsonCodec
from .keys import check_key, decode_namespace, encode_namespace, encode_prefix
from .recall import Recall, recall
from .schema import DEFAULT_MEMORY_TABLE
from .search import when
from .store import MemoryStore
from .types import AdminBackend, Entry, IndexConfig

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "ExportReport",
    "MemoryDatabase",
    "MemoryRecord",
    "NamespaceSummary",
    "PurgeReport",
    "memory_tables_in",
]

_JSON = JsonCodec()


@dataclass(frozen=True)
class NamespaceSummary:
    """One namespace: how many live and expired memories it holds, and its latest write."""

    namespace: tuple[str, ...]
    memories: int
    expired: int
    last_updated: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601)."""
        return {
            "namespace": list(self.namespace),
            "memories": self.memories,
            "expired": self.expired,
            "last_updated": self.last_updated.isoformat(),
        }


@dataclass(frozen=True)
class MemoryRecord:
    """One stored memory with its expiry; ``value`` is None when it cannot be decoded.

    Attributes:
        expired: Whether it has expired (an expired memory is never returned by searches).
        error: Why the value could not be decoded, or None.
    """

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    ttl: float | None
    expired: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601); the export format of one memory."""
        document: dict[str, Any] = {
            "namespace": list(self.namespace),
            "key": self.key,
            "value": self.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "ttl": self.ttl,
        }
        if self.error is not None:
            document["error"] = self.error
        return document


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: ``memories`` lines; ``unreadable`` memories left out."""

    memories: int
    unreadable: int


@dataclass(frozen=True)
class PurgeReport:
    """What a purge did: ``expired`` memories found, ``deleted`` of them (0 on a dry run)."""

    expired: int
    deleted: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"expired": self.expired, "deleted": self.deleted, "dry_run": self.dry_run}


def _sqlite_tables(path: Path) -> dict[str, set[str]]:
    """The tables of an existing SQLite file and their columns, read without writing anything."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {path}: {exc}") from exc
    try:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {
            str(name): {str(c) for (c,) in conn.execute(_TABLE_COLUMNS, (name,))}
            for (name,) in names
        }
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a SQLite database: {exc}") from exc
    finally:
        conn.close()


_TABLE_COLUMNS = "SELECT name FROM pragma_table_info(?)"
_COLUMNS = frozenset({"namespace", "key", "value", "expires_at", "embedding"})


def memory_tables_in(path: str | Path) -> list[str]:
    """The memories tables of an existing SQLite file (tables with their columns), sorted.

    ``agent-sessions ls`` uses it to tell an operator that a file is a memory store.

    Raises:
        StorageError: the file cannot be read as a SQLite database.
    """
    tables = _sqlite_tables(Path(path))
    return sorted(name for name, columns in tables.items() if columns >= _COLUMNS)


def _missing(where: str, table: str, present: set[str]) -> StorageError:
    sessions = " (it holds agent_sessions tables: see agent-sessions ls)"
    hint = sessions if "agent_messages" in present else ""
    return StorageError(
        f"{where} has no memory table {table}: is it a memory store? (--table names another)" + hint
    )


class MemoryDatabase(AsyncClosing):
    """An existing memory store, opened for an operator.

    Args:
        target: A SQLite file, or a SQLAlchemy URL (``postgresql://user@host/db``; a URL
            without a driver gets the async driver the package ships).
        table: The memories table.
        index: How :meth:`search` ranks (see :class:`MemoryStore`); keyword search by default.
        clock: The current time in seconds since the epoch (for expiry).
        encryption_key: The key(s) the store's values are encrypted with; without it an
            encrypted value shows as unreadable.

    Raises:
        FileNotFoundError: the SQLite file does not exist.
        StorageError: the file is not a SQLite database, or it has no such table.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        table: str = DEFAULT_MEMORY_TABLE,
        index: IndexConfig | str | None = None,
        clock: Callable[[], float] | None = None,
        encryption_key: str | bytes | Sequence[str | bytes] | None = None,
    ) -> None:
        self.table = validate_identifier(table, "memory table name")
        self._engine: AsyncEngine | None = None
        options: dict[str, Any] = {"index": index, "encryption_key": encryption_key}
        if clock is not None:
            options["clock"] = clock
        if isinstance(target, Path) or "://" not in target:
            path = Path(target)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            present = _sqlite_tables(path)
            if self.table not in present:
                raise _missing(str(path), self.table, set(present))
            self.location = str(path)
            self.store = MemoryStore(path, table=self.table, **options)
            self._checked = True
        else:
            from ..backends._sqlalchemy_engine import engine_from_url, redact  # noqa: PLC0415

            self._engine = engine_from_url(target, None)
            self.location = redact(target)
            self.store = MemoryStore.from_engine(self._engine, table=self.table, **options)
            self._checked = False

    async def _ready(self) -> AdminBackend:
        if not self._checked and self._engine is not None:
            from sqlalchemy import inspect  # noqa: PLC0415

            async with self._engine.connect() as conn:
                present = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            if self.table not in present:
                raise _missing(self.location, self.table, present)
            self._checked = True
        return cast(AdminBackend, self.store._backend)  # noqa: SLF001 - same package

    def _now(self) -> float:
        return self.store._clock()  # noqa: SLF001 - same package

    async def namespaces(self, prefix: tuple[str, ...] = ()) -> list[NamespaceSummary]:
        """Every namespace under ``prefix`` holding memories (live or expired), sorted."""
        backend = await self._ready()
        tallies = await backend.tallies(encode_prefix(prefix), self._now())
        return [
            NamespaceSummary(decode_namespace(t.namespace), t.live, t.expired, when(t.last_updated))
            for t in tallies
        ]

    def _record(self, entry: Entry, now: float) -> MemoryRecord:
        value: dict[str, Any] | None = None
        error = None
        reader = self.store._reader  # noqa: SLF001 - same package
        try:
            value = reader.value_of(entry.namespace, entry.key, entry.value)
        except (ValueError, TypeError, RecursionError, CorruptItemError) as exc:
            error = f"cannot decode the stored value: {exc}"
        else:
            if reader.cipher is None and "__enc__" in value and "ct" in value:
                error = f"encrypted under key id {value.get('kid')!r}; give its key to read it"
                value = None
        expires = entry.expires_at
        return MemoryRecord(
            namespace=decode_namespace(entry.namespace),
            key=entry.key,
            value=value,
            created_at=when(entry.created_at),
            updated_at=when(entry.updated_at),
            expires_at=None if expires is None else when(expires),
            ttl=entry.ttl,
            expired=expires is not None and expires <= now,
            error=error,
        )

    async def show(self, namespace: tuple[str, ...], key: str) -> MemoryRecord | None:
        """One memory with its expiry (also when expired), or None if nothing is stored."""
        backend = await self._ready()
        found = await backend.entries(encode_namespace(namespace), check_key(key))
        return self._record(found[0], self._now()) if found else None

    async def search(self, namespace: tuple[str, ...], query: str, *, limit: int = 5) -> Recall:
        """Search as an agent's ``recall`` does: the best notes, or the newest if none matched."""
        await self._ready()
        return await recall(self.store, namespace, query, limit=limit)

    async def export_jsonl(self, out: IO[str], prefix: tuple[str, ...] = ()) -> ExportReport:
        """Write each live memory under ``prefix`` as a JSON line, leaving undecodable ones out."""
        backend = await self._ready()
        now, written, unreadable = self._now(), 0, 0
        for entry in await backend.entries(encode_prefix(prefix)):
            record = self._record(entry, now)
            if record.expired:
                continue
            if record.error is not None:
                unreadable += 1
                continue
            out.write(_JSON.encode(cast(Any, record.to_dict())) + "\n")
            written += 1
        return ExportReport(written, unreadable)

    async def purge(self, *, dry_run: bool = False) -> PurgeReport:
        """Delete every expired memory (or, with ``dry_run``, only count them)."""
        backend = await self._ready()
        expired = sum(t.expired for t in await backend.tallies("", self._now()))
        if dry_run:
            return PurgeReport(expired, 0, dry_run=True)
        deleted = await self.store.sweep()
        return PurgeReport(max(expired, deleted), deleted, dry_run=False)

    async def aclose(self) -> None:
        """Close the store and dispose of the engine this view made (idempotent)."""
        try:
            await self.store.aclose()
        finally:
            if self._engine is not None:
                engine, self._engine = self._engine, None
                await engine.dispose()

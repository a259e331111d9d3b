"""Fast, safe, drop-in session backends for the OpenAI Agents SDK.

Example:
    >>> from agents import Agent, Runner
    >>> from agent_sessions import SQLiteSession
    >>> session = SQLiteSession("user-42", "chats.db")  # same arguments as agents.SQLiteSession
"""

from __future__ import annotations

import importlib
import typing

from ._version import __version__
from .errors import (
    AgentSessionsError,
    CorruptItemError,
    CorruptMemoryError,
    DatabaseFileGoneError,
    DecryptionError,
    EmbeddingError,
    ExportFormatError,
    InvalidFilterError,
    InvalidIdentifierError,
    InvalidLimitError,
    InvalidNamespaceError,
    InvalidSessionIdError,
    ItemValidationError,
    MemoryValueError,
    MissingDependencyError,
    PendingRunError,
    ProvenanceConflictError,
    SessionClosedError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
    StorageUnavailableError,
    UnknownKeyError,
    VerificationError,
)
from .store import Popped, RowStore, Store

if typing.TYPE_CHECKING:
    from .admin import SessionDatabase
    from .backends.advanced.sqlalchemy import AdvancedSQLAlchemySession
    from .backends.advanced.sqlite_session import AdvancedSQLiteSession
    from .backends.async_sqlite import AsyncSQLiteSession
    from .backends.redis import RedisSession, RedisStore
    from .backends.sqlalchemy import SQLAlchemySession, SQLAlchemyStore
    from .backends.sqlite import SQLiteSession, SQLiteStore
    from .compaction import CompactingSession
    from .core import SessionState, StoreSession
    from .encryption import EncryptedSession, WeakKeyWarning
    from .encryption.keystore import KeyStore, MemoryKeyStore, SQLiteKeyStore
    from .memory import MemoryItem, MemoryStore, SearchItem, memory_tools
    from .provenance import SessionRecord, as_run

# Every export whose module imports the OpenAI Agents SDK (or a driver) is resolved on first use,
# so `import agent_sessions` loads neither: the errors, `__version__` and the store protocols
# (plain typing) are the only eager names. See docs/performance.md, "Import and start-up time".
_LAZY = {
    "SQLiteSession": "agent_sessions.backends.sqlite",
    "SQLiteStore": "agent_sessions.backends.sqlite",
    "SessionState": "agent_sessions.core",
    "StoreSession": "agent_sessions.core",
    "AdvancedSQLiteSession": "agent_sessions.backends.advanced.sqlite_session",
    "AdvancedSQLAlchemySession": "agent_sessions.backends.advanced.sqlalchemy",
    "CompactingSession": "agent_sessions.compaction",
    "EncryptedSession": "agent_sessions.encryption",
    "SessionDatabase": "agent_sessions.admin",
    "KeyStore": "agent_sessions.encryption.keystore",
    "MemoryKeyStore": "agent_sessions.encryption.keystore",
    "MemoryItem": "agent_sessions.memory",
    "MemoryStore": "agent_sessions.memory",
    "SearchItem": "agent_sessions.memory",
    "memory_tools": "agent_sessions.memory",
    "SQLiteKeyStore": "agent_sessions.encryption.keystore",
    "WeakKeyWarning": "agent_sessions.encryption",
    "SQLAlchemySession": "agent_sessions.backends.sqlalchemy",
    "SQLAlchemyStore": "agent_sessions.backends.sqlalchemy",
    "AsyncSQLiteSession": "agent_sessions.backends.async_sqlite",
    "RedisSession": "agent_sessions.backends.redis",
    "RedisStore": "agent_sessions.backends.redis",
    "SessionRecord": "agent_sessions.provenance",
    "as_run": "agent_sessions.provenance",
}
"""Exports imported on first use: ``import agent_sessions`` imports neither the SDK nor a driver."""

_EXTRA_HINTS = {"agent_sessions.backends.redis": "pip install 'agent-sessions[redis]'"}
"""What to install when a lazy export's module cannot be imported, by module."""

_LISTED = ("SQLiteSession", "SQLiteStore", "SessionState", "StoreSession")
"""Lazy names that ``dir()`` has always shown (they were eager): it keeps showing them."""

__all__ = [
    "AdvancedSQLAlchemySession",
    "AdvancedSQLiteSession",
    "AgentSessionsError",
    "AsyncSQLiteSession",
    "CompactingSession",
    "CorruptItemError",
    "CorruptMemoryError",
    "DatabaseFileGoneError",
    "DecryptionError",
    "EmbeddingError",
    "EncryptedSession",
    "ExportFormatError",
    "InvalidFilterError",
    "InvalidIdentifierError",
    "InvalidLimitError",
    "InvalidNamespaceError",
    "InvalidSessionIdError",
    "ItemValidationError",
    "KeyStore",
    "MemoryItem",
    "MemoryKeyStore",
    "MemoryStore",
    "MemoryValueError",
    "MissingDependencyError",
    "PendingRunError",
    "Popped",
    "ProvenanceConflictError",
    "RedisSession",
    "RedisStore",
    "RowStore",
    "SQLAlchemySession",
    "SQLAlchemyStore",
    "SQLiteKeyStore",
    "SQLiteSession",
    "SQLiteStore",
    "SearchItem",
    "SessionClosedError",
    "SessionDatabase",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionState",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreSession",
    "UnknownKeyError",
    "VerificationError",
    "WeakKeyWarning",
    "__version__",
    "as_run",
    "memory_tools",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_sessions' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        hint = _EXTRA_HINTS.get(module, "reinstall")
        if "sqlalchemy" in module:
            hint = "pip install 'sqlalchemy[asyncio]'"
        raise MissingDependencyError(f"{name} cannot be imported ({exc}); {hint}") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LISTED))

"""Fast, safe, drop-in session backends for the OpenAI Agents SDK.

Example:
    >>> from agents import Agent, Runner
    >>> from agent_sessions import SQLiteSession
    >>> session = SQLiteSession("user-42", "chats.db")  # same arguments as agents.SQLiteSession
"""

from __future__ import annotations

from ._version import __version__
from .backends.sqlite import SQLiteSession, SQLiteStore
from .core import SessionState, StoreSession
from .errors import (
    AgentSessionsError,
    CorruptItemError,
    InvalidIdentifierError,
    InvalidLimitError,
    ItemValidationError,
    MissingDependencyError,
    SessionClosedError,
    StorageError,
    StorageUnavailableError,
)
from .store import Popped, Store

__all__ = [
    "AgentSessionsError",
    "CorruptItemError",
    "InvalidIdentifierError",
    "InvalidLimitError",
    "ItemValidationError",
    "MissingDependencyError",
    "Popped",
    "SQLiteSession",
    "SQLiteStore",
    "SessionClosedError",
    "SessionState",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreSession",
    "__version__",
]

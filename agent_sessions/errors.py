"""The exceptions agent_sessions raises, in one tree.

Every error the package raises on purpose derives from :class:`AgentSessionsError`. Errors that
answer a misuse also derive from the built-in a caller would expect (``TypeError``, ``ValueError``,
``ImportError``, ``RuntimeError``), so code written against the SDK's sessions keeps catching them::

    AgentSessionsError
    ├── ItemValidationError (TypeError)        an item cannot be stored; nothing was written
    ├── InvalidIdentifierError (ValueError)    a table name is not a safe SQL identifier
    ├── InvalidLimitError (ValueError)         a read limit is negative or not an integer
    ├── SessionClosedError (RuntimeError)      a method was called after close()
    ├── MissingDependencyError (ImportError)   an optional backend's extra is not installed
    ├── CorruptItemError                       a stored row cannot be decoded (strict reads only)
    │   └── DecryptionError (ValueError)       an encrypted row fails authentication
    │       └── UnknownKeyError                it was encrypted under a key not configured
    └── StorageError                           the database failed; the driver error is the cause
        └── StorageUnavailableError            the database cannot be reached or opened

Driver exceptions are translated at the backend boundary with ``raise ... from exc``, so the
original error is always available as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "AgentSessionsError",
    "CorruptItemError",
    "DecryptionError",
    "InvalidIdentifierError",
    "InvalidLimitError",
    "ItemValidationError",
    "MissingDependencyError",
    "SessionClosedError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownKeyError",
]


class AgentSessionsError(Exception):
    """Base class of every error raised by agent_sessions."""


class ItemValidationError(AgentSessionsError, TypeError):
    """An item given to ``add_items`` cannot be stored; nothing of its batch was written.

    Attributes:
        index: Position of the offending item in the batch.
    """

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"item {index} cannot be stored: {reason}")
        self.index = index
        self.reason = reason


class InvalidIdentifierError(AgentSessionsError, ValueError):
    """A table name is not a plain SQL identifier and was refused before any SQL ran."""


class InvalidLimitError(AgentSessionsError, ValueError):
    """A ``limit`` given to a read is neither ``None`` nor a non-negative integer."""


class SessionClosedError(AgentSessionsError, RuntimeError):
    """A session or store method was called after ``close()``."""


class MissingDependencyError(AgentSessionsError, ImportError):
    """An optional backend was used without its extra installed; the message names the extra."""


class CorruptItemError(AgentSessionsError):
    """A stored row could not be decoded into an item (raised only by strict reads).

    Attributes:
        session_id: The session the row belongs to.
        detail: Why decoding failed.
    """

    def __init__(self, session_id: str, detail: str) -> None:
        super().__init__(f"session {session_id!r} holds an undecodable row: {detail}")
        self.session_id = session_id
        self.detail = detail


class DecryptionError(CorruptItemError, ValueError):
    """An encrypted row is not returned: it failed authentication or is not our envelope.

    Tampered, truncated and swapped rows (copied from another session) all end here. Raised by
    strict reads; lenient reads skip the row with a logged warning. The row stays stored.
    """


class UnknownKeyError(DecryptionError):
    """An encrypted row names a key id that is not configured: a wrong, retired or shredded key."""


class StorageError(AgentSessionsError):
    """The database failed to carry out an operation; ``__cause__`` holds the driver error."""


class StorageUnavailableError(StorageError):
    """The database could not be opened or reached (missing directory, refused connection)."""

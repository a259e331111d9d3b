"""The exceptions agent_sessions raises, in one tree.

Every error the package raises on purpose derives from :class:`AgentSessionsError`. Errors that
answer a misuse also derive from the built-in a caller would expect (``TypeError``, ``ValueError``,
``ImportError``, ``RuntimeError``), so code written against the SDK's sessions keeps catching them::

    AgentSessionsError
    ├── ItemValidationError (TypeError)        an item cannot be stored; nothing was written
    │   └── MemoryValueError                   a memory's value is not a storable JSON object
    ├── InvalidIdentifierError (ValueError)    a table name is not a safe SQL identifier
    ├── InvalidSessionIdError (ValueError)     a session id no backend can store faithfully
    ├── InvalidLimitError (ValueError)         a read limit is negative or not an integer
    ├── InvalidNamespaceError (ValueError)     a memory namespace or key is malformed
    ├── InvalidFilterError (ValueError)        a memory search filter cannot be applied
    ├── EmbeddingError (ValueError)            an embedder returned the wrong number or size
    ├── SessionClosedError (RuntimeError)      a method was called after close()
    ├── SessionNotFoundError (LookupError)     a named session is not in the database (admin)
    ├── SessionExistsError (ValueError)        an import or migrate would overwrite a session
    ├── ExportFormatError (ValueError)         a file is not a complete, intact export
    ├── PendingRunError (ValueError)           a stored paused run cannot be saved or resumed here
    ├── ProvenanceConflictError (ValueError)   a run's position is stored with another item
    ├── MissingDependencyError (ImportError)   an optional backend's extra is not installed
    ├── CorruptItemError                       a stored row cannot be decoded (strict reads only)
    │   ├── CorruptMemoryError                 a stored memory row cannot be decoded
    │   └── DecryptionError (ValueError)       an encrypted row fails authentication
    │       └── UnknownKeyError                it was encrypted under a key not configured
    └── StorageError                           the database failed; the driver error is the cause
        ├── StorageUnavailableError            the database cannot be reached or opened
        ├── DatabaseFileGoneError              a SQLite file was deleted or replaced while open
        └── VerificationError                  a copy differs from its source; nothing was kept

Driver exceptions are translated at the backend boundary with ``raise ... from exc``, so the
original error is always available as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AgentSessionsError",
    "CorruptItemError",
    "CorruptMemoryError",
    "DatabaseFileGoneError",
    "DecryptionError",
    "EmbeddingError",
    "ExportFormatError",
    "InvalidFilterError",
    "InvalidIdentifierError",
    "InvalidLimitError",
    "InvalidNamespaceError",
    "InvalidSessionIdError",
    "ItemValidationError",
    "MemoryValueError",
    "MissingDependencyError",
    "PendingRunError",
    "ProvenanceConflictError",
    "SessionClosedError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "UnknownKeyError",
    "VerificationError",
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


class InvalidSessionIdError(AgentSessionsError, ValueError):
    """A session id holds what some backend cannot store, and was refused before any write.

    The same ids are refused on every backend, so a session can move between them: a NUL
    character, a lone surrogate (not encodable as UTF-8), or more than 255 characters.
    """


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


class ProvenanceConflictError(AgentSessionsError, ValueError):
    """A tagged batch reuses a run id and position already stored for a different item.

    Raised by a store's ``append_tagged`` (see :class:`~agent_sessions.store.ProvenanceStore`),
    which then writes nothing of the batch. Sessions handle it: the batch is stored again
    after the run's stored items (a retry that went another way keeps both attempts). A
    session raises it only if the run's items keep changing under it.

    Attributes:
        session_id: The session written to.
        run_id: The run id the batch carries.
        position: The first position stored with a different item.
        run_end: The position after every item the run stored in the session, if the store
            knows it (a branched session's run may hold items the current branch does not
            show); None otherwise.
    """

    def __init__(
        self, session_id: str, run_id: str, position: int, *, run_end: int | None = None
    ) -> None:
        super().__init__(
            f"session {session_id[:80]!r}: run {run_id[:80]!r} already stored a different item "
            f"at position {position}; nothing of the batch was written (a retry must carry "
            "the same items; use a new run id for a new run)"
        )
        self.session_id = session_id
        self.run_id = run_id
        self.position = position
        self.run_end = run_end


class StorageError(AgentSessionsError):
    """The database failed to carry out an operation; ``__cause__`` holds the driver error."""


class StorageUnavailableError(StorageError):
    """The database could not be opened or reached (missing directory, refused connection)."""


class DatabaseFileGoneError(StorageError):
    """A SQLite file was deleted or replaced while open; the write was refused, not lost."""


class MemoryValueError(ItemValidationError):
    """A memory's value is not a JSON object that round-trips unchanged; nothing was stored.

    Attributes:
        key: The key the value was to be stored under.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(0, reason)
        self.args = (f"the value of memory {key!r} cannot be stored: {reason}",)
        self.key = key


class InvalidNamespaceError(AgentSessionsError, ValueError):
    """A memory namespace or key is empty, not text, too long, or holds a reserved character."""


class InvalidFilterError(AgentSessionsError, ValueError):
    """A memory search ``filter`` names an unknown operator or holds a value that is not JSON."""


class EmbeddingError(AgentSessionsError, ValueError):
    """An embedder returned a different number of vectors than texts, or vectors of wrong size."""


class CorruptMemoryError(CorruptItemError):
    """A stored memory row could not be decoded (raised only by strict memory stores).

    Attributes:
        where: The memory's namespace and key, as stored.
    """

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(where, detail)
        self.args = (f"memory {where} holds an undecodable value: {detail}",)
        self.where = where


def _some(ids: Sequence[str], shown: int = 5) -> str:
    """Name the first few ids of a list, and how many more there are."""
    named = ", ".join(repr(i) for i in ids[:shown])
    return named + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class SessionNotFoundError(AgentSessionsError, LookupError):
    """A session named by the caller is not in the database.

    Attributes:
        session_ids: The sessions that were not found.
    """

    def __init__(self, session_ids: Sequence[str], where: str) -> None:
        self.session_ids = list(session_ids)
        noun = "session" if len(self.session_ids) == 1 else "sessions"
        super().__init__(f"no {noun} {_some(self.session_ids)} in {where}")


class SessionExistsError(AgentSessionsError, ValueError):
    """Sessions to be written already exist at the destination with other content.

    Nothing was written for them; choose to replace or skip them explicitly.

    Attributes:
        session_ids: The sessions that already exist.
    """

    def __init__(self, session_ids: Sequence[str], where: str, hint: str) -> None:
        self.session_ids = list(session_ids)
        count = len(self.session_ids)
        noun = "session already exists" if count == 1 else "sessions already exist"
        super().__init__(f"{count} {noun} in {where}: {_some(self.session_ids)}; {hint}")


class ExportFormatError(AgentSessionsError, ValueError):
    """A file is not an agent-sessions export, or is truncated or altered.

    The message names the file and line.
    """


class PendingRunError(AgentSessionsError, ValueError):
    """A paused run cannot be stored, or the stored one cannot be resumed with this agent or SDK.

    Raised before anything is written (save) or returned (load): the run was saved by a newer
    agent_sessions or openai-agents, for an agent graph that does not hold the given agent, or
    the SDK refuses to serialise or rebuild it. The stored run is left as it was.
    """


class VerificationError(StorageError):
    """A copied session reads back different from its source; its transaction was rolled back."""

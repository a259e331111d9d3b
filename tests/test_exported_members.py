"""The public names, pinned: every public module offers exactly these (as httpx pins its own).

A change here is a change of the public API, and belongs in the CHANGELOG.
"""

from __future__ import annotations

import importlib

import pytest


def names(text: str) -> list[str]:
    """The names written in ``text``, one word each."""
    return text.split()


PUBLIC_MODULES = {
    "agent_sessions": names(
        """
        AdvancedSQLAlchemySession AdvancedSQLiteSession AgentSessionsError AsyncSQLiteSession
        CompactingSession CorruptItemError CorruptMemoryError DatabaseFileGoneError DecryptionError
        EmbeddingError
        EncryptedSession ExportFormatError
        InvalidFilterError InvalidIdentifierError InvalidLimitError InvalidNamespaceError
        InvalidSessionIdError ItemValidationError KeyStore MemoryItem MemoryKeyStore MemoryStore
        MemoryValueError MissingDependencyError PendingRunError Popped ProvenanceConflictError
        RedisSession RedisStore RowStore SQLAlchemySession
        SQLAlchemyStore SQLiteKeyStore SQLiteSession SQLiteStore SearchItem SessionClosedError
        SessionDatabase SessionExistsError SessionNotFoundError SessionRecord SessionState
        StorageError StorageUnavailableError Store StoreSession UnknownKeyError VerificationError
        WeakKeyWarning __version__ as_run memory_tools
    """
    ),
    "agent_sessions.admin": names(
        """
        ArchiveSize BranchSummary BranchTree Conflict DayGrowth EXPORT_FORMAT EXPORT_VERSION
        ExportFormatError MigrateReport ProgressCallback PurgeReport SearchHit SessionDatabase
        SessionExistsError SessionInfo SessionNotFoundError SortKey StoreStats StoredRow
        TransferReport TurnUsageRecord UsageTotals VerificationError migrate parse_age
    """
    ),
    "agent_sessions.compaction": names(
        """
        CompactingSession DEFAULT_TOKEN_BUDGET ITEM_OVERHEAD_TOKENS SUMMARY_PREFIX SUMMARY_PROMPT
        Summarizer SummarizerFunction TokenCounter chars_per_token_estimate cut_index
        default_token_counter estimate_tokens transcript
    """
    ),
    "agent_sessions.durable": names(
        """
        TOOL_JOURNAL_STATE durable_agent run_durably
    """
    ),
    "agent_sessions.pending_runs": names(
        """
        PENDING_RUN_FORMAT PENDING_RUN_STATE PendingApproval PendingRunInfo PendingRuns
        agent_graph_names
    """
    ),
    "agent_sessions.pruning": names(
        """
        PrunableSession PruneReport check_keep_last_turns prune_session tool_pair turn_cut
    """
    ),
    "agent_sessions.backends.advanced": names(
        """
        AdvancedSQLiteSession AdvancedSQLiteStore BranchInfo ConversationTurn HistoryEntry
        ItemKind NoTurnUsage SessionUsage ToolUsage TurnUsage
    """
    ),
    "agent_sessions.backends.redis": names(
        """
        RedisSession RedisStore
    """
    ),
    "agent_sessions.backends.sqlalchemy": names(
        """
        SQLAlchemySession SQLAlchemyStore
    """
    ),
    "agent_sessions.backends.sqlite": names(
        """
        SQLiteFileSession SQLiteSession SQLiteStore guarded
    """
    ),
    "agent_sessions.cli": names(
        """
        main
    """
    ),
    "agent_sessions.core": names(
        """
        MAX_LIMIT MAX_SESSION_ID_LENGTH SessionState StoreSession SuffixStore check_session_id
        check_state_name is_tail is_user_message read_items resolve_limit run_to_completion
        tail_fetch tail_window
    """
    ),
    "agent_sessions.encryption": names(
        """
        EncryptedSession KeyStore MemoryKeyStore SQLiteKeyStore WeakKeyWarning
    """
    ),
    "agent_sessions.errors": names(
        """
        AgentSessionsError CorruptItemError CorruptMemoryError DatabaseFileGoneError
        DecryptionError EmbeddingError ExportFormatError InvalidFilterError
        InvalidIdentifierError InvalidLimitError InvalidNamespaceError InvalidSessionIdError
        ItemValidationError MemoryValueError MissingDependencyError PendingRunError
        ProvenanceConflictError SessionClosedError SessionExistsError SessionNotFoundError
        StorageError StorageUnavailableError UnknownKeyError VerificationError
    """
    ),
    "agent_sessions.memory": names(
        """
        HashingEmbedder IndexConfig MemoryItem MemoryStore MemoryStoreState SearchItem
        local_embedder memory_instructions memory_tools
    """
    ),
    "agent_sessions.offline": names(
        """
        DEFAULT_MODEL_NAME OfflineModel OfflineModelProvider resolve_model
    """
    ),
    "agent_sessions.schema": names(
        """
        DEFAULT_MESSAGES_TABLE DEFAULT_SESSIONS_TABLE PROVENANCE_COLUMNS RESERVED_WORDS
        SQLITE_MIGRATIONS TableNames VERSION_TABLE derived_name validate_identifier
    """
    ),
    "agent_sessions.serialization": names(
        """
        Codec JSONValue JsonCodec MAX_DEPTH SkipRow decode_or_report decode_rows decode_state
        encode_items encode_state logger
    """
    ),
    "agent_sessions.store": names(
        """
        ArchiveBatch ArchiveStore ArchivedRow Popped ProvenanceStore RowStore RowTag StateStore
        Store StoredRecord Taker always archives_own_rows tag_columns tag_time tagged_values
        tags_own_rows time_text unstored
    """
    ),
    "agent_sessions.testing": names(
        """
        ADVANCED_CHECKS CHECKS Check ConformanceError DictStore Harness MEMORY_CHECKS
        ManualClock MemoryCheck MemoryHarness Unsupported requires run_advanced_checks run_all
        run_memory_checks
    """
    ),
    "agent_sessions.testing.advanced": names(
        """
        ADVANCED_CHECKS Unsupported requires run_advanced_checks
    """
    ),
}
"""Each public module path users were told about, and the sorted ``__all__`` it exports."""

SAME_OBJECT = {
    "CompactingSession": "agent_sessions.compaction",
    "AdvancedSQLAlchemySession": "agent_sessions.backends.advanced.sqlalchemy",
    "AdvancedSQLiteSession": "agent_sessions.backends.advanced",
    "AsyncSQLiteSession": "agent_sessions.backends.async_sqlite",
    "EncryptedSession": "agent_sessions.encryption",
    "KeyStore": "agent_sessions.encryption",
    "MemoryItem": "agent_sessions.memory",
    "MemoryKeyStore": "agent_sessions.encryption",
    "MemoryStore": "agent_sessions.memory",
    "Popped": "agent_sessions.store",
    "RedisSession": "agent_sessions.backends.redis",
    "RedisStore": "agent_sessions.backends.redis",
    "SQLAlchemySession": "agent_sessions.backends.sqlalchemy",
    "SQLiteKeyStore": "agent_sessions.encryption",
    "SQLiteSession": "agent_sessions.backends.sqlite",
    "SearchItem": "agent_sessions.memory",
    "SessionDatabase": "agent_sessions.admin",
    "Store": "agent_sessions.store",
    "StoreSession": "agent_sessions.core",
    "WeakKeyWarning": "agent_sessions.encryption",
    "memory_tools": "agent_sessions.memory",
}
"""Names the package root re-exports, and the public module that defines them too."""


@pytest.mark.parametrize("module_name", sorted(PUBLIC_MODULES))
def test_exported_members(module_name: str) -> None:
    """Exports exactly the pinned names, each of which resolves."""
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == PUBLIC_MODULES[module_name]
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module_name} lists names it does not have: {missing}"


@pytest.mark.parametrize("name", sorted(SAME_OBJECT))
def test_root_exports_the_module_objects(name: str) -> None:
    """``agent_sessions.X`` is the very object its public module offers."""
    root = importlib.import_module("agent_sessions")
    module = importlib.import_module(SAME_OBJECT[name])
    assert getattr(root, name) is getattr(module, name)

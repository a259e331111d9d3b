"""Model-agnostic compaction: a long history's older turns replaced by a summary, atomically.

:class:`CompactingSession` wraps any session and implements the SDK's compaction-aware protocol
(``run_compaction``), so ``Runner`` compacts after each turn it stores, with any model (OpenAI,
LiteLLM, this package's ``OfflineModel``) or a plain async function as the summariser; unlike
the SDK's ``OpenAIResponsesCompactionSession`` it needs no OpenAI API. ``await
session.compact(force=True)`` compacts on demand.

- **Trigger**: the stored history's token estimate above ``token_budget`` (``tiktoken`` where
  installed, else characters / 4; see :func:`estimate_tokens`), or ``should_compact(items)``.
- **What stays**: the newest ``keep_last_turns`` turns, verbatim. The cut is at a user
  message, moved back while a tool call (or MCP approval) before it has its other half after
  it, so no ``function_call`` loses its ``function_call_output`` and the latest user message
  is never summarised.
- **Atomic and concurrent-safe** over this package's sessions (and the SDK's SQLite and
  SQLAlchemy ones): the summary replaces the history in one transaction only if the rows are
  still the ones summarised. Items appended meanwhile are kept after the summary; if the
  history was rewritten (two compactions at once), the later swap writes nothing and
  ``compact`` returns False: one wins, nothing is lost. Under ``EncryptedSession`` the
  summary is stored encrypted. Over another package's session: clear then add, not atomic.

Not yet here: the archive of compacted items (``archived_items()``, ``uncompact()``); it
needs a storage primitive that writes the archive in the same transaction as the swap, which
no store has yet. Until then the summarised items are gone from the session (export first to
keep them).

Example:
    >>> from agents import Agent, Runner
    >>> from agent_sessions import SQLiteSession
    >>> from agent_sessions.compaction import CompactingSession
    >>> from agent_sessions.offline import OfflineModel
    >>> async def demo() -> None:
    ...     session = CompactingSession(
    ...         SQLiteSession("support-42", "chats.db"),
    ...         summarizer=Agent(name="summariser", model=OfflineModel()),
    ...         keep_last_turns=2,
    ...         token_budget=4_000,
    ...     )
    ...     agent = Agent(name="support", model=OfflineModel())
    ...     await Runner.run(agent, "Where is my order?", session=session)
"""

from __future__ import annotations

from ._planning import (
    ITEM_OVERHEAD_TOKENS,
    TokenCounter,
    chars_per_token_estimate,
    cut_index,
    default_token_counter,
    estimate_tokens,
    transcript,
)
from ._session import (
    DEFAULT_TOKEN_BUDGET,
    SUMMARY_PREFIX,
    SUMMARY_PROMPT,
    CompactingSession,
    Summarizer,
    SummarizerFunction,
)

__all__ = [
    "DEFAULT_TOKEN_BUDGET",
    "ITEM_OVERHEAD_TOKENS",
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "CompactingSession",
    "Summarizer",
    "SummarizerFunction",
    "TokenCounter",
    "chars_per_token_estimate",
    "cut_index",
    "default_token_counter",
    "estimate_tokens",
    "transcript",
]

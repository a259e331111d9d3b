"""The shapes the advanced sessions' queries return: the SDK's dict keys, typed field by field.

Every query of :class:`~agent_sessions.backends.advanced.session.AdvancedSession` returns these,
with the keys the SDK's ``AdvancedSQLiteSession`` returns, so code written for the SDK's class reads
them unchanged; a type checker now knows each field. They are plain dicts (``TypedDict``) and a
plain tuple (``ToolUsage``) at run time: ``==`` with the SDK's results still holds.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict, final

__all__ = [
    "BranchInfo",
    "ConversationTurn",
    "HistoryEntry",
    "ItemKind",
    "NoTurnUsage",
    "SessionUsage",
    "ToolUsage",
    "TurnUsage",
]


class BranchInfo(TypedDict):
    """One branch of a session, as ``list_branches()`` lists it."""

    branch_id: str
    """The branch's id (``"main"`` for the branch every session starts on)."""
    message_count: int
    """How many items its visible history holds, inherited ones included."""
    user_turns: int
    """How many user messages (turns) its visible history holds."""
    created_at: str | None
    """When the branch was made (``YYYY-MM-DD HH:MM:SS``, the database's clock); None for a
    ``main`` that has no branch record yet (a session that was never branched)."""
    is_current: bool
    """Whether it is the session's current branch (the one reads and writes go to)."""


class ConversationTurn(TypedDict):
    """One user turn, as ``get_conversation_turns()`` and ``find_turns_by_content()`` return it."""

    turn: int
    """The turn's 1-based number on the branch: the place of its user message among them."""
    content: str
    """The message's text (a list of parts as JSON); ``get_conversation_turns`` cuts it at 100
    characters with ``...``, ``find_turns_by_content`` gives it whole."""
    full_content: str | list[dict[str, Any]]
    """The message's ``content`` as stored: a string or a list of content parts."""
    timestamp: str | None
    """When the message was stored (``YYYY-MM-DD HH:MM:SS``, the database's clock)."""
    can_branch: bool
    """Always True: every listed turn can be branched from (the SDK's field)."""


class ItemKind(TypedDict):
    """One item of a turn, as ``get_conversation_by_turns()`` groups them."""

    type: str
    """The item's kind: ``"user"``, ``"assistant"``, ``"function_call"``, ... (``"other"`` for
    a row that cannot be decoded)."""
    tool_name: str | None
    """The tool the item calls or answers for; None for an item of no tool."""


class ToolUsage(NamedTuple):
    """How often one tool was called in one turn, as ``get_tool_usage()`` lists it.

    A tuple, as the SDK's: ``(tool_name, call_count, turn_number)`` unpacks and compares as one.
    """

    tool_name: str
    """The tool (``server.name`` for an MCP tool, ``namespace.name`` for a namespaced one)."""
    call_count: int
    """How many items of that turn called it."""
    turn_number: int
    """The user turn the calls belong to (0: before the first user message)."""


class SessionUsage(TypedDict):
    """Token usage summed over a branch or a session, as ``get_session_usage()`` returns it."""

    requests: int
    """Model requests made."""
    input_tokens: int
    """Tokens sent to the model."""
    output_tokens: int
    """Tokens the model produced."""
    total_tokens: int
    """Input and output tokens together, as the model reported them."""
    total_turns: int
    """How many user turns have usage recorded."""


class _TurnNumber(TypedDict, total=False):
    """The key only some forms of :class:`TurnUsage` carry.

    A base of its own because Python 3.11 does not see ``NotRequired`` at run time under
    postponed annotations.
    """

    user_turn_number: int
    """The turn it was recorded for: in each entry of ``get_turn_usage()`` and ``history()``,
    absent from ``get_turn_usage(n)``, which names the turn already (the SDK's shapes)."""


class TurnUsage(_TurnNumber):
    """One turn's token usage, as ``get_turn_usage()`` returns it (and ``history()`` shows it)."""

    requests: int
    """Model requests made in the turn."""
    input_tokens: int
    """Tokens sent to the model."""
    output_tokens: int
    """Tokens the model produced."""
    total_tokens: int
    """Input and output tokens together."""
    input_tokens_details: dict[str, Any] | None
    """The model's breakdown of input tokens (``{"cached_tokens": ...}``), None if absent."""
    output_tokens_details: dict[str, Any] | None
    """The model's breakdown of output tokens (``{"reasoning_tokens": ...}``), None if absent."""


@final
class NoTurnUsage(TypedDict):
    """What ``get_turn_usage(n)`` returns for a turn with no usage recorded: ``{}``, as the SDK.

    Final, so ``"requests" in usage`` tells a type checker which of the two it holds.
    """


class HistoryEntry(TypedDict):
    """One turn of a branch's history, as ``history()`` lists it, oldest first."""

    turn: int
    """The turn's 1-based number: what ``fork(turn=...)`` and ``rewind(turn=...)`` take."""
    branch_id: str
    """The branch that holds the turn's user message: the branch itself, or for an inherited
    turn the ancestor it is inherited from."""
    preview: str
    """The user message's text, cut at 100 characters with ``...`` (as in
    ``get_conversation_turns``)."""
    created_at: str | None
    """When the user message was stored (``YYYY-MM-DD HH:MM:SS``, the database's clock)."""
    items: int
    """How many items the turn holds: its user message and every item up to the next one."""
    usage: TurnUsage | None
    """The usage ``store_run_usage`` recorded for this turn on the branch read (as
    ``get_turn_usage`` of that branch lists it); None if none was."""

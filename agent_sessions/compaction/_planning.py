"""What a compaction keeps and what it summarises: turns, tool pairs and a token estimate.

A turn is a user message and every item after it up to the next user message (the turns
``prune`` and ``pop_turn`` count). A compaction keeps the newest ``keep_last_turns`` turns
verbatim and summarises everything before them, so the cut is always at a user message: the
latest user message is never summarised away, and a tool call whose output lies in a kept turn
moves the cut back to the turn that holds the call (a ``call_id`` never loses its partner).

The token estimate uses ``tiktoken`` (``o200k_base``) where it is installed and its encoding
loads; otherwise it is ``ceil(characters / 4)`` of the item's text, plus 4 tokens of overhead
per item: close to what OpenAI's tokenizers give for English prose, and cheap.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents.items import TResponseInputItem

from ..pruning import check_keep_last_turns, tool_pair, turn_cut
from ..store import is_user_message

__all__ = [
    "ITEM_OVERHEAD_TOKENS",
    "TokenCounter",
    "chars_per_token_estimate",
    "check_keep_last_turns",
    "cut_index",
    "default_token_counter",
    "estimate_tokens",
    "item_text",
    "transcript",
]

TokenCounter = Callable[[str], int]
"""Counts the tokens of one text."""

ITEM_OVERHEAD_TOKENS = 4
"""Tokens added per item for its role and framing, as chat formats spend a few on each."""

_CHARS_PER_TOKEN = 4
_SKIPPED_KEYS = frozenset({"id", "call_id", "approval_request_id", "role", "status", "type"})


def chars_per_token_estimate(text: str) -> int:
    """The documented fallback estimate: one token per four characters, rounded up."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def default_token_counter() -> TokenCounter:
    """A ``tiktoken`` counter (``o200k_base``) if it is installed and loads, else the estimate.

    ``tiktoken`` may need to download its encoding on first use; offline, that fails and the
    character estimate is used instead, so building a counter never raises.
    """
    try:
        tiktoken = importlib.import_module("tiktoken")
        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - absent, or its encoding cannot be fetched: estimate
        return chars_per_token_estimate

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count


def _strings(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if key not in _SKIPPED_KEYS:
                _strings(inner, out)
    elif isinstance(value, (list, tuple)):
        for inner in value:
            _strings(inner, out)


def item_text(item: TResponseInputItem) -> str:
    """The text an item carries (contents, arguments, outputs), without ids, roles and tags."""
    parts: list[str] = []
    _strings(item, parts)
    return " ".join(parts)


def estimate_tokens(
    items: Sequence[TResponseInputItem], counter: TokenCounter = chars_per_token_estimate
) -> int:
    """Estimate the tokens ``items`` take in a model's input.

    Args:
        items: The history.
        counter: Counts one text's tokens; :func:`default_token_counter` picks the best one.

    Returns:
        The sum over items of the counted text plus :data:`ITEM_OVERHEAD_TOKENS` each.

    Example:
        >>> estimate_tokens([{"role": "user", "content": "12345678"}])
        6
    """
    return sum(counter(item_text(item)) + ITEM_OVERHEAD_TOKENS for item in items)


def cut_index(items: Sequence[TResponseInputItem], keep_last_turns: int) -> int:
    """Where the verbatim part starts: 0 when there is nothing before it to summarise.

    The cut is the first user message of the newest ``keep_last_turns`` turns, moved back to
    an earlier user message while an item before it shares a tool call (or MCP approval) with
    an item after it.
    """
    users = [is_user_message(item) for item in items]
    return turn_cut(users, [tool_pair(item) for item in items], keep_last_turns)


def _line(item: TResponseInputItem) -> str:
    data: Mapping[str, Any] = item
    kind = data.get("type", "message")
    if kind == "message" or ("role" in data and "type" not in data):
        return f"{data.get('role', 'unknown')}: {item_text(item)}"
    if kind.endswith("_call") and "name" in data:
        return f"tool call {data['name']}: {data.get('arguments', '')}"
    if kind.endswith("_call_output"):
        return f"tool result: {item_text(item)}"
    return f"{kind}: {item_text(item)}"


def transcript(items: Sequence[TResponseInputItem]) -> str:
    """A plain-text transcript of ``items``, one line per item, for a summarising model.

    Text, not the items themselves: any model can read it, and tool calls need no tool
    definitions on the summariser's side.
    """
    return "\n".join(_line(item) for item in items)

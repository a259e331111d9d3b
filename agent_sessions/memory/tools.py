"""Agent integration: ``remember``, ``recall`` and ``forget`` tools, and memory-aware instructions.

Both are bound to one user's namespace when they are made, so a model can only ever read and
write that user's memories, whatever arguments it sends.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agents import Agent, FunctionTool, RunContextWrapper, function_tool

from ..errors import InvalidNamespaceError
from .keys import encode_namespace
from .recall import recall as recall_notes
from .types import MemoryItem

if TYPE_CHECKING:
    from .store import MemoryStore

__all__ = ["memory_instructions", "memory_text", "memory_tools"]

# Tool descriptions avoid each other's words: models (and the offline model's keyword matching)
# pick a tool by its description.
REMEMBER = (
    "Save a note about the user (a preference, a fact, a goal) so that future conversations "
    "can use it. Call it when the user asks you to remember something."
)
RECALL = (
    "Search what was saved about the user and return the most relevant entries, each with "
    "its key. Call it before answering anything that depends on who the user is."
)
FORGET = "Delete one saved entry, given the key that recall showed for it."


def memory_text(item: MemoryItem) -> str:
    """One memory as a line of text: its ``text`` field, or its value as JSON."""
    text = item.value.get("text")
    return text if isinstance(text, str) else json.dumps(item.value, sort_keys=True)


def _key_for(text: str) -> str:
    # The same note remembered twice lands on the same key instead of piling up copies.
    digest = hashlib.sha256(" ".join(text.lower().split()).encode()).hexdigest()
    return f"note-{digest[:12]}"


def memory_tools(
    store: MemoryStore, namespace: tuple[str, ...], *, limit: int = 5
) -> list[FunctionTool]:
    """Return ``remember``, ``recall`` and ``forget`` function tools bound to one namespace.

    ``remember`` stores ``{"text": note}``; ``recall`` searches (by meaning when the store has
    an index) and falls back to the newest notes when nothing matches; ``forget`` deletes by key.

    Args:
        store: An open memory store.
        namespace: The user's namespace, e.g. ``("users", "alice")``; the tools never leave it.
        limit: How many notes ``recall`` returns at most.

    Raises:
        InvalidNamespaceError: the namespace is malformed.

    Example:
        >>> from agents import Agent
        >>> def agent_for(store: MemoryStore, user: str) -> Agent[None]:
        ...     return Agent(name="assistant", tools=memory_tools(store, ("users", user)))
    """
    encode_namespace(namespace)
    scope = tuple(namespace)

    async def remember(note: str) -> str:
        """Save a note about the user.

        Args:
            note: The note, as a short self-contained sentence.
        """
        key = _key_for(note)
        await store.put(scope, key, {"text": note})
        return f"Saved note {key}: {note}"

    async def recall(query: str) -> str:
        """Find saved notes about the user.

        Args:
            query: What to look for, in a few words.
        """
        matched, found = await recall_notes(store, scope, query, limit=limit)
        header = (
            "Notes about the user:"
            if matched
            else "Nothing matched the query; the newest notes about the user:"
        )
        if not found:
            return "No notes about the user have been saved yet."
        return "\n".join([header, *(f"- [{item.key}] {memory_text(item)}" for item in found)])

    async def forget(key: str) -> str:
        """Delete a saved note.

        Args:
            key: The note's key, as recall showed it.
        """
        try:
            deleted = await store.delete(scope, key)
        except InvalidNamespaceError:
            deleted = False
        return f"Deleted note {key}." if deleted else f"No note has the key {key!r}."

    return [
        function_tool(remember, name_override="remember", description_override=REMEMBER),
        function_tool(recall, name_override="recall", description_override=RECALL),
        function_tool(forget, name_override="forget", description_override=FORGET),
    ]


def memory_instructions(
    store: MemoryStore, namespace: tuple[str, ...], instructions: str, *, limit: int = 20
) -> Callable[[RunContextWrapper[Any], Agent[Any]], Awaitable[str]]:
    """Return dynamic instructions: ``instructions`` plus the user's newest notes, read per run.

    Pass the result as ``Agent(instructions=...)``: every run starts knowing what earlier
    conversations saved, without the model having to call ``recall`` first.

    Args:
        store: An open memory store.
        namespace: The user's namespace.
        instructions: The agent's own instructions, which come first.
        limit: How many of the newest notes to include.

    Raises:
        InvalidNamespaceError: the namespace is malformed.
    """
    encode_namespace(namespace)
    scope = tuple(namespace)

    async def build(context: RunContextWrapper[Any], agent: Agent[Any]) -> str:
        notes = await store.search(scope, limit=limit)
        if not notes:
            return instructions
        lines = "\n".join(f"- {memory_text(item)}" for item in notes)
        return f"{instructions}\n\nNotes saved about this user in earlier conversations:\n{lines}"

    return build

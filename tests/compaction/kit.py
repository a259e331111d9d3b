"""Items, summarisers and turns shared by the compaction tests."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from agents.items import TResponseInputItem

Item = TResponseInputItem


def msg(text: str, role: str = "user") -> Item:
    """Return a message item."""
    return cast(Item, {"role": role, "content": text})


def call(call_id: str, name: str = "lookup_order") -> Item:
    """Return a function call item."""
    return cast(
        Item,
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"},
    )


def output(call_id: str, text: str = "shipped") -> Item:
    """Return a function call output item."""
    return cast(Item, {"type": "function_call_output", "call_id": call_id, "output": text})


def turns(count: int, start: int = 0) -> list[Item]:
    """Return ``count`` question/answer turns, numbered from ``start``."""
    items: list[Item] = []
    for n in range(start, start + count):
        items += [msg(f"question {n}"), msg(f"answer {n}", "assistant")]
    return items


class Recorder:
    """A callable summariser that records what it was given and answers one system item."""

    def __init__(self, label: str = "summary", gate: asyncio.Event | None = None) -> None:
        self.label = label
        self.gate = gate
        self.calls: list[list[Item]] = []
        self.entered = asyncio.Event()

    async def __call__(self, items: list[Item]) -> list[Item]:
        """Record ``items``, wait for the gate if any, and return the summary."""
        self.calls.append(items)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        return [msg(f"{self.label} of {len(items)} items", "system")]


def contents(items: list[Item]) -> list[Any]:
    """Return the ``content`` of each item (None for items without one)."""
    return [cast(dict[str, Any], item).get("content") for item in items]

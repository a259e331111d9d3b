"""The benchmark workloads: each drives one contender's sessions on a fresh database file.

A workload is ``async def name(make, db_path, **sizes) -> Result``, where ``make(session_id,
db_path)`` builds a session (ours, the SDK's, or the raw floor). Setup is never timed; the caller
closes every session ``make`` returned. ``QUICK`` holds the smaller sizes of ``--quick``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ADVANCED_WORKLOADS",
    "ENCRYPTED_WORKLOADS",
    "QUICK",
    "WORKLOADS",
    "Factory",
    "Result",
    "Session",
    "branch",
    "history",
    "turn_items",
]

_WORDS = "the quick brown fox jumps over a lazy dog while agents stream tool calls and results "


class Session(Protocol):
    """What every contender offers: the SDK's session protocol plus ``close``."""

    async def get_items(self, limit: int | None = None) -> list[Any]: ...
    async def add_items(self, items: list[Any]) -> None: ...
    async def pop_item(self) -> Any: ...
    async def clear_session(self) -> None: ...
    def close(self) -> None: ...


Factory = Callable[[str, str], Session]


@dataclass
class Result:
    """Timed operations of one run; ``per_call`` maps history size to seconds (growth only)."""

    ops: int
    seconds: float
    per_call: dict[int, float] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds


def _text(length: int, seed: int) -> str:
    start = seed % len(_WORDS)
    return ((_WORDS * (length // len(_WORDS) + 2))[start : start + length]).strip()


def turn_items(turn: int) -> list[dict[str, Any]]:
    """The four items of one agent turn: user message, tool call, tool output, assistant reply."""
    call_id = f"call_{turn:08d}"
    return [
        {"role": "user", "content": _text(120, turn)},
        {
            "type": "function_call",
            "call_id": call_id,
            "name": "search_docs",
            "arguments": json.dumps({"query": _text(40, turn + 7), "top_k": 5}),
            "id": f"fc_{turn:08d}",
        },
        {
            "type": "function_call_output",
            "call_id": call_id,
            "output": json.dumps({"hits": [_text(30, turn + i) for i in range(3)]}),
        },
        {
            "id": f"msg_{turn:08d}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": _text(200, turn + 3), "annotations": []}],
        },
    ]


def history(count: int, first_turn: int = 0) -> list[dict[str, Any]]:
    """``count`` items made of whole (and finally partial) turns."""
    items: list[dict[str, Any]] = []
    turn = first_turn
    while len(items) < count:
        items.extend(turn_items(turn))
        turn += 1
    return items[:count]


async def _converse(session: Session, turns: int) -> None:
    for turn in range(turns):
        await session.get_items()
        await session.add_items(turn_items(turn))


async def chat(make: Factory, db_path: str, *, sessions: int = 20, turns: int = 20) -> Result:
    """Sessions one after another in one file; per turn ``get_items()`` then ``add_items(4)``."""
    made = [make(f"chat-{i}", db_path) for i in range(sessions)]
    start = time.perf_counter()
    for session in made:
        await _converse(session, turns)
    seconds = time.perf_counter() - start
    assert len(await made[-1].get_items()) == 4 * turns
    return Result(2 * sessions * turns, seconds)


async def concurrent(make: Factory, db_path: str, *, sessions: int = 20, turns: int = 20) -> Result:
    """Like ``chat``, but every session is its own asyncio task, all running at once."""
    made = [make(f"chat-{i}", db_path) for i in range(sessions)]
    start = time.perf_counter()
    await asyncio.gather(*(_converse(session, turns) for session in made))
    seconds = time.perf_counter() - start
    for session in made:
        assert len(await session.get_items()) == 4 * turns
    return Result(2 * sessions * turns, seconds)


async def _time_reads(session: Session, reads: int, limit: int, warmup: int = 5) -> float:
    """Seconds for ``reads`` calls of ``get_items(limit)``, after a few untimed ones."""
    for _ in range(warmup):
        await session.get_items(limit)
    start = time.perf_counter()
    for _ in range(reads):
        items = await session.get_items(limit)
    seconds = time.perf_counter() - start
    assert len(items) == limit
    return seconds


async def long_read(
    make: Factory, db_path: str, *, items: int = 4_000, reads: int = 2_000
) -> Result:
    """``get_items(20)`` on a session of ``items`` items: the cost of loading recent context."""
    session = make("long", db_path)
    await session.add_items(history(items))
    return Result(reads, await _time_reads(session, reads, 20))


async def undo(make: Factory, db_path: str, *, items: int = 200) -> Result:
    """``pop_item()`` until the session is empty (``items + 1`` calls, the last returns None)."""
    session = make("undo", db_path)
    await session.add_items(history(items))
    start = time.perf_counter()
    popped = 0
    while await session.pop_item() is not None:
        popped += 1
    seconds = time.perf_counter() - start
    assert popped == items
    return Result(items + 1, seconds)


def _fill(db_path: str, session_id: str, first: int, count: int) -> None:
    """Append ``count`` rows to the session in the SDK's table layout, in one transaction."""
    rows = [(session_id, json.dumps(item)) for item in history(count, first // 4)]
    with sqlite3.connect(db_path) as conn:  # commits on exit
        conn.execute("INSERT OR IGNORE INTO agent_sessions (session_id) VALUES (?)", (session_id,))
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)", rows
        )
    conn.close()


async def growth(
    make: Factory,
    db_path: str,
    *,
    sizes: tuple[int, ...] = (1_000, 10_000, 100_000),
    reads: int = 1_000,
    batch: int = 50,
    fill: Callable[[str, str, int, int], Awaitable[None] | None] = _fill,
) -> Result:
    """``get_items(20)`` as one session's history grows; the time per call should stay flat.

    The session builds its own schema first (its first call), then rows are appended with raw
    ``sqlite3`` in the SDK's layout, which is much faster than ``add_items`` and not timed. The
    time per call at each size is the median over batches of ``batch`` reads, so a burst of
    machine noise in one batch does not masquerade as a size effect.

    ``fill(db_path, session_id, first, count)`` appends the rows (``first`` is the number
    already stored); a suite on another database passes its own, which may be async.
    """
    session = make("growth", db_path)
    await session.get_items(1)  # our class creates its schema on first use
    result, stored = Result(0, 0.0), 0
    for size in sizes:
        filled = fill(db_path, "growth", stored, size - stored)
        if filled is not None:
            await filled
        stored = size
        batches = [await _time_reads(session, batch, 20) for _ in range(reads // batch)]
        result.ops += batch * len(batches)
        result.seconds += sum(batches)
        result.per_call[size] = statistics.median(batches) / batch
    return result


async def branch(
    make: Factory,
    db_path: str,
    *,
    sizes: tuple[int, ...] = (1_000, 10_000),
    branches: int = 30,
    batch_turns: int = 1_000,
) -> Result:
    """``create_branch_from_turn(2)`` on a session holding each of ``sizes`` items.

    Needs an advanced session (``create_branch_from_turn``, ``switch_to_branch``). Each size
    gets its own session in the file, filled (not timed) with ``add_items`` in batches of
    ``batch_turns`` turns' items, so every fourth item is a user message. Then ``branches``
    branches with unique names are created from turn 2, each timed on its own; the session
    switches back to ``main`` between them (not timed). The time per creation at each size is
    the median of its calls.
    """
    result = Result(0, 0.0)
    for size in sizes:
        session: Any = make(f"branch-{size}", db_path)
        items = history(size)
        step = 4 * batch_turns
        for first in range(0, size, step):
            await session.add_items(items[first : first + step])
        await session.create_branch_from_turn(2, f"warmup_{size}")  # untimed
        await session.switch_to_branch("main")
        calls = []
        for i in range(branches):
            start = time.perf_counter()
            created = await session.create_branch_from_turn(2, f"b{size}_{i}")
            calls.append(time.perf_counter() - start)
            await session.switch_to_branch("main")
        assert created == f"b{size}_{branches - 1}"
        assert len(await session.get_items()) == size
        result.ops += branches
        result.seconds += sum(calls)
        result.per_call[size] = statistics.median(calls)
    return result


WORKLOADS: dict[str, Callable[..., Awaitable[Result]]] = {
    "chat": chat,
    "concurrent": concurrent,
    "long_read": long_read,
    "undo": undo,
    "growth": growth,
}

ADVANCED_WORKLOADS: dict[str, Callable[..., Awaitable[Result]]] = {
    "chat": chat,
    "long_read": long_read,
    "undo": undo,
    "branch": branch,
}
"""The workloads of ``--backend advanced`` (the AdvancedSQLiteSession classes)."""

ENCRYPTED_WORKLOADS: dict[str, Callable[..., Awaitable[Result]]] = {
    "chat": chat,
    "concurrent": concurrent,
    "long_read": long_read,
    "undo": undo,
}
"""The workloads of ``--backend encrypted`` (growth fills rows directly, in plain text)."""

QUICK: dict[str, dict[str, Any]] = {
    "chat": {"sessions": 5, "turns": 10},
    "concurrent": {"sessions": 5, "turns": 10},
    "long_read": {"items": 1_000, "reads": 200},
    "undo": {"items": 50},
    "growth": {"sizes": (1_000, 10_000), "reads": 100},
    "branch": {"branches": 10},
}
"""Keyword overrides for ``--quick`` (a smoke test, not a measurement)."""

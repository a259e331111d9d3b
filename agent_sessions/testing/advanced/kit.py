"""What the advanced checks share: capability detection, the items they store, and helpers."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from agents.items import TResponseInputItem
from agents.memory import Session
from agents.result import RunResult
from agents.usage import Usage

from ..checks import ConformanceError
from ..sessions import Harness, message

__all__ = [
    "BRANCHES",
    "COUNTS",
    "Advanced",
    "Unsupported",
    "counted",
    "current_of",
    "exchange",
    "expect",
    "history",
    "items_on",
    "open_advanced",
    "refuses",
    "requires",
    "run_offline",
    "takes_branch_id",
    "tokens_of",
    "totals",
]


class Unsupported(Exception):
    """The session lacks a method (or the harness a capability) a check needs; it did not run."""


class Advanced(Session, Protocol):
    """The methods of the SDK's ``AdvancedSQLiteSession`` the checks call, loosely typed.

    A check calls one only after :func:`requires` found it (or the session has no such method).
    """

    async def get_items(self, limit: int | None = None, **kw: Any) -> list[TResponseInputItem]:
        """The current branch's items, or ``branch_id``'s where accepted."""

    async def create_branch_from_turn(self, *a: Any, **kw: Any) -> str:
        """Fork before a user turn, switch to the fork, return its id."""

    async def create_branch_from_content(self, *a: Any, **kw: Any) -> str:
        """Fork before the first user turn containing a term, and switch."""

    async def switch_to_branch(self, *a: Any, **kw: Any) -> None:
        """Make a branch current."""

    async def delete_branch(self, *a: Any, **kw: Any) -> None:
        """Delete a branch."""

    async def list_branches(self) -> list[dict[str, Any]]:
        """One dict per branch."""

    async def get_conversation_turns(self, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        """A branch's user turns."""

    async def find_turns_by_content(self, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        """A branch's user turns containing a term."""

    async def get_conversation_by_turns(self, *a: Any, **kw: Any) -> dict[int, list[Any]]:
        """A branch's items grouped by user turn."""

    async def get_tool_usage(self, *a: Any, **kw: Any) -> list[tuple[str, int, int]]:
        """``(tool, calls, turn)`` per tool and turn."""

    async def store_run_usage(self, result: Any) -> None:
        """Record a run's usage against the current turn."""

    async def get_session_usage(self, *a: Any, **kw: Any) -> dict[str, int] | None:
        """Usage summed over a branch, or all."""

    async def get_turn_usage(self, *a: Any, **kw: Any) -> Any:
        """Usage per turn (a list), or of one turn (a dict)."""

    async def current_branch(self) -> str:
        """The current branch's id (ours only)."""

    async def pop_turn(self) -> list[TResponseInputItem]:
        """Remove the last exchange (ours only)."""


BRANCHES = ("create_branch_from_turn", "switch_to_branch", "list_branches")
"""The methods every advanced check calls."""

COUNTS = ("requests", "input_tokens", "output_tokens", "total_tokens")
"""The counts ``get_session_usage`` and ``get_turn_usage`` report, as named on ``Usage``."""


def requires(session: object, *methods: str) -> None:
    """Raise :class:`Unsupported` unless ``session`` has every named method.

    Raises:
        Unsupported: naming the class and the first missing method.
    """
    for name in methods:
        if not callable(getattr(session, name, None)):
            raise Unsupported(f"{type(session).__name__} has no {name}()")


def expect(condition: bool, text: str) -> None:
    """Raise :class:`ConformanceError` with ``text`` unless ``condition`` holds."""
    if not condition:
        raise ConformanceError(text)


def exchange(n: int, *tools: str) -> list[TResponseInputItem]:
    """User turn ``n``: the question, a call and its output per tool (one by default), a reply."""
    items = [message(f"Question {n}")]
    for i, tool in enumerate(tools or ("lookup",)):
        call = f"call_{n}_{i}"
        items.append(
            cast(TResponseInputItem, {"type": "function_call", "call_id": call, "name": tool})
        )
        items.append(cast(TResponseInputItem, {"type": "function_call_output", "call_id": call}))
    return [*items, message(f"Answer {n}", role="assistant")]


def history(*numbers: int) -> list[TResponseInputItem]:
    """The items of the numbered exchanges, in order."""
    return [item for n in numbers for item in exchange(n)]


async def open_advanced(h: Harness, session_id: str, turns: int = 3, *more: str) -> Advanced:
    """Open a session having the branch methods (and ``more``), holding ``turns`` exchanges."""
    session = await h.session(session_id)
    requires(session, *BRANCHES, *more)
    for n in range(1, turns + 1):
        await session.add_items(exchange(n))
    return cast(Advanced, session)


async def items_on(session: Advanced, branch: str) -> list[TResponseInputItem]:
    """Switch to ``branch`` and return its items; a branch that is gone fails the check."""
    try:
        await session.switch_to_branch(branch)
    except ValueError as exc:
        raise ConformanceError(f"branch {branch!r} is gone: {exc}") from exc
    return await session.get_items()


async def refuses(call: Callable[[], Any], what: str) -> None:
    """Await ``call()`` and fail unless it raises ``ValueError``."""
    try:
        await call()
    except ValueError:
        return
    raise ConformanceError(f"{what} did not raise ValueError")


def takes_branch_id(session: Session) -> bool:
    """Whether ``session.get_items`` accepts ``branch_id``."""
    return "branch_id" in inspect.signature(session.get_items).parameters


def current_of(branches: Sequence[dict[str, Any]]) -> list[object]:
    """The ids ``list_branches`` marks current."""
    return [b["branch_id"] for b in branches if b["is_current"]]


async def run_offline(session: Session, text: str) -> RunResult:
    """Run ``text`` through ``Runner.run`` on the offline model; return the ``RunResult``."""
    from agents import Agent, RunConfig, Runner  # noqa: PLC0415 - keeps this module light

    from ...offline import OfflineModel  # noqa: PLC0415

    agent = Agent(name="assistant", instructions="Be brief.", model=OfflineModel())
    config = RunConfig(tracing_disabled=True)
    return await Runner.run(agent, text, session=session, run_config=config)


def totals(*usages: Usage) -> dict[str, int]:
    """What ``get_session_usage`` reports for these runs' usages, one run per turn."""
    return {k: sum(getattr(u, k) for u in usages) for k in COUNTS} | {"total_turns": len(usages)}


def tokens_of(entry: dict[str, Any]) -> tuple[object, ...]:
    """The four counts of a ``get_turn_usage`` entry."""
    return tuple(entry.get(k) for k in COUNTS)


def counted(usage: Usage) -> tuple[object, ...]:
    """The four counts of a run's ``Usage``."""
    return tuple(getattr(usage, k) for k in COUNTS)

"""The support agent, its tools and helpers the pending-run tests (and their children) share."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from agents import Agent, FunctionTool, RunConfig, function_tool
from agents.items import TResponseInputItem

from agent_sessions.offline import OfflineModel

RUN_CONFIG = RunConfig(tracing_disabled=True)
"""No trace upload: every test run stays offline."""

REFUND_REQUEST = "Please refund order 42"
"""A message the offline model answers with a call of ``issue_refund``."""


def _mark(tool: str) -> None:
    """Append one line per execution to $PENDING_RUNS_LOG, so processes can count them."""
    log = os.environ.get("PENDING_RUNS_LOG")
    if log:
        with Path(log).open("a", encoding="utf-8") as file:
            file.write(tool + "\n")


def executions(log: Path, tool: str) -> int:
    """How many times ``tool`` ran, across every process that wrote ``log``."""
    if not log.exists():
        return 0
    return log.read_text(encoding="utf-8").splitlines().count(tool)


@function_tool(needs_approval=True)
def issue_refund(order_id: str) -> str:
    """Issue a refund for an order; a human must approve it."""
    _mark("issue_refund")
    return f"refund issued for {order_id}"


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order's status."""
    _mark("lookup_order")
    return f"order {order_id} shipped"


@function_tool
def escalate(reason: str) -> str:
    """Escalate the case to a human supervisor (slow when $PENDING_RUNS_SLOW is set)."""
    _mark("escalate:start")
    if os.environ.get("PENDING_RUNS_SLOW"):
        time.sleep(120)
    _mark("escalate")
    return "ticket T-7 opened"


def support_agent(*tools: FunctionTool, name: str = "Support") -> Agent[Any]:
    """The support agent on the offline model, with the refund tool unless others are given."""
    return Agent(
        name=name,
        instructions="Help customers with their orders.",
        model=OfflineModel(chain_tools=True),
        tools=list(tools) or [issue_refund],
    )


def kinds(items: list[TResponseInputItem]) -> list[str]:
    """Each item's kind: a message's role, or the item type."""
    return [str(i.get("role") or i.get("type")) for i in items]  # type: ignore[union-attr]


def assert_no_duplicates(items: list[TResponseInputItem]) -> None:
    """No user message, call or call output appears twice in a history."""
    keys = []
    for item in items:
        data: dict[str, Any] = dict(item)  # type: ignore[arg-type]
        if data.get("type") in ("function_call", "function_call_output"):
            keys.append((data["type"], data["call_id"]))
        elif data.get("role") == "user":
            keys.append(("user", str(data.get("content"))))
    assert len(keys) == len(set(keys)), f"duplicated items: {keys}"


async def stored(session: Any, name: str) -> Any:
    """The raw per-session state value under ``name`` (bypassing the pending-run checks)."""
    return await session._read_state(name)  # noqa: SLF001 - the tests reach the stored value


async def store(session: Any, name: str, value: Any) -> None:
    """Store a raw per-session state value under ``name`` (to plant what a test needs)."""
    await session._write_state(name, value)  # noqa: SLF001 - the tests plant stored values

"""Crash-safe runs: a process killed inside a tool call resumes the turn without redoing tools.

The SDK saves a run's items to the session when the run ends or pauses for approval, so a
process killed inside a tool call keeps only the user message of that turn. Its public API has
one point where a run can be stopped, serialised and resumed mid-turn: a tool that needs
approval. :func:`run_durably` uses it as a checkpoint. It runs a copy of the agent whose
function tools all pause before they execute; at each pause it stores the run
(``save_pending_run``, one transaction), approves the calls no human has to approve and goes on.
Each tool's result is recorded in the session's state as soon as the tool returns, so a call
that completed before a crash is answered from that record on resume, never run again.

After a crash, ``await run_durably(agent, None, session=session)`` resumes the stored run: the
completed tools are not re-run, the tool that was running when the process died runs again
(it never reported a result), and the history ends up whole with no duplicates. Tools that
really need a human (``needs_approval``) still stop the run: the result comes back with its
``interruptions`` and the run stays stored, as with :meth:`PendingRuns.save_pending_run`.

In LangGraph's terms this is ``durability="sync"`` at tool boundaries: the checkpoint is
written before the next step starts. Model calls are not checkpointed (a crash inside one
repeats it), and a tool that died half way runs again, so tools with side effects should be
idempotent, as in every checkpointing system.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, cast

from agents import Agent, RunConfig, Runner, RunResult
from agents.items import TResponseInputItem
from agents.run_state import RunState
from agents.tool import FunctionTool
from agents.tool_context import ToolContext

from ..errors import PendingRunError
from ..pending_runs import PendingRuns

__all__ = ["TOOL_JOURNAL_STATE", "durable_agent", "run_durably"]

TOOL_JOURNAL_STATE = "agent_sessions.tool_journal"
"""The per-session state name under which completed tool results of the open turn are kept."""


def _record(call_id: str, output: object) -> Callable[[Any], Any]:
    """The state change that adds one completed call to the journal."""

    def change(journal: Any) -> Any:
        entries = dict(journal) if isinstance(journal, dict) else {}
        entries[call_id] = output  # "tail" holds the history's last item at the checkpoint
        return entries

    return change


def _journaled(tool: FunctionTool, session: PendingRuns) -> FunctionTool:
    """A copy of ``tool`` that pauses before it runs and records its result when it returns."""
    invoke = tool.on_invoke_tool

    async def on_invoke(context: ToolContext[Any], arguments: str) -> Any:
        call_id = context.tool_call_id
        journal = await session._read_state(TOOL_JOURNAL_STATE)  # noqa: SLF001 - ours
        if isinstance(journal, dict) and call_id in journal:
            return journal[call_id]  # completed before a crash: answered from the record
        output = await invoke(context, arguments)
        try:
            recorded = json.loads(json.dumps(output))
        except (TypeError, ValueError):
            recorded = str(output)  # what the SDK would send the model for it anyway
        await session._update_state(TOOL_JOURNAL_STATE, _record(call_id, recorded))  # noqa: SLF001
        return output

    async def pause(_context: Any, _params: dict[str, Any], _call_id: str) -> bool:
        return True

    return dataclasses.replace(tool, on_invoke_tool=on_invoke, needs_approval=pause)


def durable_agent(agent: Agent[Any], session: PendingRuns) -> Agent[Any]:
    """A copy of ``agent`` (and of the agents it hands off to) whose function tools checkpoint.

    Args:
        agent: The agent to run.
        session: The session the checkpoints and the tool journal are stored in.

    Returns:
        A clone with the same names, instructions and tools; each function tool pauses before
        it runs (a checkpoint) and records its result in ``session`` when it returns.
    """
    copies: dict[int, Agent[Any]] = {}

    def copy(original: Agent[Any]) -> Agent[Any]:
        if id(original) in copies:
            return copies[id(original)]
        clone = original.clone()
        copies[id(original)] = clone
        clone.tools = [
            _journaled(t, session) if isinstance(t, FunctionTool) else t for t in original.tools
        ]
        clone.handoffs = [copy(h) if isinstance(h, Agent) else h for h in original.handoffs]
        return clone

    return copy(agent)


def _original_tools(agent: Agent[Any]) -> dict[tuple[str, str], FunctionTool]:
    """The function tools of ``agent``'s graph by (agent name, tool name)."""
    found: dict[tuple[str, str], FunctionTool] = {}
    queue, seen = [agent], set()
    while queue:
        current = queue.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for tool in current.tools:
            if isinstance(tool, FunctionTool):
                found.setdefault((current.name, tool.name), tool)
        queue.extend(h for h in current.handoffs if isinstance(h, Agent))
    return found


async def _needs_human(item: Any, tools: dict[tuple[str, str], FunctionTool], wrapper: Any) -> bool:
    """Whether the original tool of a paused call asks for a human's approval."""
    tool = tools.get((item.agent.name, str(item.tool_name)))
    if tool is None:
        return True  # not one of our checkpointed tools: a real approval (MCP, shell, ...)
    policy = tool.needs_approval
    if isinstance(policy, bool):
        return policy
    raw = item.raw_item
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    params = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    return bool(await policy(wrapper, params, str(call_id)))


async def run_durably(
    agent: Agent[Any],
    input: str | list[TResponseInputItem] | RunState[Any, Any] | None,
    *,
    session: PendingRuns,
    run_config: RunConfig | None = None,
    context: Any = None,
    max_turns: int = 10,
    **run_kwargs: Any,
) -> RunResult:
    """Run ``agent`` like ``Runner.run``, checkpointing at every tool call so a crash can resume.

    Args:
        agent: The starting agent (the same graph must be passed to resume).
        input: A new turn's input; None to resume the run stored in ``session`` after a crash
            (or after a human's decision on it); or a ``RunState`` to continue (for example
            one whose approvals a human just decided).
        session: One of this package's sessions: the history, the checkpoint and the journal.
        run_config: Passed to ``Runner.run``.
        context: The run context, for a new turn.
        max_turns: Passed to ``Runner.run``.
        **run_kwargs: Other ``Runner.run`` arguments (``hooks``, ...).

    Returns:
        The finished run's result, or one that stopped with ``interruptions`` for a human:
        then the run is stored and a later call resumes it.

    Raises:
        PendingRunError: ``input`` is None and nothing is stored, or a new turn was asked for
            while the session holds a stopped run (resume it or ``clear_pending_run()``).

    Example:
        >>> # result = await run_durably(agent, "Refund order 42", session=session)
        >>> # ... the process is killed inside a tool; a new one runs:
        >>> # result = await run_durably(agent, None, session=session)
    """
    durable = durable_agent(agent, session)
    tools = _original_tools(agent)
    current: Any
    if input is None:
        current = await session.load_pending_run(durable)
        if current is None:
            raise PendingRunError(f"session {_sid(session)!r} holds no run to resume")
        await _trim_to_checkpoint(session)
    elif isinstance(input, RunState):
        current = await RunState.from_json(durable, input.to_json())
    else:
        if await session.pending_run_info() is not None:
            raise PendingRunError(
                f"session {_sid(session)!r} holds a stopped run: resume it with input=None "
                "or drop it with clear_pending_run() before starting a new turn"
            )
        await session._write_state(TOOL_JOURNAL_STATE, None)  # noqa: SLF001 - ours
        current = input
    while True:
        result = await Runner.run(
            durable,
            current,
            session=cast(Any, session),
            run_config=run_config,
            context=context,
            max_turns=max_turns,
            **run_kwargs,
        )
        if not result.interruptions:
            await session.clear_pending_run()
            await session._write_state(TOOL_JOURNAL_STATE, None)  # noqa: SLF001 - ours
            return result
        state = result.to_state()
        waiting = False
        for item in state.get_interruptions():
            if await _needs_human(item, tools, result.context_wrapper):
                waiting = True
            else:
                state.approve(item)
        await session.save_pending_run(state)  # the checkpoint: approvals already in it
        await _mark_tail(session)
        if waiting:
            return result
        current = state


_TRIM_WINDOW = 64
"""How far back from the end a resume looks for the history's last item at the checkpoint."""


async def _mark_tail(session: PendingRuns) -> None:
    """Keep the history's last item beside the checkpoint just written."""
    tail = await cast(Any, session).get_items(1)
    change = _record("tail", tail[-1] if tail else None)
    await session._update_state(TOOL_JOURNAL_STATE, change)  # noqa: SLF001 - ours


async def _trim_to_checkpoint(session: PendingRuns) -> None:
    """Drop what the SDK saved after the checkpoint, so the resumed steps do not repeat it.

    Between two checkpoints the SDK saves a step's tool outputs (and, at a pause, the next
    calls); resuming from the older checkpoint writes them again. Popping is idempotent: a
    crash while trimming leaves a prefix that the next resume trims further.
    """
    journal = await session._read_state(TOOL_JOURNAL_STATE)  # noqa: SLF001 - ours
    if not isinstance(journal, dict) or "tail" not in journal:
        return
    items = await cast(Any, session).get_items(_TRIM_WINDOW)
    found = [i for i, item in enumerate(items) if item == journal["tail"]]
    if not found:
        return  # the checkpoint's last item is out of reach: keep everything rather than guess
    for _ in range(len(items) - 1 - found[-1]):
        await cast(Any, session).pop_item()


def _sid(session: object) -> str:
    return str(getattr(session, "session_id", "?"))

"""Durable human-in-the-loop: a run paused for approval is stored with its session.

When a run stops because a tool needs approval (``result.interruptions``), the SDK's
``RunState`` holds everything needed to resume it. :class:`PendingRuns` stores that state in the
session's own database, beside the history, so a process that restarts (or another server) can
load it, approve or reject, and finish the same run::

    result = await Runner.run(agent, "Refund order 42", session=session)
    if result.interruptions:
        await session.save_pending_run(result.to_state())
    # ... later, maybe in another process ...
    state = await session.load_pending_run(agent)
    if state is not None:
        for item in state.get_interruptions():
            state.approve(item)
        result = await Runner.run(agent, state, session=session)
        await session.clear_pending_run()

The state is stored through the session's per-session state storage (one transaction per call;
sealed under ``EncryptedSession``) as a small envelope: a format number, what it was saved for
(the agent, the SDK's run-state schema, the calls awaiting approval) and the SDK's own
``RunState.to_json()``. Loading checks the envelope before the SDK sees it: a state saved by a
newer package or SDK, or for an agent the given graph does not reach, raises
:class:`~agent_sessions.errors.PendingRunError`; an envelope that is not ours raises
:class:`~agent_sessions.errors.CorruptItemError` and stays stored.

Public API:
    - :class:`PendingRuns`: the three methods, mixed into every session class of this package.
    - :class:`PendingRunInfo`, :class:`PendingApproval`: what :meth:`PendingRuns.pending_run_info`
      returns without an agent (for a list of runs waiting for a human).
    - :data:`PENDING_RUN_STATE`, :data:`PENDING_RUN_FORMAT`: the state name and envelope format.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict, cast

from agents import Agent
from agents.exceptions import UserError
from agents.handoffs import Handoff
from agents.run_state import CURRENT_SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, RunState

from .errors import CorruptItemError, PendingRunError

if TYPE_CHECKING:
    from agents.run_context import RunContextWrapper
    from agents.run_state import ContextDeserializer, ContextSerializer

__all__ = [
    "PENDING_RUN_FORMAT",
    "PENDING_RUN_STATE",
    "PendingApproval",
    "PendingRunInfo",
    "PendingRuns",
    "agent_graph_names",
]

PENDING_RUN_STATE = "agent_sessions.pending_run"
"""The per-session state name a paused run is stored under."""

PENDING_RUN_FORMAT = 1
"""The envelope format written; a stored envelope of a higher format is refused."""


class PendingApproval(TypedDict):
    """One tool call waiting for a human's decision."""

    tool_name: str
    """The tool the model called."""
    call_id: str | None
    """The call's id (``call_id`` of the ``function_call`` item), when it has one."""
    arguments: str | None
    """The arguments the model gave, as the JSON text it sent."""
    agent: str
    """The agent whose tool it is."""


class PendingRunInfo(TypedDict):
    """What a stored paused run is waiting for, readable without the agent."""

    agent: str
    """The agent that was running when the run paused."""
    saved_at: float
    """When it was saved, in seconds since the epoch."""
    sdk_schema: str
    """The SDK's ``RunState`` schema version it was written in."""
    approvals: list[PendingApproval]
    """The calls awaiting approval, in the order the run raised them."""


def agent_graph_names(agent: Agent[Any]) -> set[str]:
    """Name every agent reachable from ``agent`` through its handoffs.

    Args:
        agent: The starting agent.

    Returns:
        The names of ``agent`` and of every handoff target, followed through ``Agent`` handoffs
        (a ``handoff(...)`` object contributes its target's name).
    """
    names: set[str] = set()
    seen: set[int] = set()
    queue: list[Agent[Any]] = [agent]
    while queue:
        current = queue.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        names.add(current.name)
        for target in current.handoffs:
            if isinstance(target, Agent):
                queue.append(target)
            elif isinstance(target, Handoff):
                names.add(target.agent_name)
    return names


def _approvals(state: RunState[Any, Any]) -> list[PendingApproval]:
    """The tool calls a state waits on, in a JSON-safe form."""
    found: list[PendingApproval] = []
    for item in state.get_interruptions():
        raw: Any = item.raw_item
        fields = raw if isinstance(raw, Mapping) else vars(raw) if hasattr(raw, "__dict__") else {}
        call_id, arguments = fields.get("call_id"), fields.get("arguments")
        found.append({
            "tool_name": str(item.tool_name or fields.get("name") or ""),
            "call_id": call_id if isinstance(call_id, str) else None,
            "arguments": arguments if isinstance(arguments, str) else None,
            "agent": item.agent.name,
        })  # fmt: skip
    return found


def _envelope(
    state: RunState[Any, Any],
    context_serializer: ContextSerializer | None,
    strict_context: bool,
) -> dict[str, Any]:
    """The stored form of ``state``: our envelope around the SDK's own JSON."""
    if not isinstance(state, RunState):
        raise TypeError(
            f"save_pending_run() takes a RunState (result.to_state()), not {type(state).__name__}"
        )
    try:
        run = state.to_json(context_serializer=context_serializer, strict_context=strict_context)
    except UserError as exc:
        raise PendingRunError(f"this run cannot be saved: {exc}") from exc
    current = run.get("current_agent")
    agent = current.get("name") if isinstance(current, Mapping) else None
    return {
        "format": PENDING_RUN_FORMAT,
        "saved_at": time.time(),
        "agent": agent if isinstance(agent, str) else "",
        "sdk_schema": str(run.get("$schemaVersion", "")),
        "approvals": _approvals(state),
        "run": run,
    }


def _checked(value: object, session_id: str) -> dict[str, Any]:
    """The stored envelope, refused with a clear error when it is not one we can resume."""
    if not isinstance(value, dict) or not isinstance(value.get("format"), int):
        raise CorruptItemError(session_id, "the stored pending run is not a pending-run envelope")
    envelope = cast(dict[str, Any], value)
    if envelope["format"] > PENDING_RUN_FORMAT:
        raise PendingRunError(
            f"session {session_id!r}: the pending run was saved in format {envelope['format']} "
            f"by a newer agent_sessions; this version reads format {PENDING_RUN_FORMAT}"
        )
    kinds: dict[str, type | tuple[type, ...]] = {
        "agent": str,
        "sdk_schema": str,
        "saved_at": (int, float),
        "approvals": list,
        "run": dict,
    }
    if any(not isinstance(envelope.get(f), k) for f, k in kinds.items()):
        raise CorruptItemError(session_id, "the stored pending run envelope is incomplete")
    if envelope["sdk_schema"] not in SUPPORTED_SCHEMA_VERSIONS:
        raise PendingRunError(
            f"session {session_id!r}: the pending run was saved by an openai-agents whose run "
            f"state schema is {envelope['sdk_schema']!r}; the installed one reads up to "
            f"{CURRENT_SCHEMA_VERSION}. Upgrade openai-agents to resume it"
        )
    return envelope


def _info(envelope: dict[str, Any]) -> PendingRunInfo:
    """The typed summary of a checked envelope."""
    return {
        "agent": envelope["agent"],
        "saved_at": float(envelope["saved_at"]),
        "sdk_schema": envelope["sdk_schema"],
        "approvals": [cast(PendingApproval, dict(a)) for a in envelope["approvals"]],
    }


def _check_agent(envelope: dict[str, Any], agent: Agent[Any], session_id: str) -> None:
    """Refuse an agent graph that does not hold the agent the run paused in."""
    names = agent_graph_names(agent)
    if envelope["agent"] not in names:
        reach = ", ".join(repr(n) for n in sorted(names))
        raise PendingRunError(
            f"session {session_id!r}: the pending run paused in agent {envelope['agent']!r}, "
            f"which the agent graph of {agent.name!r} does not hold ({reach}); load it with "
            "the agent graph that started it"
        )


class PendingRuns:
    """Save, load and clear a run paused for approval, in the session's own database.

    Mixed into every session class of this package, on top of its per-session state storage
    (``_read_state`` / ``_write_state``): one stored run per session, written in one transaction,
    sealed under ``EncryptedSession``. Saving again replaces the stored run.
    """

    session_id: str

    if TYPE_CHECKING:

        async def _read_state(self, name: str) -> Any: ...

        async def _write_state(self, name: str, value: Any) -> None: ...

        async def _update_state(self, name: str, change: Any) -> Any: ...

    async def save_pending_run(
        self,
        state: RunState[Any, Any],
        *,
        context_serializer: ContextSerializer | None = None,
        strict_context: bool = False,
    ) -> None:
        """Store a paused run so any process can resume it; replaces a stored one.

        Args:
            state: The run to keep, usually ``result.to_state()`` after a run stopped with
                ``result.interruptions``.
            context_serializer: Turns a non-mapping run context into JSON (the SDK's
                ``RunState.to_json`` argument).
            strict_context: Refuse a context that cannot round-trip (the SDK's argument).

        Raises:
            TypeError: ``state`` is not a ``RunState``; nothing was written.
            PendingRunError: the SDK cannot serialise this run; nothing was written.

        Example:
            >>> # result = await Runner.run(agent, text, session=session)
            >>> # if result.interruptions:
            >>> #     await session.save_pending_run(result.to_state())
        """
        envelope = _envelope(state, context_serializer, strict_context)
        # The SDK's JSON is a plain tree; a round trip drops tuples and other look-alikes early.
        await self._write_state(PENDING_RUN_STATE, json.loads(json.dumps(envelope)))

    async def load_pending_run(
        self,
        agent: Agent[Any],
        *,
        context_override: Mapping[str, Any] | RunContextWrapper[Any] | None = None,
        context_deserializer: ContextDeserializer | None = None,
        strict_context: bool = False,
    ) -> RunState[Any, Agent[Any]] | None:
        """Return the stored paused run, rebuilt on ``agent``'s graph, or None if there is none.

        The run stays stored until :meth:`clear_pending_run`, so a crash between loading and
        finishing leaves it resumable.

        Args:
            agent: The starting agent of the run (its graph must hold the agent that paused).
            context_override: A context to use instead of the stored one (the SDK's argument).
            context_deserializer: Rebuilds a non-mapping context (the SDK's argument).
            strict_context: Require a deserializer or override for non-mapping contexts.

        Returns:
            A ``RunState`` to approve or reject on and pass to ``Runner.run``, or None.

        Raises:
            PendingRunError: the run was saved by a newer agent_sessions or openai-agents, for
                an agent graph that does not hold ``agent``, or the SDK refuses to rebuild it.
            CorruptItemError: what is stored is not a pending-run envelope (it stays stored).
        """
        envelope = await self._stored()
        if envelope is None:
            return None
        _check_agent(envelope, agent, self.session_id)
        try:
            return await RunState.from_json(
                agent,
                envelope["run"],
                context_override=context_override,
                context_deserializer=context_deserializer,
                strict_context=strict_context,
            )
        except Exception as exc:  # the SDK redacts its errors into RuntimeError, too
            raise PendingRunError(
                f"session {self.session_id!r}: the pending run cannot be rebuilt on agent "
                f"{agent.name!r}: {exc}"
            ) from exc

    async def pending_run_info(self) -> PendingRunInfo | None:
        """Describe the stored paused run (agent, time, calls awaiting approval), if any.

        Returns:
            A :class:`PendingRunInfo`, or None when no run is stored.

        Raises:
            PendingRunError: the run was saved by a newer agent_sessions or openai-agents.
            CorruptItemError: what is stored is not a pending-run envelope.
        """
        envelope = await self._stored()
        return None if envelope is None else _info(envelope)

    async def clear_pending_run(self) -> None:
        """Forget the stored paused run (after it completed, or to abandon it); idempotent."""
        await self._write_state(PENDING_RUN_STATE, None)

    async def _stored(self) -> dict[str, Any] | None:
        """The checked envelope, or None when nothing (readable) is stored."""
        value = await self._read_state(PENDING_RUN_STATE)
        return None if value is None else _checked(value, self.session_id)

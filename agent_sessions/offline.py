"""A deterministic, network-free model so demos, examples and tests run without an API key.

`OfflineModel` implements the Agents SDK `Model` interface and answers from the conversation it
is given, so `Runner.run(agent, text, session=...)` exercises real session round trips: what the
model "remembers" is exactly what the session loaded into its input. It recalls stated names and
preferences, counts and quotes earlier user messages, calls at most one function tool or handoff
per user message when the message mentions it (every mentioned tool in turn with
``chain_tools=True``), and otherwise echoes the message. Usage is
reported from a cheap characters/4 estimate. The model itself never uses the network; for a
fully offline run also pass `RunConfig(tracing_disabled=True)`, since the SDK's trace exporter
uploads spans whenever `OPENAI_API_KEY` is set.

Public API:
    - `OfflineModel(name="offline")`: the model; pass it as `Agent(model=...)`.
    - `OfflineModelProvider()`: a `ModelProvider` returning an `OfflineModel` for any name, for
      `RunConfig(model_provider=...)`.
    - `resolve_model(model=None)`: the model name (default `"gpt-4.1-mini"`) when
      `OPENAI_API_KEY` is set and non-empty, an `OfflineModel()` otherwise.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import (
    ModelResponse,
    TResponseInputItem,
    TResponseOutputItem,
    TResponseStreamEvent,
)
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import FunctionTool, Tool
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam
from typing_extensions import override

__all__ = ["DEFAULT_MODEL_NAME", "OfflineModel", "OfflineModelProvider", "resolve_model"]

DEFAULT_MODEL_NAME = "gpt-4.1-mini"
"""The model name `resolve_model` returns when an API key is available."""

_NAME_STATED = re.compile(r"\b(?:my name is|call me)\s+([a-z][\w'-]*)", re.IGNORECASE)
# "I'm X" only counts at the end of a clause, so "I'm looking for..." is not taken as a name.
_NAME_IM = re.compile(r"\b(?:i'm|i am)\s+([a-z][\w'-]*)\s*(?:[.!,]|$)", re.IGNORECASE)
_NOT_NAMES = frozenset({"fine", "good", "ok", "okay", "here", "back", "sorry", "sure", "ready"})
_NAME_ASKED = re.compile(
    r"\b(?:what(?:'s| is) my name|do you (?:remember|know) my name|who am i)\b", re.IGNORECASE
)
_FAVOURITE_STATED = re.compile(r"\bmy favou?rite\s+([\w ]+?)\s+is\s+([^.?!]+)", re.IGNORECASE)
_PREFERENCE_STATED = re.compile(r"\bi (?:really )?(?:prefer|like|love)\s+([^.?!]+)", re.IGNORECASE)
_FAVOURITE_ASKED = re.compile(r"\bwhat(?:'s| is| was) my favou?rite\s+([\w ]+?)\s*\??$", re.I)
_PREFERENCE_ASKED = re.compile(r"\bwhat (?:do|did) i (?:prefer|like|love)\b", re.IGNORECASE)
_COUNT_ASKED = re.compile(r"\bhow many messages\b", re.IGNORECASE)
_FIRST_ASKED = re.compile(r"\bwhat (?:did i say|was my) first\b|\bmy first message\b", re.I)
_PLACE = re.compile(r"\bin\s+([A-Za-z][\w-]*(?:\s+[A-Z][\w-]*)*)")
_PLACE_PARAMS = frozenset({"city", "location", "place", "town", "country", "region", "where"})
# Generic words in tool and handoff descriptions that would otherwise make everything match.
_STOPWORDS = frozenset({
    "get", "set", "the", "and", "for", "with", "from", "this", "that", "tool", "agent", "handoff",
    "transfer", "handle", "request", "current", "return", "given", "about", "question", "your",
    "user", "function", "call", "input", "output", "when", "what", "which",
})  # fmt: skip
_KEYWORD_MIN = 4  # shorter words ("a", "in", "my") are too common to signal a tool


class _Decision(NamedTuple):
    """What the model says next: a text answer, or a call of the named tool or handoff."""

    text: str
    call_name: str | None = None
    call_arguments: str = "{}"


def _user_text(item: TResponseInputItem) -> str | None:
    """Return the text of a user message item, or None for any other item."""
    if not isinstance(item, dict) or item.get("role") != "user":
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict)).strip()
    return ""


def _stated_name(text: str) -> str | None:
    """Return the name the user states in `text`, if any."""
    if text.rstrip().endswith("?"):
        return None
    match = _NAME_STATED.search(text) or _NAME_IM.search(text)
    if match is None or match.group(1).lower() in _NOT_NAMES:
        return None
    name = match.group(1)
    return name[:1].upper() + name[1:]


def _stated_preference(text: str) -> tuple[str | None, str] | None:
    """Return `(topic, value)` for a stated preference; topic is None for "I like X"."""
    if text.rstrip().endswith("?"):
        return None
    if match := _FAVOURITE_STATED.search(text):
        return match.group(1).strip().lower(), match.group(2).strip()
    if match := _PREFERENCE_STATED.search(text):
        return None, match.group(1).strip()
    return None


def _describe(preference: tuple[str | None, str]) -> str:
    """Phrase a preference from the user's point of view, as "your favourite X is Y"."""
    topic, value = preference
    return f"your favourite {topic} is {value}" if topic else f"you like {value}"


def _answer_name(text: str, earlier: list[str]) -> str | None:
    """Greet a user who states their name, or recall it from earlier messages."""
    if name := _stated_name(text):
        return f"Nice to meet you, {name}! I'll remember that."
    if _NAME_ASKED.search(text):
        names = [n for n in map(_stated_name, earlier) if n]
        return f"Your name is {names[-1]}." if names else "I don't know your name yet."
    return None


def _answer_preference(text: str, earlier: list[str]) -> str | None:
    """Acknowledge a stated preference, or recall one from earlier messages."""
    if preference := _stated_preference(text):
        return f"Got it: {_describe(preference)}. I'll remember that."
    known = [p for p in map(_stated_preference, earlier) if p]
    if match := _FAVOURITE_ASKED.search(text):
        topic = match.group(1).strip().lower()
        found = [p for p in known if p[0] == topic]
        return f"You told me {_describe(found[-1])}." if found else f"I don't know your {topic}."
    if _PREFERENCE_ASKED.search(text):
        return f"You told me {_describe(known[-1])}." if known else "I don't know that yet."
    return None


def _answer_history(text: str, earlier: list[str]) -> str | None:
    """Answer questions about the conversation itself: how long it is and how it began."""
    if _COUNT_ASKED.search(text):
        return f"You have sent {len(earlier) + 1} messages so far, counting this one."
    if _FIRST_ASKED.search(text):
        return f'Your first message was: "{earlier[0]}"' if earlier else "This is your first one."
    return None


def _words(text: str) -> set[str]:
    """Return the lower-cased words of `text`, with a plural "s" stripped for loose matching."""
    words = re.findall(r"[a-z]+", text.lower())
    return {w[:-1] if len(w) > _KEYWORD_MIN and w.endswith("s") else w for w in words}


def _mentions(text: str, names: list[str], description: str) -> bool:
    """Whether `text` names one of `names` or shares a distinctive keyword with them."""
    # Word boundaries, so a tool named `add` is not called for "address".
    if any(re.search(rf"\b{re.escape(n.lower())}\b", text.lower()) for n in names if n):
        return True
    keywords = {w for w in _words(" ".join([*names, description])) if len(w) >= _KEYWORD_MIN}
    return bool((keywords - _STOPWORDS) & _words(text))


def _arguments(schema: dict[str, Any], text: str) -> str:
    """Build JSON arguments for `schema` from the message: a place after "in", else the text."""
    properties: dict[str, Any] = schema.get("properties") or {}
    place = _PLACE.search(text)
    arguments: dict[str, Any] = {}
    for name in schema.get("required", list(properties)):
        kind = (properties.get(name) or {}).get("type", "string")
        if kind in ("integer", "number"):
            number = re.search(r"-?\d+(?:\.\d+)?", text)
            value = float(number.group()) if number else 0.0
            arguments[name] = int(value) if kind == "integer" else value
        elif kind == "boolean":
            arguments[name] = False
        else:
            wants_place = place is not None and name.lower() in _PLACE_PARAMS
            arguments[name] = place.group(1) if place and wants_place else text
    return json.dumps(arguments, sort_keys=True)


def _next_call(text: str, called: set[object], tools: list[FunctionTool]) -> _Decision | None:
    """The next tool the message mentions that was not called since, in the agent's order."""
    for tool in tools:
        if tool.name not in called and _mentions(text, [tool.name], tool.description):
            return _Decision("", tool.name, _arguments(tool.params_json_schema, text))
    return None


_REMEMBER = "remember"
"""The memory tool (``memory_tools``) the model calls before saying it will remember."""


def _promise(text: str, earlier: list[str]) -> str | None:
    """The answer of the first rule that answers ``text``, if it promises to remember."""
    for rule in (_answer_name, _answer_preference):
        if (answer := rule(text, earlier)) is not None:
            return answer if "I'll remember that" in answer else None
    return None


def _remember_first(
    answer: str, text: str, called: set[object], tools: list[FunctionTool]
) -> _Decision:
    """Say ``answer``; if it promises to remember and a ``remember`` tool exists, call it first."""
    if "I'll remember that" not in answer or _REMEMBER in called:
        return _Decision(answer)
    for tool in tools:
        if tool.name == _REMEMBER:
            return _Decision("", _REMEMBER, _arguments(tool.params_json_schema, text))
    return _Decision(answer)


def _decide(
    instructions: str | None,
    items: list[TResponseInputItem],
    tools: list[Tool],
    handoffs: list[Handoff],
    chain_tools: bool = False,
) -> _Decision:
    """Choose the next answer or call from the conversation; the heart of the offline model."""
    texts = [(i, t) for i, t in enumerate(map(_user_text, items)) if t is not None]
    if not texts:
        return _Decision("(offline) Hello! Say something and I will answer.")
    last_index, text = texts[-1]
    since_user = [it for it in items[last_index + 1 :] if isinstance(it, dict)]
    calls = {
        it.get("call_id"): it.get("name") for it in since_user if it.get("type") == "function_call"
    }
    outputs = [it for it in since_user if it.get("type") == "function_call_output"]
    function_tools = [t for t in tools if isinstance(t, FunctionTool)]
    if outputs:
        name = calls.get(outputs[-1].get("call_id"))
        # After a remember the answer promised, say that answer; after any other tool, its result.
        promised = _promise(text, [t for _, t in texts[:-1]]) if name == _REMEMBER else None
        if promised is None and name in {t.name for t in function_tools}:
            output = outputs[-1].get("output")
            shown = output if isinstance(output, str) else json.dumps(output, sort_keys=True)
            chained = _next_call(text, set(calls.values()), function_tools) if chain_tools else None
            return chained or _Decision(f"The {name} tool returned: {shown}")
    earlier = [t for _, t in texts[:-1]]
    for rule in (_answer_name, _answer_preference, _answer_history):
        if (answer := rule(text, earlier)) is not None:
            return _remember_first(answer, text, set(calls.values()), function_tools)
    # One call per user message at most, so a tool or handoff can never make the run loop spin.
    if not calls:
        for tool in function_tools:
            if _mentions(text, [tool.name], tool.description):
                return _Decision("", tool.name, _arguments(tool.params_json_schema, text))
        for handoff in handoffs:
            if _mentions(text, [handoff.tool_name, handoff.agent_name], handoff.tool_description):
                return _Decision("", handoff.tool_name, _arguments(handoff.input_json_schema, text))
    hint = (instructions or "").strip().split(".")[0][:60]
    return _Decision(f"(offline) You said: {text}" + (f" [{hint}]" if hint else ""))


def _tokens(text: str) -> int:
    """Estimate tokens the cheap, deterministic way: one per four characters."""
    return math.ceil(len(text) / 4)


def _response_usage(input_tokens: int, output_tokens: int) -> ResponseUsage:
    """Build Responses API usage with zero cached and reasoning tokens."""
    # Validating a dict, because openai >= 2.45 requires `cache_write_tokens` and older lacks it.
    return ResponseUsage.model_validate(
        {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
    )


class OfflineModel(Model):
    """A deterministic `Model` that answers from its input and never touches the network.

    Identical inputs give identical outputs, ids and usage, so runs are reproducible.

    Args:
        name: The model name reported on streamed responses.
        chain_tools: Call every function tool the user message mentions, one per response in
            the agent's tool order, before answering (by default at most one call per message).

    Example:
        >>> from agents import Agent, Runner, SQLiteSession
        >>> agent = Agent(name="Assistant", instructions="Be brief.", model=OfflineModel())
        >>> session = SQLiteSession("demo")
        >>> _ = Runner.run_sync(agent, "My name is Ada", session=session)
        >>> Runner.run_sync(agent, "What is my name?", session=session).final_output
        'Your name is Ada.'
    """

    def __init__(self, name: str = "offline", *, chain_tools: bool = False) -> None:
        self.name = name
        self.chain_tools = chain_tools

    def _respond(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
    ) -> tuple[Response, ResponseUsage]:
        """Compute the complete response and its usage, shared by both entry points."""
        items: list[TResponseInputItem] = (
            [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        )
        seen = json.dumps([system_instructions, items], sort_keys=True, default=str)
        # Ids hash the whole input, so they are stable across runs yet unique per turn.
        digest = hashlib.sha256(seen.encode()).hexdigest()[:24]
        decision = _decide(system_instructions, items, tools, handoffs, self.chain_tools)
        output: TResponseOutputItem
        if decision.call_name is not None:
            produced = decision.call_name + decision.call_arguments
            output = ResponseFunctionToolCall(
                id=f"fc_{digest}",
                call_id=f"call_{digest}",
                name=decision.call_name,
                arguments=decision.call_arguments,
                type="function_call",
                status="completed",
            )
        else:
            produced = decision.text
            if output_schema is not None and not output_schema.is_plain_text():
                # Structured agents must get JSON that validates, so fill the schema from the text.
                produced = _arguments(output_schema.json_schema(), decision.text)
            text = ResponseOutputText(annotations=[], text=produced, type="output_text")
            output = ResponseOutputMessage(
                id=f"msg_{digest}",
                content=[text],
                role="assistant",
                status="completed",
                type="message",
            )
        usage = _response_usage(_tokens(seen), _tokens(produced))
        response = Response(
            id=f"resp_{digest}",
            created_at=0.0,
            model=self.name,
            object="response",
            output=[output],
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
            status="completed",
            usage=usage,
        )
        return response, usage

    @override
    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        """Answer the conversation in `input`; see the module docstring for the rules."""
        response, raw = self._respond(system_instructions, input, tools, output_schema, handoffs)
        usage = Usage(
            requests=1,
            input_tokens=raw.input_tokens,
            input_tokens_details=raw.input_tokens_details,
            output_tokens=raw.output_tokens,
            output_tokens_details=raw.output_tokens_details,
            total_tokens=raw.total_tokens,
        )
        return ModelResponse(output=response.output, usage=usage, response_id=response.id)

    @override
    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Stream the same answer as `get_response` as Responses API events."""
        final, _ = self._respond(system_instructions, input, tools, output_schema, handoffs)
        started = final.model_copy(update={"output": [], "status": "in_progress", "usage": None})
        seq = itertools.count()
        yield ResponseCreatedEvent(
            response=started, sequence_number=next(seq), type="response.created"
        )
        for index, item in enumerate(final.output):
            yield ResponseOutputItemAddedEvent(
                item=item,
                output_index=index,
                sequence_number=next(seq),
                type="response.output_item.added",
            )
            if isinstance(item, ResponseOutputMessage):
                for part_index, part in enumerate(item.content):
                    yield ResponseTextDeltaEvent(
                        content_index=part_index,
                        delta=getattr(part, "text", ""),
                        item_id=item.id,
                        logprobs=[],
                        output_index=index,
                        sequence_number=next(seq),
                        type="response.output_text.delta",
                    )
            yield ResponseOutputItemDoneEvent(
                item=item,
                output_index=index,
                sequence_number=next(seq),
                type="response.output_item.done",
            )
        yield ResponseCompletedEvent(
            response=final, sequence_number=next(seq), type="response.completed"
        )


class OfflineModelProvider(ModelProvider):
    """A `ModelProvider` that serves an `OfflineModel` whatever model name is asked for.

    Use it as `RunConfig(model_provider=OfflineModelProvider())` to run agents that name real
    models (`Agent(model="gpt-4.1")`) without a network or an API key.
    """

    def get_model(self, model_name: str | None) -> Model:
        """Return an `OfflineModel` labelled with `model_name`.

        Args:
            model_name: The requested model name; only used as the model's label.

        Returns:
            A new `OfflineModel`.
        """
        return OfflineModel(model_name or "offline")


def resolve_model(model: str | None = None) -> Model | str:
    """Pick a real model when an API key is available and the offline model otherwise.

    Args:
        model: The model name to use online; defaults to `DEFAULT_MODEL_NAME`.

    Returns:
        The model name if `OPENAI_API_KEY` is set and non-empty, else an `OfflineModel()`.
    """
    if os.environ.get("OPENAI_API_KEY"):
        return model or DEFAULT_MODEL_NAME
    return OfflineModel()

"""Tests for the offline model: real `Runner` runs, real sessions, no network."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, Tool, function_tool

from agent_sessions.offline import (
    DEFAULT_MODEL_NAME,
    OfflineModel,
    OfflineModelProvider,
    resolve_model,
)

# Tracing would try to export spans over the network, so every run here turns it off.
OFFLINE = RunConfig(tracing_disabled=True)


def make_agent(tools: Sequence[Tool] = (), handoffs: Sequence[Agent[None]] = ()) -> Agent[None]:
    """Build an assistant agent on the offline model."""
    return Agent(
        name="Assistant",
        instructions="Be brief.",
        model=OfflineModel(),
        tools=list(tools),
        handoffs=list(handoffs),
    )


async def ask(agent: Agent[None], text: str, session: SQLiteSession | None = None) -> str:
    """Run one turn and return the final output as text."""
    result = await Runner.run(agent, text, session=session, run_config=OFFLINE)
    return str(result.final_output)


async def test_name_is_recalled_across_runs_on_one_session(tmp_path: Path) -> None:
    """A name stated in one run is recalled by a later run through the session history."""
    session = SQLiteSession("names", str(tmp_path / "x.db"))
    agent = make_agent()
    assert await ask(agent, "Hi, my name is Ada", session) == (
        "Nice to meet you, Ada! I'll remember that."
    )
    assert await ask(agent, "What is my name?", session) == "Your name is Ada."
    session.close()


async def test_name_is_unknown_without_history() -> None:
    """Without earlier messages the model says it does not know the name."""
    assert await ask(make_agent(), "what's my name?") == "I don't know your name yet."


async def test_preference_is_recalled_from_the_session(tmp_path: Path) -> None:
    """A favourite stated earlier in the session is recalled when asked."""
    session = SQLiteSession("prefs", str(tmp_path / "x.db"))
    agent = make_agent()
    await ask(agent, "My favourite colour is blue.", session)
    await ask(agent, "I prefer tea", session)
    assert await ask(agent, "What is my favourite colour?", session) == (
        "You told me your favourite colour is blue."
    )
    assert await ask(agent, "What do I prefer?", session) == "You told me you like tea."
    session.close()


async def test_history_questions_count_and_quote_messages(tmp_path: Path) -> None:
    """The model counts user messages and quotes the first one from the session."""
    session = SQLiteSession("history", str(tmp_path / "x.db"))
    agent = make_agent()
    await ask(agent, "hello there", session)
    assert await ask(agent, "How many messages have I sent?", session) == (
        "You have sent 2 messages so far, counting this one."
    )
    assert await ask(agent, "What was my first message?", session) == (
        'Your first message was: "hello there"'
    )
    session.close()


async def test_tool_call_round_trip_runs_the_tool_and_reports_its_output() -> None:
    """A message naming a tool's keyword calls the real tool once and answers with its output."""
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        cities.append(city)
        return f"Sunny in {city}"

    answer = await ask(make_agent(tools=[get_weather]), "What's the weather in Paris?")
    assert cities == ["Paris"]
    assert "Sunny in Paris" in answer


async def test_handoff_moves_the_run_to_the_target_agent() -> None:
    """A message matching a handoff's description hands off and the target agent answers."""
    billing = Agent(
        name="Billing agent",
        instructions="Resolve billing issues.",
        handoff_description="Handles invoices and refunds.",
        model=OfflineModel(),
    )
    triage = make_agent(handoffs=[billing])
    result = await Runner.run(triage, "I need a refund please", run_config=OFFLINE)
    assert result.last_agent is billing
    assert "I need a refund please" in str(result.final_output)


async def test_usage_is_reported_and_adds_up() -> None:
    """Every run reports at least one request and total tokens equal input plus output."""
    result = await Runner.run(make_agent(), "hello", run_config=OFFLINE)
    usage = result.context_wrapper.usage
    assert usage.requests >= 1
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


async def test_identical_runs_give_identical_output() -> None:
    """Two identical runs produce the same final output and the same response ids."""
    first = await Runner.run(make_agent(), "tell me something", run_config=OFFLINE)
    second = await Runner.run(make_agent(), "tell me something", run_config=OFFLINE)
    assert first.final_output == second.final_output
    assert [r.response_id for r in first.raw_responses] == [
        r.response_id for r in second.raw_responses
    ]


async def test_run_streamed_completes_with_the_final_output(tmp_path: Path) -> None:
    """A streamed run emits raw events and ends with the same answer as a plain run."""
    session = SQLiteSession("stream", str(tmp_path / "x.db"))
    agent = make_agent()
    await ask(agent, "call me Grace", session)
    streamed = Runner.run_streamed(agent, "what is my name?", session=session, run_config=OFFLINE)
    event_types = [event.type async for event in streamed.stream_events()]
    assert "raw_response_event" in event_types
    assert streamed.final_output == "Your name is Grace."
    assert streamed.context_wrapper.usage.requests == 1
    session.close()


async def test_session_items_are_json_serialisable(tmp_path: Path) -> None:
    """Messages and tool-call items stored in the session survive a JSON round trip unchanged."""

    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return f"Rain in {city}"

    session = SQLiteSession("items", str(tmp_path / "x.db"))
    await ask(make_agent(tools=[get_weather]), "weather in Oslo?", session)
    items = await session.get_items()
    kinds = [item.get("type", item.get("role")) for item in items]
    assert kinds == ["user", "function_call", "function_call_output", "message"]
    assert json.loads(json.dumps(items)) == items
    session.close()


async def test_provider_serves_offline_model_for_any_name() -> None:
    """The provider lets an agent that names a real model run offline."""
    agent = Agent(name="Assistant", model="gpt-4.1")
    config = RunConfig(model_provider=OfflineModelProvider(), tracing_disabled=True)
    result = await Runner.run(agent, "ping", run_config=config)
    assert result.final_output == "(offline) You said: ping"


def test_resolve_model_uses_the_name_when_an_api_key_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OPENAI_API_KEY set, resolve_model returns a model name."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert resolve_model() == DEFAULT_MODEL_NAME
    assert resolve_model("gpt-4.1") == "gpt-4.1"


def test_resolve_model_falls_back_to_offline_without_an_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without OPENAI_API_KEY (or with it empty), resolve_model returns an OfflineModel."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert isinstance(resolve_model(), OfflineModel)
    monkeypatch.setenv("OPENAI_API_KEY", "")
    assert isinstance(resolve_model("gpt-4.1"), OfflineModel)

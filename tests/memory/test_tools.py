"""The agent integration: real SDK function tools bound to one user's namespace."""

from __future__ import annotations

import json
from pathlib import Path

from agents import Agent, FunctionTool, RunConfig, RunContextWrapper, Runner
from agents.tool_context import ToolContext

from agent_sessions import SQLiteStore
from agent_sessions.memory import MemoryStore, memory_instructions, memory_tools
from agent_sessions.offline import OfflineModel

CONFIG = RunConfig(tracing_disabled=True)
ALICE, BOB = ("users", "alice"), ("users", "bob")


async def invoke(tool: FunctionTool, **arguments: str) -> str:
    """Call a function tool the way the SDK does, with JSON arguments."""
    text = json.dumps(arguments)
    context = ToolContext(None, tool_name=tool.name, tool_call_id="call-1", tool_arguments=text)
    return str(await tool.on_invoke_tool(context, text))


async def test_tools_are_named_function_tools(tmp_path: Path) -> None:
    """Returns remember, recall and forget as SDK FunctionTools with one string parameter."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        tools = memory_tools(store, ALICE)
    assert [t.name for t in tools] == ["remember", "recall", "forget"]
    assert all(isinstance(t, FunctionTool) for t in tools)
    assert [t.params_json_schema["required"] for t in tools] == [["note"], ["query"], ["key"]]


async def test_remember_recall_forget_round_trip(tmp_path: Path) -> None:
    """Stores a note, finds it by its words, and deletes it by the key recall showed."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        remember, recall, forget = memory_tools(store, ALICE)
        saved = await invoke(remember, note="Alice writes her tests with pytest")
        key = saved.split()[2].rstrip(":")
        found = await invoke(recall, query="pytest")
        assert f"[{key}] Alice writes her tests with pytest" in found
        assert await invoke(forget, key=key) == f"Deleted note {key}."
        assert await invoke(forget, key=key) == f"No note has the key {key!r}."
        assert await invoke(recall, query="pytest") == (
            "No notes about the user have been saved yet."
        )


async def test_recall_falls_back_to_the_newest_notes(tmp_path: Path) -> None:
    """Lists the newest notes when no note shares a word with the query."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        remember, recall, _ = memory_tools(store, ALICE)
        await invoke(remember, note="prefers green tea")
        found = await invoke(recall, query="What do you recall about me?")
    assert found.startswith("Nothing matched the query; the newest notes")
    assert "prefers green tea" in found


async def test_tools_never_leave_their_namespace(tmp_path: Path) -> None:
    """Gives Bob's tools nothing of what Alice's tools stored, whatever the query."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        await invoke(memory_tools(store, ALICE)[0], note="Alice's secret plan")
        _, bob_recall, bob_forget = memory_tools(store, BOB)
        assert "secret" not in await invoke(bob_recall, query="secret plan")
        alice_keys = [i.key for i in await store.search(ALICE)]
        await invoke(bob_forget, key=alice_keys[0])
        assert len(await store.search(ALICE)) == 1


async def test_offline_agent_remembers_across_sessions(tmp_path: Path) -> None:
    """Calls remember in one session, and recall finds the note in a new session of the user."""
    path = tmp_path / "app.db"
    async with SQLiteStore(path) as sessions, MemoryStore(path, index=None) as store:
        agent = Agent(name="a", model=OfflineModel(), tools=memory_tools(store, ALICE))
        first = await Runner.run(
            agent,
            "Please remember for next time: detailed explanations suit me best.",
            session=sessions.session("chat-1"),
            run_config=CONFIG,
        )
        assert "Saved note" in str(first.final_output)
        second = await Runner.run(
            agent, "What do you recall about me?", session=sessions.session("chat-2"),
            run_config=CONFIG,
        )  # fmt: skip
        assert "detailed explanations suit me best" in str(second.final_output)
        bob = Agent(name="b", model=OfflineModel(), tools=memory_tools(store, BOB))
        other = await Runner.run(
            bob, "What do you recall about me?", session=sessions.session("chat-3"),
            run_config=CONFIG,
        )  # fmt: skip
        assert "detailed" not in str(other.final_output)


async def test_memory_instructions_carry_the_users_notes(tmp_path: Path) -> None:
    """Appends the user's notes to the instructions, and leaves them alone when there are none."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        await store.put(ALICE, "style", {"text": "likes detailed answers"})
        agent = Agent(name="a")
        context = RunContextWrapper(None)
        alice = await memory_instructions(store, ALICE, "Be helpful.")(context, agent)
        bob = await memory_instructions(store, BOB, "Be helpful.")(context, agent)
    assert alice.startswith("Be helpful.\n")
    assert "- likes detailed answers" in alice
    assert bob == "Be helpful."


async def test_offline_model_calls_remember_when_it_says_it_will(tmp_path: Path) -> None:
    """OfflineModel calls remember before "I'll remember that", so the note is stored once."""
    async with MemoryStore(tmp_path / "m.db", index=None) as store:
        agent = Agent(name="a", model=OfflineModel(), tools=memory_tools(store, ALICE))
        result = await Runner.run(agent, "My name is Alice.", run_config=CONFIG)
        assert result.final_output == "Nice to meet you, Alice! I'll remember that."
        calls = [i.raw_item for i in result.new_items if i.type == "tool_call_item"]
        assert [getattr(c, "name", None) for c in calls] == ["remember"]
        notes = await store.search(ALICE)
        assert [n.value for n in notes] == [{"text": "My name is Alice."}]
        plain = Agent(name="b", model=OfflineModel())  # no memory tools: it only says so
        answer = await Runner.run(plain, "I like green tea.", run_config=CONFIG)
        assert answer.final_output == "Got it: you like green tea. I'll remember that."

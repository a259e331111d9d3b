"""AdvancedSQLiteSession and the SDK's class of that name on one file, in both directions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession as SdkAdvanced
from agents.usage import Usage

from agent_sessions.backends.advanced import AdvancedSQLiteSession
from agent_sessions.backends.advanced.sql import MIGRATIONS, AdvancedStatements
from agent_sessions.schema import TableNames

pytestmark = pytest.mark.sqlite


def user(text: Any) -> Any:
    """Return a user message."""
    return {"role": "user", "content": text}


def assistant(text: str) -> Any:
    """Return an assistant message."""
    return {"role": "assistant", "content": text}


def call(name: str, **extra: Any) -> Any:
    """Return a function call of the tool ``name``."""
    return {
        "type": "function_call",
        "call_id": f"c_{name}",
        "name": name,
        "arguments": "{}",
    } | extra


HISTORY = [user("u1"), assistant("a1"), user("u2"), call("lookup"), assistant("a2")]
HISTORY += [user("u3"), assistant("a3")]
BRANCH = [user("b2"), call("search"), assistant("c2")]


def run_result(tokens: int) -> Any:
    """Return what store_run_usage reads of a run result: its usage."""
    usage = Usage(requests=1, input_tokens=tokens, output_tokens=1, total_tokens=tokens + 1)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def contents(items: list[Any]) -> list[Any]:
    """Return the items' contents (or names)."""
    return [item.get("content", item.get("name")) for item in items]


def branch_sizes(listed: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Return each listed branch's message and user-turn counts."""
    return {b["branch_id"]: (b["message_count"], b["user_turns"]) for b in listed}


async def fill(session: Any) -> None:
    """Write the same history, a branch from turn 2 with items and usage, with either class."""
    await session.add_items(HISTORY)
    await session.store_run_usage(run_result(10))
    await session.create_branch_from_turn(2, "alt")
    await session.add_items(BRANCH)
    await session.store_run_usage(run_result(20))
    await session.switch_to_branch("main")


async def view(session: Any, branch: str) -> dict[str, Any]:
    """Return what a session shows of one branch, with either class."""
    await session.switch_to_branch(branch)
    turns = await session.get_conversation_turns()
    return {
        "items": await session.get_items(),
        "last_two": await session.get_items(2),
        "turns": [(t["turn"], t["content"], t["full_content"]) for t in turns],
        "by_turns": await session.get_conversation_by_turns(),
        "tools": sorted(await session.get_tool_usage()),
        "turn_usage": await session.get_turn_usage(),
        "branch_usage": await session.get_session_usage(branch),
    }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh database file."""
    return tmp_path / "shared.db"


@pytest.mark.parametrize("create_tables", [False, True])
async def test_the_sdks_class_reads_main_of_a_file_ours_wrote(
    path: Path, create_tables: bool
) -> None:
    """The SDK's class sees main's items, turns, tools and usage as ours wrote them."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await fill(ours)
        expected = await view(ours, "main")
        ours_total = await ours.get_session_usage()
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=create_tables)
    try:
        assert await view(sdk, "main") == expected
        assert await sdk.get_session_usage() == ours_total
        listed = branch_sizes(await sdk.list_branches())
        assert listed["main"] == (len(HISTORY), 3)
        # A branch made by ours inherits main's rows by reference: the SDK's class sees only
        # the rows added on it (see docs/schema.md).
        assert listed["alt"] == (len(BRANCH), 1)
        assert await sdk.get_items(branch_id="alt") == BRANCH
    finally:
        sdk.close()


async def test_ours_reads_every_branch_of_a_file_the_sdks_class_wrote(path: Path) -> None:
    """Ours shows the same items, branches, turns, tools and usage as the SDK's class."""
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    try:
        await fill(sdk)
        expected = {branch: await view(sdk, branch) for branch in ("main", "alt")}
        sizes = branch_sizes(await sdk.list_branches())
        total = await sdk.get_session_usage()
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        assert {branch: await view(ours, branch) for branch in ("main", "alt")} == expected
        assert branch_sizes(await ours.list_branches()) == sizes
        assert await ours.get_session_usage() == total
        assert contents(await ours.get_items(branch_id="alt")) == ["u1", "a1", "b2", "search", "c2"]


async def test_ours_writes_on_an_sdk_branch_and_the_sdk_sees_it(path: Path) -> None:
    """Items ours adds to and pops from a branch the SDK made show in the SDK's class."""
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    try:
        await fill(sdk)
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.switch_to_branch("alt")
        assert await ours.pop_item() == assistant("c2")
        await ours.add_items([assistant("ours")])
        await ours.switch_to_branch("main")
        assert await ours.pop_item() == assistant("a3")
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    try:
        assert contents(await sdk.get_items(branch_id="alt")) == [
            "u1",
            "a1",
            "b2",
            "search",
            "ours",
        ]
        assert await sdk.get_items() == HISTORY[:-1]
    finally:
        sdk.close()


async def test_a_branch_made_by_the_sdk_is_forked_by_ours(path: Path) -> None:
    """Ours branches from a branch the SDK's class made and reads it with its parent's rows."""
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    try:
        await fill(sdk)
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.switch_to_branch("alt")
        await ours.create_branch_from_turn(2, "again")
        await ours.add_items([user("z")])
        assert contents(await ours.get_items()) == ["u1", "a1", "z"]
        await ours.delete_branch("alt")
        assert contents(await ours.get_items()) == ["u1", "a1", "z"]


async def test_a_clear_by_ours_sends_an_sdk_object_back_to_main(path: Path) -> None:
    """Clearing with ours moves the SDK's clear generation, as the SDK's own clear does."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await fill(ours)
        sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
        try:
            await sdk.switch_to_branch("alt")
            await ours.clear_session()
            await sdk.add_items([user("after")])
            assert await sdk.get_items(branch_id="main") == [user("after")]
        finally:
            sdk.close()
        assert await ours.get_items() == [user("after")]


async def test_a_file_of_the_previous_version_is_migrated(path: Path) -> None:
    """A file with the first version's branch tables opens with every branch, turn and usage."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "CREATE TABLE agent_sessions (session_id TEXT PRIMARY KEY, "
            "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
            "updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
        )
        conn.execute(
            "CREATE TABLE agent_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "session_id TEXT NOT NULL, message_data TEXT NOT NULL, "
            "created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (session_id) "
            "REFERENCES agent_sessions (session_id) ON DELETE CASCADE)"
        )
        MIGRATIONS[0](conn, AdvancedStatements(TableNames()), lambda text: ("other", None))
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('s')")
        texts = [
            ('{"role":"user","content":"u1"}', "main", 1, "user"),
            ('{"role":"assistant","content":"a1"}', "main", 1, "assistant"),
            ('{"role":"user","content":"u2"}', "main", 2, "user"),
            ('{"role":"user","content":"b2"}', "alt", 2, "user"),
        ]
        for text, branch, turn, kind in texts:
            row_id = conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) VALUES ('s', ?)", (text,)
            ).lastrowid
            conn.execute(
                "INSERT INTO agent_messages_branch_of VALUES (?, 's', ?, ?, ?, NULL)",
                (row_id, branch, turn, kind),
            )
        # A row a plain session wrote, with no branch record: main's.
        conn.execute(
            "INSERT INTO agent_messages (session_id, message_data) "
            """VALUES ('s', '{"role":"assistant","content":"a2"}')"""
        )
        conn.execute(
            "INSERT INTO agent_messages_branches (session_id, branch_id, parent_id, "
            "inherit_below) VALUES ('s', 'main', NULL, 0), ('s', 'alt', 'main', 3)"
        )
        conn.execute("INSERT INTO agent_messages_current VALUES ('s', 'alt')")
        conn.execute(
            "INSERT INTO agent_messages_usage (session_id, branch_id, user_turn, requests, "
            "input_tokens, output_tokens, total_tokens) VALUES ('s', 'alt', 2, 1, 5, 6, 11)"
        )
    conn.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        assert await ours.current_branch() == "alt"
        assert contents(await ours.get_items()) == ["u1", "a1", "b2"]
        assert contents(await ours.get_items(branch_id="main")) == ["u1", "a1", "u2", "a2"]
        assert await ours.get_session_usage() == {
            "requests": 1,
            "input_tokens": 5,
            "output_tokens": 6,
            "total_tokens": 11,
            "total_turns": 1,
        }
        with pytest.raises(ValueError, match="already been used"):
            await ours.create_branch_from_turn(1, "alt")
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "agent_messages_branch_of" not in tables
    assert "agent_messages_usage" not in tables
    sdk = SdkAdvanced(session_id="s", db_path=path)
    try:
        assert contents(await sdk.get_items()) == ["u1", "a1", "u2", "a2"]
        assert [t["turn"] for t in await sdk.get_conversation_turns()] == [1, 2]
    finally:
        sdk.close()


async def test_get_items_reads_a_named_branch_with_a_limit(path: Path) -> None:
    """get_items(limit, branch_id=...) reads that branch, as the SDK's class does."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await fill(ours)
        assert contents(await ours.get_items(2, branch_id="alt")) == ["search", "c2"]
        assert await ours.get_items(branch_id="main") == HISTORY
        assert await ours.current_branch() == "main"
        with pytest.raises(ValueError, match="does not exist"):
            await ours.get_items(branch_id="nope")


TOOL_ITEMS: list[Any] = [
    user("tools"),
    call("lookup", namespace="crm"),
    call("same", namespace="same"),
    {"type": "mcp_call", "id": "m1", "server_label": "files", "name": "read", "arguments": "{}"},
    {"type": "mcp_approval_request", "id": "m2", "server_label": "files", "name": "write"},
    {"type": "tool_search_call", "id": "t1", "arguments": {}},
    {"type": "tool_search_output", "id": "t2", "tools": []},
    {"type": "shell_call", "call_id": "s1", "action": {"commands": ["ls"]}},
    {"type": "apply_patch_call", "call_id": "p1", "operation": {}},
    {"type": "computer_call", "call_id": "k1", "action": {}},
    {"type": "custom_tool_call", "call_id": "q1", "name": "grep", "input": "x"},
    user("search only"),
    {"type": "tool_search_output", "id": "t3", "tools": []},
]


async def test_tool_usage_counts_what_the_sdk_counts(path: Path, tmp_path: Path) -> None:
    """Namespaced, MCP, tool search, shell and patch calls are counted as the SDK counts them."""
    sdk = SdkAdvanced(session_id="s", db_path=tmp_path / "sdk.db", create_tables=True)
    try:
        await sdk.add_items(TOOL_ITEMS)
        expected = sorted(await sdk.get_tool_usage())
        by_turns = await sdk.get_conversation_by_turns()
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.add_items(TOOL_ITEMS)
        assert sorted(await ours.get_tool_usage()) == expected
        assert await ours.get_conversation_by_turns() == by_turns
    assert ("crm.lookup", 1, 1) in expected
    assert ("tool_search", 1, 2) in expected


async def test_turns_give_the_original_content(path: Path) -> None:
    """full_content is the content as stored (a list of parts stays a list), as in the SDK."""
    parts = [{"type": "input_text", "text": "look " + "x" * 120}]
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.add_items([user(parts)])
        (turn,) = await ours.get_conversation_turns()
        assert turn["full_content"] == parts
        assert isinstance(turn["content"], str)
        assert turn["content"].endswith("...")
        (found,) = await ours.find_turns_by_content("LOOK")
        assert found["full_content"] == parts


async def test_branch_names_the_sdk_accepts_are_accepted(path: Path) -> None:
    """A name with spaces or non-ASCII letters is kept as given; a blank one is refused."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.add_items([user("u1"), user("u2")])
        assert await ours.create_branch_from_turn(2, " draft ") == " draft "
        assert await ours.create_branch_from_turn(1, "brouillon é") == "brouillon é"
        assert {b["branch_id"] for b in await ours.list_branches()} == {
            "main",
            " draft ",
            "brouillon é",
        }
        await ours.switch_to_branch(" draft ")
        assert contents(await ours.get_items()) == ["u1"]
        with pytest.raises(ValueError, match="blank"):
            await ours.create_branch_from_turn(1, " \t")


async def test_branch_calls_with_none_raise_type_error(path: Path) -> None:
    """switch_to_branch(None) and delete_branch(None) are usage errors, before any SQL."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.add_items([user("u1")])
        with pytest.raises(TypeError, match="branch_id must be a str"):
            await ours.switch_to_branch(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="branch_id must be a str"):
            await ours.delete_branch(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="branch_name must be a str"):
            await ours.create_branch_from_turn(1, 5)  # type: ignore[arg-type]
        assert await ours.current_branch() == "main"


async def test_usage_on_a_branch_with_no_turn_is_not_recorded(path: Path) -> None:
    """store_run_usage on a session with no user turn records nothing, as in the SDK."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.store_run_usage(run_result(5))
        assert await ours.get_session_usage() is None
        await ours.add_items([assistant("no user yet")])
        await ours.store_run_usage(run_result(5))
        assert await ours.get_session_usage() is None
        assert await ours.get_turn_usage() == []


async def test_a_popped_turn_loses_its_usage(path: Path) -> None:
    """Popping every item of a turn drops that turn's usage, as in the SDK."""
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        await ours.add_items([user("u1"), assistant("a1")])
        await ours.store_run_usage(run_result(5))
        await ours.add_items([user("u2")])
        await ours.store_run_usage(run_result(7))
        await ours.pop_item()
        listed = await ours.get_turn_usage()
        assert isinstance(listed, list)
        assert [t["user_turn_number"] for t in listed] == [1]


async def test_one_branch_name_is_granted_once_across_objects(path: Path) -> None:
    """Objects with their own connections racing for one new branch name: exactly one wins."""
    sessions = [AdvancedSQLiteSession(session_id="s", db_path=path) for _ in range(4)]
    try:
        await sessions[0].add_items([user("u1"), assistant("a1")])
        results = await asyncio.gather(
            *(s.create_branch_from_turn(1, "race") for s in sessions), return_exceptions=True
        )
        assert results.count("race") == 1
        # The losers see the winner's switch (the current branch is shared) or its name.
        assert all(isinstance(r, ValueError) for r in results if r != "race")
        assert [b["branch_id"] for b in await sessions[1].list_branches()] == ["main", "race"]
    finally:
        for session in sessions:
            await session.aclose()


async def test_popping_main_keeps_items_an_sdk_branch_copied(path: Path) -> None:
    """Ours emptying main of an SDK file leaves the items the SDK's branch holds copies of."""
    sdk = SdkAdvanced(session_id="s", db_path=path, create_tables=True)
    try:
        await fill(sdk)
    finally:
        sdk.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as ours:
        while await ours.pop_item() is not None:
            pass
        assert await ours.get_items() == []
        assert contents(await ours.get_items(branch_id="alt")) == ["u1", "a1", "b2", "search", "c2"]
    sdk = SdkAdvanced(session_id="s", db_path=path)
    try:
        assert await sdk.get_items() == []
        assert contents(await sdk.get_items(branch_id="alt")) == ["u1", "a1", "b2", "search", "c2"]
    finally:
        sdk.close()

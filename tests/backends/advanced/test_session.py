"""What only AdvancedSQLiteSession has: copy-free branches, turns and usage."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner

from agent_sessions.backends.advanced import AdvancedSQLiteSession
from agent_sessions.offline import OfflineModel
from tests.conftest import write_raw_sqlite

pytestmark = pytest.mark.sqlite


def user(text: str) -> dict[str, Any]:
    """Return a user message."""
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    """Return an assistant message."""
    return {"role": "assistant", "content": text}


def call(name: str) -> dict[str, Any]:
    """Return a function call of the tool ``name``."""
    return {"type": "function_call", "call_id": f"c_{name}", "name": name, "arguments": "{}"}


def turns(n: int) -> list[dict[str, Any]]:
    """Return ``n`` user/assistant pairs: u1, a1, u2, a2, ..."""
    items: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        items += [user(f"u{i}"), assistant(f"a{i}")]
    return items


def contents(items: list[Any]) -> list[str]:
    """Return the items' contents."""
    return [item["content"] for item in items]


def message_rows(path: Path) -> int:
    """Count every row of the messages table."""
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM agent_messages").fetchone()
    finally:
        conn.close()
    return int(count)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh database file."""
    return tmp_path / "advanced.db"


@pytest.fixture
def opener(path: Path) -> Callable[[str], AdvancedSQLiteSession]:
    """Open sessions on the one file."""
    return lambda sid: AdvancedSQLiteSession(session_id=sid, db_path=path, create_tables=True)


@pytest.fixture
async def session(
    opener: Callable[[str], AdvancedSQLiteSession],
) -> AsyncIterator[AdvancedSQLiteSession]:
    """A session with three user turns stored on main."""
    async with opener("s") as session:
        await session.add_items(turns(3))  # type: ignore[arg-type]
        yield session


async def test_branch_from_turn_holds_items_before_the_turn(
    session: AdvancedSQLiteSession,
) -> None:
    """A branch from turn 2 holds exactly the items before turn 2 and becomes current."""
    branch = await session.create_branch_from_turn(2, "alt")
    assert branch == "alt"
    assert await session.current_branch() == "alt"
    assert contents(await session.get_items()) == ["u1", "a1"]


async def test_default_branch_name_names_the_turn(session: AdvancedSQLiteSession) -> None:
    """An unnamed branch gets an id naming the turn it was forked from."""
    branch = await session.create_branch_from_turn(3)
    assert branch.startswith("branch_from_turn_3_")


async def test_adding_on_a_branch_leaves_main_unchanged(session: AdvancedSQLiteSession) -> None:
    """Items added on a branch are seen there and not on main."""
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("other"), assistant("reply")])  # type: ignore[list-item]
    assert contents(await session.get_items()) == ["u1", "a1", "other", "reply"]
    await session.switch_to_branch("main")
    assert contents(await session.get_items()) == contents(turns(3))


async def test_pops_on_a_branch_leave_main_unchanged(session: AdvancedSQLiteSession) -> None:
    """Popping own and inherited items on a branch hides them on the branch only."""
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("x")])  # type: ignore[list-item]
    popped = [await session.pop_item() for _ in range(3)]
    assert contents(popped) == ["x", "a2", "u2"]
    assert contents(await session.get_items()) == ["u1", "a1"]
    await session.switch_to_branch("main")
    assert contents(await session.get_items()) == contents(turns(3))


async def test_popping_an_inherited_item_hides_it_on_the_branch_only(
    session: AdvancedSQLiteSession, path: Path
) -> None:
    """An inherited item popped on a branch stays stored for its parent."""
    await session.create_branch_from_turn(2, "alt")
    before = message_rows(path)
    assert (await session.pop_item()) == assistant("a1")
    assert message_rows(path) == before
    assert contents(await session.get_items()) == ["u1"]
    await session.add_items([assistant("b1")])  # type: ignore[list-item]
    assert contents(await session.get_items()) == ["u1", "b1"]
    await session.switch_to_branch("main")
    assert contents(await session.get_items(2)) == ["u3", "a3"]


async def test_restore_undoes_a_pop_on_a_branch(
    opener: Callable[[str], AdvancedSQLiteSession],
) -> None:
    """The store's restore puts back an own row and re-exposes a hidden inherited row."""
    async with opener("r") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        await session.add_items([user("x")])  # type: ignore[list-item]
        store = session._advanced  # noqa: SLF001 - the restore path runs only on cancellation
        decode = session._decode_for_pop  # noqa: SLF001
        own = await store.pop("r", decode)
        inherited = await store.pop("r", decode)
        assert own is not None
        assert inherited is not None
        assert contents(await session.get_items()) == ["u1"]
        await store.restore("r", [inherited])
        await store.restore("r", [own])
        assert contents(await session.get_items()) == ["u1", "a1", "x"]
        assert await session.get_conversation_by_turns() == {
            1: [{"type": "user", "tool_name": None}, {"type": "assistant", "tool_name": None}],
            2: [{"type": "user", "tool_name": None}],
        }


async def test_corrupt_rows_on_a_branch_are_kept(
    session: AdvancedSQLiteSession, path: Path
) -> None:
    """An undecodable row is skipped by reads and pops of the branch and never deleted."""
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("x")])  # type: ignore[list-item]
    conn = sqlite3.connect(path)
    with conn:
        row_id = conn.execute(
            "INSERT INTO agent_messages (session_id, message_data) VALUES ('s', 'not json')"
        ).lastrowid
        conn.execute(
            "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
            "sequence_number, user_turn_number, branch_turn_number) "
            "VALUES ('s', ?, 'alt', 'other', 99, 3, 3)",
            (row_id,),
        )
    conn.close()
    before = message_rows(path)
    assert contents(await session.get_items()) == ["u1", "a1", "u2", "a2", "x"]
    assert (await session.pop_item()) == user("x")
    assert message_rows(path) == before - 1
    assert contents(await session.get_items(1)) == ["a2"]


async def test_nested_branches_apply_the_smallest_cutoff(session: AdvancedSQLiteSession) -> None:
    """A branch of a branch inherits its parent's history below both cutoffs."""
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("b3"), assistant("c3")])  # type: ignore[list-item]
    await session.create_branch_from_turn(3, "deeper")
    assert contents(await session.get_items()) == ["u1", "a1", "u2", "a2"]
    await session.add_items([user("d3")])  # type: ignore[list-item]
    assert contents(await session.get_items(3)) == ["u2", "a2", "d3"]


async def test_clear_on_a_branch_empties_it_and_keeps_main(session: AdvancedSQLiteSession) -> None:
    """Clearing a branch drops its items and its inheritance; main keeps its items."""
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("x")])  # type: ignore[list-item]
    await session.clear_session()
    assert await session.get_items() == []
    await session.switch_to_branch("main")
    assert contents(await session.get_items()) == contents(turns(3))


async def test_clear_on_main_deletes_every_branch(
    session: AdvancedSQLiteSession, path: Path
) -> None:
    """Clearing main deletes every item and branch of the session."""
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("x")])  # type: ignore[list-item]
    await session.switch_to_branch("main")
    await session.clear_session()
    assert message_rows(path) == 0
    assert [b["branch_id"] for b in await session.list_branches()] == ["main"]


async def test_list_branches_counts_visible_history(session: AdvancedSQLiteSession) -> None:
    """Listing gives each branch's visible message and user-turn counts, and the current one."""
    await session.create_branch_from_turn(2, "alt")
    listed = {b["branch_id"]: b for b in await session.list_branches()}
    assert set(listed) == {"main", "alt"}
    assert (listed["main"]["message_count"], listed["main"]["user_turns"]) == (6, 3)
    assert (listed["alt"]["message_count"], listed["alt"]["user_turns"]) == (2, 1)
    assert listed["alt"]["is_current"]
    assert not listed["main"]["is_current"]
    assert set(listed["alt"]) == {
        "branch_id",
        "message_count",
        "user_turns",
        "created_at",
        "is_current",
    }


async def test_branch_errors(session: AdvancedSQLiteSession) -> None:
    """Unknown turns, blank or used names and unknown branches raise ValueError."""
    with pytest.raises(ValueError, match="Turn 4 does not contain a user message"):
        await session.create_branch_from_turn(4)
    with pytest.raises(ValueError, match="Turn 0 does not contain a user message"):
        await session.create_branch_from_turn(0)
    with pytest.raises(ValueError, match="empty or blank"):
        await session.create_branch_from_turn(1, "  ")
    with pytest.raises(ValueError, match="already been used"):
        await session.create_branch_from_turn(1, "main")
    with pytest.raises(ValueError, match="does not exist"):
        await session.switch_to_branch("nope")
    with pytest.raises(ValueError, match="does not exist"):
        await session.delete_branch("nope")
    with pytest.raises(ValueError, match="no user turn contains"):
        await session.create_branch_from_content("absent")


async def test_delete_rules(session: AdvancedSQLiteSession) -> None:
    """Main is never deleted, the current branch needs force, and deleting leaves the rest."""
    with pytest.raises(ValueError, match="'main' branch cannot be deleted"):
        await session.delete_branch("main")
    await session.create_branch_from_turn(2, "alt")
    await session.create_branch_from_turn(1, "child")
    with pytest.raises(ValueError, match="force=True"):
        await session.delete_branch("child")
    await session.delete_branch("child", force=True)
    assert await session.current_branch() == "main"
    await session.delete_branch("alt")
    assert [b["branch_id"] for b in await session.list_branches()] == ["main"]
    assert contents(await session.get_items()) == contents(turns(3))


async def test_branch_creation_copies_no_rows(session: AdvancedSQLiteSession, path: Path) -> None:
    """Creating a branch adds no rows to the messages table."""
    before = message_rows(path)
    await session.create_branch_from_turn(3, "alt")
    await session.create_branch_from_turn(2, "alt2")
    assert message_rows(path) == before


async def test_bounded_read_on_a_branch_of_a_long_history(
    opener: Callable[[str], AdvancedSQLiteSession],
) -> None:
    """get_items(20) on a branch of a 5,000-item history returns the right 20 items."""
    async with opener("long") as session:
        await session.add_items(turns(2500))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2000, "late")
        expected = contents(turns(1999))[-20:]
        assert contents(await session.get_items(20)) == expected
        await session.add_items([user("new")])  # type: ignore[list-item]
        assert contents(await session.get_items(20)) == [*expected[1:], "new"]


async def test_other_objects_see_branch_changes(
    opener: Callable[[str], AdvancedSQLiteSession], session: AdvancedSQLiteSession
) -> None:
    """A second object on the same file sees a branch created and switched by the first."""
    async with opener("s") as other:
        await session.create_branch_from_turn(2, "alt")
        assert await other.current_branch() == "alt"
        assert contents(await other.get_items()) == ["u1", "a1"]
        await session.switch_to_branch("main")
        assert len(await other.get_items()) == 6


async def test_turn_queries_shapes(opener: Callable[[str], AdvancedSQLiteSession]) -> None:
    """Turns, content search and grouping by turn return the SDK's shapes."""
    async with opener("t") as session:
        long_text = "weather " + "x" * 200
        items = [user("hello"), assistant("hi"), user(long_text), call("get_weather")]
        await session.add_items(items)  # type: ignore[arg-type]
        listed = await session.get_conversation_turns()
        assert [t["turn"] for t in listed] == [1, 2]
        assert listed[1]["content"] == long_text[:100] + "..."
        assert listed[1]["full_content"] == long_text
        assert listed[0]["can_branch"] is True
        assert listed[0]["timestamp"] is not None
        found = await session.find_turns_by_content("WEATHER")
        assert [t["turn"] for t in found] == [2]
        assert await session.get_conversation_by_turns() == {
            1: [{"type": "user", "tool_name": None}, {"type": "assistant", "tool_name": None}],
            2: [
                {"type": "user", "tool_name": None},
                {"type": "function_call", "tool_name": "get_weather"},
            ],
        }
        assert await session.get_tool_usage() == [("get_weather", 1, 2)]
        branch = await session.create_branch_from_content("weather", "w")
        assert branch == "w"
        assert contents(await session.get_items()) == ["hello", "hi"]


async def test_usage_sums_match_the_runs(opener: Callable[[str], AdvancedSQLiteSession]) -> None:
    """Usage stored after two real runs sums to the runs' own usage totals."""
    agent = Agent(name="a", model=OfflineModel())
    config = RunConfig(tracing_disabled=True)
    async with opener("u") as session:
        assert await session.get_session_usage() is None
        results = []
        for prompt in ("My name is Ada", "What is my name?"):
            result = await Runner.run(agent, prompt, session=session, run_config=config)
            await session.store_run_usage(result)
            results.append(result.context_wrapper.usage)
        totals = await session.get_session_usage()
        assert totals == {
            "requests": sum(u.requests for u in results),
            "input_tokens": sum(u.input_tokens for u in results),
            "output_tokens": sum(u.output_tokens for u in results),
            "total_tokens": sum(u.total_tokens for u in results),
            "total_turns": 2,
        }
        by_turn = await session.get_turn_usage()
        assert isinstance(by_turn, list)
        assert [t["user_turn_number"] for t in by_turn] == [1, 2]
        assert [t["total_tokens"] for t in by_turn] == [u.total_tokens for u in results]
        second = await session.get_turn_usage(2)
        assert isinstance(second, dict)
        assert second["input_tokens"] == results[1].input_tokens
        assert isinstance(second["input_tokens_details"], dict)
        assert await session.get_turn_usage(9) == {}
        assert await session.get_session_usage("main") == totals


async def test_sdk_written_rows_count_as_main(path: Path) -> None:
    """Rows with no branch record (as the SDK writes them) are main's, with their turns."""
    async with AdvancedSQLiteSession(session_id="sdk", db_path=path) as session:
        await session.add_items([user("seed")])  # type: ignore[list-item]
    write_raw_sqlite(path, "sdk", '{"role":"assistant","content":"raw"}')
    write_raw_sqlite(path, "sdk", '{"role":"user","content":"raw2"}')
    async with AdvancedSQLiteSession(session_id="sdk", db_path=path) as session:
        assert contents(await session.get_items()) == ["seed", "raw", "raw2"]
        await session.add_items([assistant("after")])  # type: ignore[list-item]
        assert await session.get_conversation_by_turns() == {
            1: [{"type": "user", "tool_name": None}, {"type": "assistant", "tool_name": None}],
            2: [{"type": "user", "tool_name": None}, {"type": "assistant", "tool_name": None}],
        }
        await session.create_branch_from_turn(2, "b")
        assert contents(await session.get_items()) == ["seed", "raw"]


def test_close_is_idempotent(path: Path) -> None:
    """close() may be called twice."""
    session = AdvancedSQLiteSession(session_id="c", db_path=path)
    session.close()
    session.close()


def test_unknown_keyword_is_refused(path: Path) -> None:
    """An unknown keyword argument raises TypeError."""
    with pytest.raises(TypeError, match="unexpected keyword"):
        AdvancedSQLiteSession(session_id="c", db_path=path, bogus=1)


async def test_undo_past_a_fork_point_leaves_the_fork_whole(session: AdvancedSQLiteSession) -> None:
    """Popping on main past the point a branch was made from leaves the branch's history."""
    await session.create_branch_from_turn(2, "alt")
    await session.add_items([user("x")])  # type: ignore[list-item]
    await session.switch_to_branch("main")
    popped = [await session.pop_item() for _ in range(6)]
    assert contents(popped) == ["a3", "u3", "a2", "u2", "a1", "u1"]
    assert await session.get_items() == []
    assert contents(await session.get_items(branch_id="alt")) == ["u1", "a1", "x"]
    await session.switch_to_branch("alt")
    assert contents(await session.get_items()) == ["u1", "a1", "x"]
    assert [t["turn"] for t in await session.get_conversation_turns()] == [1, 2]


async def test_clearing_a_branch_with_forks_leaves_the_forks(
    session: AdvancedSQLiteSession,
) -> None:
    """Clearing a branch that another branch was made from empties it alone."""
    await session.create_branch_from_turn(3, "parent")
    await session.create_branch_from_turn(2, "child")
    await session.switch_to_branch("parent")
    await session.clear_session()
    assert await session.get_items() == []
    await session.switch_to_branch("child")
    assert contents(await session.get_items()) == ["u1", "a1"]
    await session.switch_to_branch("main")
    assert contents(await session.get_items()) == contents(turns(3))


async def test_deleting_a_forked_branch_keeps_its_forks(session: AdvancedSQLiteSession) -> None:
    """A branch made from a deleted branch keeps showing what it showed, and can grow."""
    await session.create_branch_from_turn(3, "alt")
    await session.add_items([user("b3"), assistant("c3"), user("b4")])  # type: ignore[list-item]
    await session.create_branch_from_turn(4, "child")
    await session.add_items([user("d4")])  # type: ignore[list-item]
    await session.delete_branch("alt")
    expected = ["u1", "a1", "u2", "a2", "b3", "c3", "d4"]
    assert contents(await session.get_items()) == expected
    assert [t["turn"] for t in await session.get_conversation_turns()] == [1, 2, 3, 4]
    ids = [b["branch_id"] for b in await session.list_branches()]
    assert ids == ["main", "child"]
    await session.pop_item()
    await session.pop_item()
    assert contents(await session.get_items()) == expected[:5]
    await session.switch_to_branch("main")
    assert contents(await session.get_items()) == contents(turns(3))


async def test_deleted_branch_ids_are_never_reused(session: AdvancedSQLiteSession) -> None:
    """A deleted branch's id, and main's after a clear, cannot name a new branch."""
    await session.create_branch_from_turn(2, "alt")
    await session.delete_branch("alt", force=True)
    with pytest.raises(ValueError, match="already been used"):
        await session.create_branch_from_turn(2, "alt")
    await session.create_branch_from_turn(2, "other")
    await session.switch_to_branch("main")
    await session.clear_session()
    await session.add_items(turns(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already been used"):
        await session.create_branch_from_turn(1, "other")

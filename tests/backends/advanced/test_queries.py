"""AdvancedSQLiteSession's whole-history queries agree with the branch's visible items."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sessions.backends.advanced import AdvancedSQLiteSession
from agent_sessions.errors import CorruptItemError
from tests.backends.advanced.test_session import assistant, call, turns, user
from tests.conftest import write_raw_sqlite

pytestmark = pytest.mark.sqlite

Opener = Callable[..., AdvancedSQLiteSession]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A fresh database file."""
    return tmp_path / "queries.db"


@pytest.fixture
def opener(path: Path) -> Opener:
    """Open sessions on the one file."""
    return lambda sid, **kw: AdvancedSQLiteSession(session_id=sid, db_path=path, **kw)


class Expected:
    """What every turn query should say, worked out from a branch's items in order."""

    def __init__(self, items: list[Any]) -> None:
        self.count = len(items)
        self.users: list[tuple[int, str]] = []
        self.by_turn: dict[int, list[dict[str, str | None]]] = {}
        tools: dict[tuple[int, str], int] = {}
        turn = 0
        for item in items:
            role, kind = item.get("role"), item.get("type")
            kind = role if role in ("user", "assistant") else kind
            tool = item.get("name") if str(kind).endswith("_call") else None
            turn += kind == "user"
            if kind == "user":
                self.users.append((turn, item["content"]))
            self.by_turn.setdefault(turn, []).append({"type": kind, "tool_name": tool})
            if tool is not None:
                tools[turn, tool] = tools.get((turn, tool), 0) + 1
        self.tools = [(tool, n, turn) for (turn, tool), n in sorted(tools.items())]


def names(items: list[Any]) -> list[str]:
    """Return each item's content, or its tool name for a call."""
    return [item.get("content") or item["name"] for item in items]


async def check_branch(session: AdvancedSQLiteSession, branch: str) -> None:
    """Assert that every turn query on ``branch`` matches its visible items."""
    current = await session.current_branch()
    await session.switch_to_branch(branch)
    expected = Expected(await session.get_items())
    await session.switch_to_branch(current)
    listed = {b["branch_id"]: b for b in await session.list_branches()}
    assert (listed[branch]["message_count"], listed[branch]["user_turns"]) == (
        expected.count,
        len(expected.users),
    )
    found = await session.get_conversation_turns(branch)
    assert [(t["turn"], t["full_content"]) for t in found] == expected.users
    assert await session.get_conversation_by_turns(branch) == expected.by_turn
    assert await session.get_tool_usage(branch) == expected.tools
    matches = await session.find_turns_by_content("ALT", branch)
    assert [t["turn"] for t in matches] == [t for t, text in expected.users if "alt" in text]


@pytest.mark.parametrize("sdk_rows", [False, True], ids=["ours", "with-sdk-rows"])
async def test_turn_queries_follow_nested_branches(
    opener: Opener, path: Path, sdk_rows: bool
) -> None:
    """Sizes, turns, grouping and tool counts match each branch's items, through every cutoff."""
    async with opener("q") as session:
        await session.add_items([user("seed"), call("search")])  # type: ignore[list-item]
    if sdk_rows:  # rows with no branch record, as the SDK's SQLiteSession writes them
        write_raw_sqlite(path, "q", json.dumps(call("lookup")))
        write_raw_sqlite(path, "q", json.dumps(user("sdk user")))
        write_raw_sqlite(path, "q", json.dumps(assistant("sdk reply")))
    async with opener("q") as session:
        items = [call("search"), assistant("a"), user("u3"), call("fetch"), call("fetch")]
        await session.add_items([*items, assistant("b"), user("u4"), call("search")])  # type: ignore[list-item]
        await session.create_branch_from_turn(3 if sdk_rows else 2, "alt")
        await session.add_items([user("alt one"), call("alt_tool"), assistant("x")])  # type: ignore[list-item]
        await session.add_items([user("alt two"), call("alt_tool")])  # type: ignore[list-item]
        turn = len(await session.get_conversation_turns())
        await session.create_branch_from_turn(turn, "deep")
        await session.add_items([user("deep"), call("deep_tool")])  # type: ignore[list-item]
        for _ in range(3):  # two own rows, then one inherited from alt: the cutoff moves
            await session.pop_item()
        await session.add_items([user("alt three"), call("search"), call("search")])  # type: ignore[list-item]
        sdk = ["lookup", "sdk user", "sdk reply"] if sdk_rows else []
        inherited = ["seed", "search", *sdk, "search", "a"]
        assert names(await session.get_items()) == [
            *inherited,
            *["alt one", "alt_tool"],
            *["alt three", "search", "search"],
        ]
        for branch in ("main", "alt", "deep"):
            await check_branch(session, branch)


async def test_turn_queries_on_an_empty_branch(opener: Opener) -> None:
    """A branch whose cutoff is 0 after a clear has no turns, items or tool calls."""
    async with opener("e") as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        await session.clear_session()
        await check_branch(session, "alt")
        assert await session.get_conversation_turns() == []
        assert await session.get_conversation_by_turns() == {}


async def test_turn_queries_name_unknown_branches(opener: Opener) -> None:
    """Every turn query raises ValueError for a branch that does not exist."""
    async with opener("n") as session:
        await session.add_items(turns(1))  # type: ignore[arg-type]
        for query in (
            session.get_conversation_turns,
            session.get_conversation_by_turns,
            session.get_tool_usage,
            session.get_turn_usage,
        ):
            with pytest.raises(ValueError, match="'nope' does not exist"):
                await query(branch_id="nope")  # type: ignore[operator]


def corrupt_user_row(path: Path, content: str) -> None:
    """Overwrite the stored text of the user message ``content``, keeping its branch record."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE agent_messages SET message_data = '{not json' WHERE message_data = ?",
            (json.dumps(user(content), separators=(",", ":")),),
        )
    conn.close()


async def test_undecodable_user_turn_is_skipped_with_a_warning_on_the_logger(
    opener: Opener, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An undecodable user message is left out with a warning on the session's own logger."""
    logger = logging.getLogger("my.app.sessions")
    async with opener("w", logger=logger) as session:
        await session.add_items(turns(3))  # type: ignore[arg-type]
        corrupt_user_row(path, "u2")
        with caplog.at_level(logging.WARNING, logger="my.app.sessions"):
            found = await session.get_conversation_turns()
        assert [(t["turn"], t["full_content"]) for t in found] == [(1, "u1"), (3, "u3")]
        assert [r.name for r in caplog.records] == ["my.app.sessions"]
        assert "undecodable user turn 2" in caplog.text
        assert [t["turn"] for t in await session.find_turns_by_content("u3")] == [3]


async def test_undecodable_user_turn_raises_when_strict(opener: Opener, path: Path) -> None:
    """A strict session raises CorruptItemError on an undecodable user message."""
    async with opener("s", strict=True) as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        corrupt_user_row(path, "u1")
        with pytest.raises(CorruptItemError, match="'s'"):
            await session.get_conversation_turns()


async def test_branch_changes_are_logged_at_debug_on_the_logger(
    opener: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating, switching and deleting a branch each leave a debug record on the logger."""
    logger = logging.getLogger("my.app.branches")
    async with opener("d", logger=logger) as session:
        await session.add_items(turns(2))  # type: ignore[arg-type]
        with caplog.at_level(logging.DEBUG, logger="my.app.branches"):
            await session.create_branch_from_turn(2, "alt")
            await session.switch_to_branch("main")
            await session.delete_branch("alt")
        messages = [r.getMessage() for r in caplog.records if r.name == "my.app.branches"]
        assert messages == [
            "session 'd': created branch 'alt' from turn 2 and switched to it",
            "session 'd': switched to branch 'main'",
            "session 'd': deleted branch 'alt'",
        ]


async def test_create_tables_false_still_creates_the_tables(opener: Opener, path: Path) -> None:
    """create_tables=False (the default) opens a fresh file and creates the branch tables."""
    async with opener("f", create_tables=False) as session:
        assert await session.current_branch() == "main"
        await session.add_items(turns(2))  # type: ignore[arg-type]
        await session.create_branch_from_turn(2, "alt")
        assert [b["branch_id"] for b in await session.list_branches()] == ["main", "alt"]
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"message_structure", "turn_usage", "agent_messages_branches"} <= tables


async def test_branching_follows_the_turn_numbers_shown_after_old_rows_go(
    opener: Opener, path: Path
) -> None:
    """After the oldest rows are deleted, turns renumber and branching follows the new numbers."""
    async with opener("p") as session:
        await session.add_items(turns(3))  # type: ignore[arg-type]
        first_turn = "SELECT id FROM agent_messages ORDER BY id LIMIT 2"
        conn = sqlite3.connect(path)
        with conn:  # as a purge of expired items does
            conn.execute(f"DELETE FROM agent_messages WHERE id IN ({first_turn})")
        conn.close()
        found = await session.get_conversation_turns()
        assert [(t["turn"], t["full_content"]) for t in found] == [(1, "u2"), (2, "u3")]
        await session.create_branch_from_turn(2, "alt")
        assert [item["content"] for item in await session.get_items()] == ["u2", "a2"]
        await session.switch_to_branch("main")
        with pytest.raises(ValueError, match="it has 2 user turn"):
            await session.create_branch_from_turn(3)

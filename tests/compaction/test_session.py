"""CompactingSession: what it summarises, what it keeps, and when it compacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest
from agents import Agent, RunConfig
from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession as SDKSQLAlchemySession
from agents.memory import SQLiteSession as SDKSQLiteSession
from agents.memory.session import OpenAIResponsesCompactionAwareSession
from agents.memory.session_settings import SessionSettings

from agent_sessions import SQLiteSession
from agent_sessions.compaction import (
    SUMMARY_PREFIX,
    CompactingSession,
    chars_per_token_estimate,
    cut_index,
    estimate_tokens,
    transcript,
)
from agent_sessions.offline import OfflineModel
from tests.conftest import write_raw_sqlite

from .kit import Item, Recorder, call, contents, msg, output, turns

pytestmark = pytest.mark.sqlite

NO_TRACING = RunConfig(tracing_disabled=True)


class ListSession:
    """Another package's session: a plain list, with no transaction and no hooks."""

    session_settings: SessionSettings | None = None

    def __init__(self, session_id: str = "s") -> None:
        self.session_id = session_id
        self.items: list[Item] = []
        self.fail_next_add = False

    async def get_items(self, limit: int | None = None) -> list[Item]:
        """Return the newest ``limit`` items."""
        return list(self.items if limit is None else self.items[-limit:])

    async def add_items(self, items: list[Item]) -> None:
        """Append items, or fail once when told to."""
        if self.fail_next_add:
            self.fail_next_add = False
            raise RuntimeError("disk full")
        self.items += items

    async def pop_item(self) -> Item | None:
        """Remove the newest item."""
        return self.items.pop() if self.items else None

    async def clear_session(self) -> None:
        """Forget everything."""
        self.items = []


@pytest.fixture
async def sqlite_session(tmp_path: Path) -> Any:
    """One of our SQLite sessions on a fresh file."""
    session = SQLiteSession("s", tmp_path / "chats.db")
    yield session
    await session.aclose()


def test_is_the_sdks_compaction_aware_session() -> None:
    """Satisfies the SDK's runtime-checkable compaction-aware protocol, so Runner calls it."""
    session = CompactingSession(ListSession(), summarizer=Recorder())
    assert isinstance(session, OpenAIResponsesCompactionAwareSession)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"keep_last_turns": 0}, ValueError),
        ({"keep_last_turns": True}, TypeError),
        ({"keep_last_turns": 1.5}, TypeError),
        ({"token_budget": -1}, ValueError),
        ({"token_budget": "big"}, TypeError),
        ({"summarizer": 42}, TypeError),
    ],
)
def test_refuses_bad_arguments(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Refuses a keep count below 1 or not an int, a bad budget, and a summariser of no use."""
    arguments: dict[str, Any] = {"summarizer": Recorder(), **kwargs}
    with pytest.raises(error):
        CompactingSession(ListSession(), **arguments)


async def test_delegates_the_session_protocol(sqlite_session: SQLiteSession) -> None:
    """Reads, writes, pops and clears go to the underlying session."""
    session = CompactingSession(sqlite_session, summarizer=Recorder())
    assert session.session_id == "s"
    await session.add_items(turns(2))
    assert await session.get_items() == await sqlite_session.get_items()
    assert await session.get_items(1) == [msg("answer 1", "assistant")]
    assert await session.pop_item() == msg("answer 1", "assistant")
    await session.clear_session()
    assert await sqlite_session.get_items() == []


async def test_public_attributes_come_from_the_underlying_session(
    sqlite_session: SQLiteSession,
) -> None:
    """``prune``, ``pop_turn`` and the like reach the wrapped session; private hooks do not."""
    session = CompactingSession(sqlite_session, summarizer=Recorder())
    await session.add_items(turns(3))
    assert await session.pop_turn() == turns(1, 2)
    report = await session.prune(keep_last_turns=1)
    assert report.removed_turns == 1
    assert not hasattr(session, "_get_compaction_snapshot")
    assert not hasattr(session, "_defer_compaction")
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = session.no_such_thing


async def test_closing_closes_the_underlying_session(tmp_path: Path) -> None:
    """``async with`` closes the session it wraps."""
    inner = SQLiteSession("s", tmp_path / "chats.db")
    async with CompactingSession(inner, summarizer=Recorder()) as session:
        await session.add_items(turns(1))
    assert inner.state.name == "CLOSED"


async def test_forced_compaction_keeps_the_newest_turns(sqlite_session: SQLiteSession) -> None:
    """Older turns become the summariser's items; the newest keep_last_turns stay verbatim."""
    summarizer = Recorder()
    session = CompactingSession(sqlite_session, summarizer=summarizer, keep_last_turns=2)
    await session.add_items([msg("be brief", "system"), *turns(5)])
    assert await session.compact(force=True)
    assert summarizer.calls == [[msg("be brief", "system"), *turns(3)]]
    assert await sqlite_session.get_items() == [msg("summary of 7 items", "system"), *turns(2, 3)]


async def test_compacting_again_summarises_the_summary(sqlite_session: SQLiteSession) -> None:
    """A later compaction hands the earlier summary to the summariser with the turns after it."""
    summarizer = Recorder()
    session = CompactingSession(sqlite_session, summarizer=summarizer, keep_last_turns=1)
    await session.add_items(turns(3))
    assert await session.compact(force=True)
    await session.add_items(turns(1, 3))
    assert await session.compact(force=True)
    assert summarizer.calls[1] == [msg("summary of 4 items", "system"), *turns(1, 2)]
    assert await session.get_items() == [msg("summary of 3 items", "system"), *turns(1, 3)]


async def test_nothing_to_summarise_is_no_compaction(sqlite_session: SQLiteSession) -> None:
    """With keep_last_turns turns or fewer, even a forced compaction changes nothing."""
    summarizer = Recorder()
    session = CompactingSession(sqlite_session, summarizer=summarizer, keep_last_turns=2)
    await session.add_items([msg("preamble", "system"), *turns(2)])
    assert not await session.compact(force=True)
    assert summarizer.calls == []
    assert len(await session.get_items()) == 5


async def test_the_default_trigger_is_the_token_budget(sqlite_session: SQLiteSession) -> None:
    """Compacts only once the stored history's token estimate exceeds token_budget."""
    items = turns(4)
    budget = estimate_tokens(items)
    session = CompactingSession(
        sqlite_session,
        summarizer=Recorder(),
        keep_last_turns=1,
        token_budget=budget,
        token_counter=chars_per_token_estimate,
    )
    await session.add_items(items)
    assert not await session.compact()
    await session.add_items([msg("one more question")])
    assert await session.compact()
    assert contents(await session.get_items()) == ["summary of 8 items", "one more question"]


async def test_should_compact_overrides_the_budget(sqlite_session: SQLiteSession) -> None:
    """``should_compact(items)`` decides instead of the token estimate."""
    seen: list[int] = []

    def should(items: list[Item]) -> bool:
        seen.append(len(items))
        return len(items) >= 6

    session = CompactingSession(
        sqlite_session, summarizer=Recorder(), should_compact=should, token_budget=0
    )
    await session.add_items(turns(2))
    assert not await session.compact()
    await session.add_items(turns(1, 2))
    assert await session.compact()
    assert seen == [4, 6]


def test_the_estimate_is_characters_over_four() -> None:
    """Without tiktoken, a text counts ceil(chars / 4) tokens, plus 4 per item."""
    assert chars_per_token_estimate("") == 0
    assert chars_per_token_estimate("abcde") == 2
    assert estimate_tokens([msg("12345678")], chars_per_token_estimate) == 6
    assert estimate_tokens([call("c1")], chars_per_token_estimate) == 4 + 4  # name + arguments


def test_the_cut_never_splits_a_tool_pair() -> None:
    """A call before the cut whose output lies after it moves the cut back to the call's turn."""
    items = [
        *turns(1),
        msg("question 1"),
        call("c1"),
        msg("question 2"),  # a user message between a call and its output
        output("c1"),
        msg("answer 2", "assistant"),
        msg("question 3"),
        msg("answer 3", "assistant"),
    ]
    assert cut_index(items, 2) == 2
    assert cut_index(items, 1) == 7
    assert cut_index(turns(3), 3) == 0


def test_the_cut_keeps_mcp_approval_pairs() -> None:
    """An MCP approval request stays with its response."""
    request = cast(Item, {"type": "mcp_approval_request", "id": "a1", "name": "refund"})
    response = cast(
        Item, {"type": "mcp_approval_response", "approval_request_id": "a1", "approve": True}
    )
    items = [*turns(1), msg("q1"), request, msg("q2"), response, msg("q3")]
    assert cut_index(items, 2) == 2


async def test_tool_pairs_survive_a_compaction(sqlite_session: SQLiteSession) -> None:
    """Every function_call_output left after a compaction still has its function_call."""
    summarizer = Recorder()
    session = CompactingSession(sqlite_session, summarizer=summarizer, keep_last_turns=1)
    await session.add_items(
        [*turns(2), msg("where is order 7?"), call("c1"), msg("hurry"), output("c1")]
    )
    assert await session.compact(force=True)
    assert summarizer.calls == [turns(2)]
    assert await session.get_items() == [
        msg("summary of 4 items", "system"),
        msg("where is order 7?"),
        call("c1"),
        msg("hurry"),
        output("c1"),
    ]


async def test_the_latest_user_message_is_never_summarised(
    sqlite_session: SQLiteSession,
) -> None:
    """With keep_last_turns=1 and a turn still open, the latest user message stays."""
    session = CompactingSession(sqlite_session, summarizer=Recorder(), keep_last_turns=1)
    await session.add_items([*turns(3), msg("latest"), call("c9")])
    assert await session.compact(force=True)
    assert (await session.get_items())[1:] == [msg("latest"), call("c9")]


async def test_an_agent_summarises_through_runner(sqlite_session: SQLiteSession) -> None:
    """An Agent summariser runs on a transcript; its answer becomes one system item."""
    summarizer = Agent(name="summariser", model=OfflineModel())
    session = CompactingSession(
        sqlite_session, summarizer=summarizer, keep_last_turns=1, run_config=NO_TRACING
    )
    await session.add_items([msg("my name is Ada"), msg("hello Ada", "assistant"), *turns(1)])
    assert await session.compact(force=True)
    summary, *kept = await session.get_items()
    assert kept == turns(1)
    assert summary["role"] == "system"  # type: ignore[typeddict-item]
    text = cast(str, cast(dict[str, Any], summary)["content"])
    assert text.startswith(SUMMARY_PREFIX)
    assert len(text) > len(SUMMARY_PREFIX)


def test_the_transcript_is_text_a_model_can_read() -> None:
    """Messages show their role, tool calls their name and arguments, outputs their result."""
    lines = transcript([msg("hi"), call("c1"), output("c1", "shipped")]).splitlines()
    assert lines == ["user: hi", "tool call lookup_order: {}", "tool result: shipped"]


async def test_a_summariser_must_return_a_list(sqlite_session: SQLiteSession) -> None:
    """A callable returning something else raises TypeError and leaves the history as it was."""

    async def bad(items: list[Item]) -> Any:
        return "not a list"

    session = CompactingSession(sqlite_session, summarizer=bad, keep_last_turns=1)
    await session.add_items(turns(3))
    with pytest.raises(TypeError, match="list of items"):
        await session.compact(force=True)
    assert await session.get_items() == turns(3)


async def test_an_unreadable_row_is_never_compacted_away(tmp_path: Path) -> None:
    """Over our session, a row that cannot be decoded stops the compaction; it stays stored."""
    path = tmp_path / "chats.db"
    async with SQLiteSession("s", path) as inner:
        await inner.add_items(turns(3))
        write_raw_sqlite(path, "s", "{not json")
        await inner.add_items(turns(1, 3))
        session = CompactingSession(inner, summarizer=Recorder(), keep_last_turns=1)
        assert not await session.compact(force=True)
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM agent_messages").fetchone()
    finally:
        conn.close()
    assert count == 9


@pytest.mark.parametrize("kind", ["sqlite", "sqlalchemy"])
async def test_the_sdks_sessions_are_compacted_atomically(tmp_path: Path, kind: str) -> None:
    """Over the SDK's SQLite and SQLAlchemy sessions the swap goes through their snapshot hook."""
    inner: Any = (
        SDKSQLiteSession("s", tmp_path / "sdk.db")
        if kind == "sqlite"
        else SDKSQLAlchemySession.from_url(
            "s", url=f"sqlite+aiosqlite:///{tmp_path / 'sdk.db'}", create_tables=True
        )
    )
    cleared: list[bool] = []
    original_clear = inner.clear_session

    async def spy_clear() -> None:
        cleared.append(True)
        await original_clear()

    inner.clear_session = spy_clear
    try:
        session = CompactingSession(inner, summarizer=Recorder(), keep_last_turns=1)
        await inner.add_items(turns(3))
        assert await session.compact(force=True)
        assert await inner.get_items() == [msg("summary of 4 items", "system"), *turns(1, 2)]
        assert cleared == []
    finally:
        if kind == "sqlite":
            inner.close()
        else:
            await inner.engine.dispose()


async def test_another_sessions_history_is_cleared_then_added() -> None:
    """A session with no hooks is compacted by clear_session then add_items."""
    inner = ListSession()
    inner.items = turns(3)
    session = CompactingSession(inner, summarizer=Recorder(), keep_last_turns=1)
    assert await session.compact(force=True)
    assert inner.items == [msg("summary of 4 items", "system"), *turns(1, 2)]


async def test_a_failed_add_puts_the_old_history_back() -> None:
    """When add_items fails after the clear, the old items are added back and the error raised."""
    inner = ListSession()
    inner.items = turns(3)
    inner.fail_next_add = True
    session = CompactingSession(inner, summarizer=Recorder(), keep_last_turns=1)
    with pytest.raises(RuntimeError, match="disk full"):
        await session.compact(force=True)
    assert inner.items == turns(3)

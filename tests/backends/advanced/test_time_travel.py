"""Time travel on every advanced session: history(), fork() and rewind(), on every database."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents.usage import Usage
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLiteSession
from agent_sessions.backends.advanced import AdvancedSQLiteSession
from agent_sessions.backends.advanced.session import AdvancedSession
from agent_sessions.backends.advanced.sqlalchemy import AdvancedSQLAlchemySession
from agent_sessions.backends.advanced.write import Writer
from agent_sessions.errors import InvalidIdentifierError, SessionClosedError
from tests.sql_servers import database_url, drop_tables, unique_tables

KINDS = [
    pytest.param("sqlite-file", marks=pytest.mark.sqlite),
    pytest.param("aiosqlite", marks=pytest.mark.sqlite),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]
"""AdvancedSQLiteSession on a file, and AdvancedSQLAlchemySession on each database it runs on."""


@dataclass
class Opener:
    """Opens advanced sessions on one fresh database and closes every one it opened."""

    open_one: Callable[[str], AdvancedSession]
    opened: list[AdvancedSession] = field(default_factory=list)

    def __call__(self, session_id: str) -> AdvancedSession:
        """Open a new session object on the database (a new engine for SQLAlchemy)."""
        session = self.open_one(session_id)
        self.opened.append(session)
        return session

    async def close_all(self) -> None:
        """Close every session opened (closing twice is harmless)."""
        for session in self.opened:
            await session.aclose()


@pytest.fixture(name="opener", params=KINDS)
async def opener_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """An opener of one backend's advanced sessions on fresh tables; they are dropped after."""
    kind = request.param
    if kind == "sqlite-file":
        path = tmp_path / "time-travel.db"
        made = Opener(lambda sid: AdvancedSQLiteSession(session_id=sid, db_path=path))
        yield made
        await made.close_all()
        return
    url = database_url("sqlite" if kind == "aiosqlite" else kind, tmp_path)
    sessions, messages = unique_tables()
    made = Opener(
        lambda sid: AdvancedSQLAlchemySession.from_url(
            sid, url=url, create_tables=True, sessions_table=sessions, messages_table=messages
        )
    )
    yield made
    await made.close_all()
    engine = create_async_engine(url)
    try:
        await drop_tables(engine, sessions, messages)
    finally:
        await engine.dispose()


def unique_id() -> str:
    """A session id no other test uses (server databases are shared)."""
    return f"tt-{uuid.uuid4().hex[:10]}"


def user(text: str) -> Any:
    """Return a user message."""
    return {"role": "user", "content": text}


def assistant(text: str) -> Any:
    """Return an assistant message."""
    return {"role": "assistant", "content": text}


def call(name: str) -> Any:
    """Return a function call of the tool ``name``."""
    return {"type": "function_call", "call_id": f"c_{name}", "name": name, "arguments": "{}"}


def run_result(tokens: int) -> Any:
    """Return what store_run_usage reads of a run result: its usage."""
    usage = Usage(requests=1, input_tokens=tokens, output_tokens=2, total_tokens=tokens + 2)
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def texts(items: list[Any]) -> list[str]:
    """Return the items' contents, or a call's tool name."""
    return [item.get("content", item.get("name")) for item in items]


async def chat(session: AdvancedSession, *labels: str, usage: bool = True) -> None:
    """Add one turn per label (user, assistant), each with usage ``10 * its turn`` if asked."""
    for label in labels:
        await session.add_items([user(f"u{label}"), assistant(f"a{label}")])
        if usage:
            turn = len(await session.get_conversation_turns())
            await session.store_run_usage(run_result(10 * turn))


async def snapshot(session: AdvancedSession) -> dict[str, Any]:
    """Return everything a session shows: each branch's items, the branches and the current."""
    branches = await session.list_branches()
    return {
        "current": await session.current_branch(),
        "branches": branches,
        "items": {
            b["branch_id"]: await session.get_items(branch_id=b["branch_id"]) for b in branches
        },
        "usage": await session.get_session_usage(),
    }


# history() ---------------------------------------------------------------------------------


async def test_history_lists_turns_oldest_first(opener: Opener) -> None:
    """history() gives each turn's number, branch, preview, time, item count and usage."""
    session = opener(unique_id())
    long_text = "x" * 150
    await session.add_items([user("first"), call("lookup"), assistant("one")])
    await session.store_run_usage(run_result(10))
    await session.add_items([user(long_text), assistant("two")])
    history = await session.history()
    assert [entry["turn"] for entry in history] == [1, 2]
    assert [entry["branch_id"] for entry in history] == ["main", "main"]
    assert [entry["preview"] for entry in history] == ["first", "x" * 100 + "..."]
    assert [entry["items"] for entry in history] == [3, 2]
    assert all(isinstance(entry["created_at"], str) for entry in history)
    turns = await session.get_conversation_turns()
    assert [entry["created_at"] for entry in history] == [t["timestamp"] for t in turns]
    first_usage = history[0]["usage"]
    assert first_usage is not None
    assert (first_usage["input_tokens"], first_usage["total_tokens"]) == (10, 12)
    assert history[1]["usage"] is None
    assert first_usage == (await session.get_turn_usage())[0]


async def test_history_of_an_empty_session_is_empty(opener: Opener) -> None:
    """history() of a session with no user message is an empty list."""
    session = opener(unique_id())
    assert await session.history() == []
    await session.add_items([assistant("before any user message")])
    assert await session.history() == []


async def test_history_names_the_ancestor_of_inherited_turns(opener: Opener) -> None:
    """On a fork, inherited turns name the branch holding them; usage is the fork's own."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3")
    await session.fork(turn=3, name="alt")
    await chat(session, "3b")
    history = await session.history()
    assert [(e["turn"], e["branch_id"], e["preview"]) for e in history] == [
        (1, "main", "u1"),
        (2, "main", "u2"),
        (3, "alt", "u3b"),
    ]
    # Usage recorded on main for turns 1 and 2 is main's; the fork recorded only turn 3.
    assert [e["usage"] is None for e in history] == [True, True, False]
    own = history[2]["usage"]
    assert own is not None
    assert own["input_tokens"] == 30
    main = await session.history("main")
    assert [(e["preview"], e["branch_id"]) for e in main] == [
        ("u1", "main"),
        ("u2", "main"),
        ("u3", "main"),
    ]
    assert all(e["usage"] is not None for e in main)


async def test_history_of_an_unknown_branch_is_refused(opener: Opener) -> None:
    """history() of a branch that does not exist raises ValueError."""
    session = opener(unique_id())
    await chat(session, "1")
    with pytest.raises(ValueError, match="does not exist"):
        await session.history("nope")


# fork() ------------------------------------------------------------------------------------


async def test_fork_switches_to_a_branch_ending_before_the_turn(opener: Opener) -> None:
    """fork(turn=N) makes a branch holding the turns before N and switches to it."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3")
    assert await session.fork(turn=2, name="retry") == "retry"
    assert await session.current_branch() == "retry"
    assert texts(await session.get_items()) == ["u1", "a1"]
    assert len(await session.get_items(branch_id="main")) == 6
    generated = await session.fork(turn=1)
    assert generated.startswith("branch_from_turn_1_")
    assert await session.get_items() == []


async def test_fork_refuses_what_create_branch_from_turn_refuses(opener: Opener) -> None:
    """fork() refuses a missing turn, a used name and a non-string name, changing nothing."""
    session = opener(unique_id())
    await chat(session, "1", "2")
    await session.fork(turn=2, name="taken")
    await session.switch_to_branch("main")
    before = await snapshot(session)
    with pytest.raises(ValueError, match="does not contain a user message"):
        await session.fork(turn=3)
    with pytest.raises(ValueError, match="already been used"):
        await session.fork(turn=1, name="taken")
    with pytest.raises(TypeError):
        await session.fork(turn=1, name=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await session.fork(1)  # type: ignore[misc]
    assert await snapshot(session) == before


# rewind() ----------------------------------------------------------------------------------


async def test_rewind_keeps_the_dropped_turns_on_the_keeper(opener: Opener) -> None:
    """rewind(turn=N) leaves turns before N on the branch; the keeper shows the whole history."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3", "4")
    before = await session.get_items()
    assert await session.rewind(turn=3, keep_as="kept") == "kept"
    assert await session.current_branch() == "main"
    assert texts(await session.get_items()) == ["u1", "a1", "u2", "a2"]
    assert await session.get_items(branch_id="kept") == before
    kept = await session.history("kept")
    assert [(e["turn"], e["branch_id"]) for e in kept] == [
        (1, "main"),
        (2, "main"),
        (3, "kept"),
        (4, "kept"),
    ]
    listed = {
        b["branch_id"]: (b["message_count"], b["user_turns"]) for b in await session.list_branches()
    }
    assert listed == {"main": (4, 2), "kept": (8, 4)}
    # The next turn continues from before turn 3, on main.
    await chat(session, "3b")
    assert texts(await session.get_items())[-2:] == ["u3b", "a3b"]
    assert [e["preview"] for e in await session.history()] == ["u1", "u2", "u3b"]
    assert await session.get_items(branch_id="kept") == before


async def test_rewind_generates_a_keeper_name(opener: Opener) -> None:
    """rewind() without keep_as names the keeper after the turn; each name is new."""
    session = opener(unique_id())
    await chat(session, "1", "2")
    first = await session.rewind(turn=2)
    assert first.startswith("kept_from_turn_2_")
    await chat(session, "2b")
    second = await session.rewind(turn=2)
    assert second.startswith("kept_from_turn_2_")
    assert second != first


async def test_rewind_moves_the_dropped_turns_usage_to_the_keeper(opener: Opener) -> None:
    """The usage of the dropped turns is the keeper's afterwards; the session's totals hold."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3", "4")
    totals = await session.get_session_usage()
    await session.rewind(turn=3, keep_as="kept")
    assert [u["user_turn_number"] for u in await session.get_turn_usage()] == [1, 2]
    assert [u["input_tokens"] for u in await session.get_turn_usage(branch_id="kept")] == [30, 40]
    assert await session.get_session_usage() == totals
    main_usage = await session.get_session_usage("main")
    assert main_usage is not None
    assert main_usage["input_tokens"] == 30
    kept = await session.history("kept")
    assert [e["usage"] is None for e in kept] == [True, True, False, False]
    # A run on the rewound branch records against its new turn 3.
    await chat(session, "3b")
    assert [u["input_tokens"] for u in await session.get_turn_usage()] == [10, 20, 30]


async def test_rewind_survives_reopening(opener: Opener) -> None:
    """After a rewind, a new session object on the database sees the same branches."""
    sid = unique_id()
    session = opener(sid)
    await chat(session, "1", "2", "3")
    await session.rewind(turn=2, keep_as="kept")
    before = await snapshot(session)
    await session.aclose()
    again = opener(sid)
    assert await snapshot(again) == before
    assert texts(await again.get_items()) == ["u1", "a1"]
    assert texts(await again.get_items(branch_id="kept")) == ["u1", "a1", "u2", "a2", "u3", "a3"]


async def test_forks_of_the_rewound_branch_keep_what_they_showed(opener: Opener) -> None:
    """Forks made from the rewound part keep their items, even once the keeper is deleted."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3")
    await session.fork(turn=3, name="f")  # holds turns 1 and 2 of main
    await chat(session, "f3")
    await session.switch_to_branch("main")
    await session.fork(turn=2, name="g")  # holds turn 1
    await session.switch_to_branch("main")
    shown = {b: await session.get_items(branch_id=b) for b in ("f", "g")}
    kept = await session.rewind(turn=1)
    assert await session.get_items() == []
    assert {b: await session.get_items(branch_id=b) for b in ("f", "g")} == shown
    await session.delete_branch(kept)
    assert {b: await session.get_items(branch_id=b) for b in ("f", "g")} == shown
    assert texts(shown["f"]) == ["u1", "a1", "u2", "a2", "uf3", "af3"]


async def test_rewind_of_a_missing_turn_changes_nothing(opener: Opener) -> None:
    """rewind() of a turn that does not exist raises ValueError and writes nothing."""
    session = opener(unique_id())
    await chat(session, "1", "2")
    before = await snapshot(session)
    for turn in (3, 0, -1):
        with pytest.raises(ValueError, match="does not contain a user message"):
            await session.rewind(turn=turn, keep_as="kept")
    assert await snapshot(session) == before
    # The refused name was not reserved.
    assert await session.rewind(turn=2, keep_as="kept") == "kept"


async def test_rewind_refuses_used_and_invalid_names(opener: Opener) -> None:
    """rewind() refuses a name in use or used before, a blank one and a non-string one."""
    session = opener(unique_id())
    await chat(session, "1", "2")
    await session.fork(turn=2, name="gone")
    await session.switch_to_branch("main")
    await session.delete_branch("gone")
    before = await snapshot(session)
    for name in ("main", "gone"):
        with pytest.raises(ValueError, match="already been used"):
            await session.rewind(turn=1, keep_as=name)
    with pytest.raises(InvalidIdentifierError):
        await session.rewind(turn=1, keep_as="  ")
    with pytest.raises(TypeError):
        await session.rewind(turn=1, keep_as=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await session.rewind(1)  # type: ignore[misc]
    assert await snapshot(session) == before


async def test_two_rewinds(opener: Opener) -> None:
    """A second rewind keeps the first keeper whole and makes its own of what was left."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3", "4")
    everything = await session.get_items()
    await session.rewind(turn=4, keep_as="k1")
    three = await session.get_items()
    await session.rewind(turn=2, keep_as="k2")
    assert texts(await session.get_items()) == ["u1", "a1"]
    assert await session.get_items(branch_id="k1") == everything
    assert await session.get_items(branch_id="k2") == three
    assert [e["preview"] for e in await session.history("k1")] == ["u1", "u2", "u3", "u4"]
    assert [u["user_turn_number"] for u in await session.get_turn_usage(branch_id="k1")] == [4]
    assert [u["user_turn_number"] for u in await session.get_turn_usage(branch_id="k2")] == [
        2,
        3,
    ]
    totals = await session.get_session_usage()
    assert totals is not None
    assert totals["input_tokens"] == 100


async def test_rewind_on_a_branch_drops_inherited_turns_too(opener: Opener) -> None:
    """Rewinding a fork past its fork point hides inherited turns; its parent is unchanged."""
    session = opener(unique_id())
    await chat(session, "1", "2", "3")
    main = await session.get_items()
    await session.fork(turn=3, name="f")
    await chat(session, "f3", "f4")
    whole = await session.get_items()
    await session.rewind(turn=2, keep_as="kept")
    assert await session.current_branch() == "f"
    assert texts(await session.get_items()) == ["u1", "a1"]
    assert await session.get_items(branch_id="kept") == whole
    assert await session.get_items(branch_id="main") == main
    assert [e["branch_id"] for e in await session.history("kept")] == [
        "main",
        "kept",
        "kept",
        "kept",
    ]
    await chat(session, "2b")
    assert texts(await session.get_items()) == ["u1", "a1", "u2b", "a2b"]
    assert await session.get_items(branch_id="main") == main


async def test_rewind_is_all_or_nothing(opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rewind that fails after making its keeper leaves no keeper and no change."""
    session = opener(unique_id())
    await chat(session, "1", "2")
    before = await snapshot(session)

    def fail(*_args: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(Writer, "detach_forks", fail)
    with pytest.raises(RuntimeError, match="injected"):
        await session.rewind(turn=2, keep_as="kept")
    monkeypatch.undo()
    assert await snapshot(session) == before
    assert await session.rewind(turn=2, keep_as="kept") == "kept"


async def test_time_travel_on_a_closed_session_names_the_method(opener: Opener) -> None:
    """history, fork and rewind on a closed session raise an error naming the method."""
    session = opener(unique_id())
    await chat(session, "1")
    await session.aclose()
    for name, call_it in (
        ("history", session.history),
        ("fork", lambda: session.fork(turn=1)),
        ("rewind", lambda: session.rewind(turn=1)),
    ):
        with pytest.raises(SessionClosedError, match=rf"\.{name}\(\)"):
            await call_it()


# Rows a plain session wrote (SQLite files) ------------------------------------------------


@pytest.mark.sqlite
async def test_rows_a_plain_session_wrote_stay_on_forks(tmp_path: Path) -> None:
    """Rewinding or popping main's rows that a plain session wrote never takes them from forks."""
    path = tmp_path / "mixed.db"
    async with AdvancedSQLiteSession(session_id="other", db_path=path) as other:
        await other.add_items([user("the branch tables exist")])
    plain = SQLiteSession("s", path)
    await plain.add_items([user("u1"), assistant("a1"), user("u2"), assistant("a2")])
    await plain.add_items([user("u3"), assistant("a3")])
    plain.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
        await session.fork(turn=2, name="f1")  # u1 a1
        await session.switch_to_branch("main")
        await session.fork(turn=3, name="f2")  # u1 a1 u2 a2
        await session.switch_to_branch("main")
        kept = await session.rewind(turn=3)
        assert texts(await session.get_items()) == ["u1", "a1", "u2", "a2"]
        assert len(await session.get_items(branch_id=kept)) == 6
        for _ in range(3):  # a2, u2, a1: the last two are f2's, a1 is f1's too
            await session.pop_item()
        assert texts(await session.get_items()) == ["u1"]
        assert texts(await session.get_items(branch_id="f1")) == ["u1", "a1"]
        assert texts(await session.get_items(branch_id="f2")) == ["u1", "a1", "u2", "a2"]
        assert len(await session.get_items(branch_id=kept)) == 6
    conn = sqlite3.connect(path)
    try:
        (orphans,) = conn.execute(
            "SELECT count(*) FROM message_structure s WHERE NOT EXISTS "
            "(SELECT 1 FROM agent_messages m WHERE m.id = s.message_id)"
        ).fetchone()
    finally:
        conn.close()
    assert orphans == 0


@pytest.mark.sqlite
async def test_undo_of_a_pop_brings_back_a_plain_row_a_fork_holds(tmp_path: Path) -> None:
    """Undoing a pop of a plain session's row that a fork also holds puts it back on main."""
    path = tmp_path / "mixed.db"
    async with AdvancedSQLiteSession(session_id="other", db_path=path) as other:
        await other.add_items([user("the branch tables exist")])
    plain = SQLiteSession("s", path)
    await plain.add_items([user("u1"), assistant("a1"), user("u2"), assistant("a2")])
    plain.close()
    async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
        await session.fork(turn=2, name="f")  # u1 a1
        await session.switch_to_branch("main")
        store = session._advanced  # noqa: SLF001 (the store's undo, as a cancelled pop_turn uses it)
        taken = await store.pop_through("s", json.loads, lambda item: item["content"] == "a1")
        assert texts(await session.get_items()) == ["u1"]
        await store.restore("s", taken)
        assert texts(await session.get_items()) == ["u1", "a1", "u2", "a2"]
        assert texts(await session.get_items(branch_id="f")) == ["u1", "a1"]


@pytest.mark.sqlite
async def test_history_statements_do_not_grow_with_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """history() runs as many statements for 40 turns as for 2: no round trip per turn."""

    async def count(turns: int) -> int:
        path = tmp_path / f"count-{turns}.db"
        statements: list[str] = []
        async with AdvancedSQLiteSession(session_id="s", db_path=path) as session:
            await chat(session, *map(str, range(1, turns + 1)))
            await session.fork(turn=turns, name="f")  # a chain of two branches
            await chat(session, "f")
            store = session._advanced  # noqa: SLF001 (its one read snapshot, traced here)

            async def traced(_operation: str, call: Any, *, snapshot: bool = True) -> Any:
                del snapshot
                conn = sqlite3.connect(path, isolation_level=None)
                conn.set_trace_callback(statements.append)
                conn.execute("BEGIN")
                try:
                    return call(conn)
                finally:
                    conn.execute("ROLLBACK")
                    conn.close()

            monkeypatch.setattr(store, "_read_call", traced)
            history = await session.history()
            monkeypatch.undo()
        assert len(history) == turns  # turns - 1 inherited, and its own
        assert len(statements) > 2  # the read ran on the traced connection
        return len(statements)

    assert await count(2) == await count(40)

"""PostgreSQL's one-statement append and read of AdvancedSQLAlchemySession, under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, SQLAlchemySession
from tests.sql_servers import database_url, drop_tables, unique_tables

pytestmark = pytest.mark.postgres


class Pg:
    """Fresh tables on the test PostgreSQL, reached by two engines (two app servers)."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = database_url("postgres", tmp_path)
        self.engines: list[AsyncEngine] = [create_async_engine(self.url) for _ in range(2)]
        self.sessions, self.messages = unique_tables()

    def open(self, session_id: str, server: int = 0) -> AdvancedSQLAlchemySession:
        """An advanced session on one of the two engines."""
        return AdvancedSQLAlchemySession(
            session_id,
            engine=self.engines[server],
            create_tables=True,
            sessions_table=self.sessions,
            messages_table=self.messages,
        )

    async def records(self, session_id: str) -> list[tuple[int, str, str, int, int]]:
        """The session's structure rows: message id, branch, type, sequence and turn."""
        async with self.engines[0].connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT message_id, branch_id, message_type, sequence_number, "
                    f"user_turn_number FROM {self.messages}_structure "
                    "WHERE session_id = :sid ORDER BY message_id, branch_id"
                ),
                {"sid": session_id},
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Pg]:
    """Two engines on fresh tables, dropped afterwards."""
    db = Pg(tmp_path)
    yield db
    await drop_tables(db.engines[0], db.sessions, db.messages)
    for engine in db.engines:
        await engine.dispose()


def turn(writer: int, n: int) -> list[dict[str, str]]:
    """One turn of a writer: a user message and an answer."""
    return [
        {"role": "user", "content": f"w{writer}-q{n}"},
        {"role": "assistant", "content": f"w{writer}-a{n}"},
    ]


def ranks_match(records: list[tuple[int, str, str, int, int]]) -> bool:
    """Whether each row's stored turn is the number of user messages up to it (one branch)."""
    users = 0
    for _mid, _branch, kind, _seq, stored in records:
        users += kind == "user"
        if stored != users:
            return False
    return True


async def test_concurrent_appends_from_two_servers_number_one_order(pg: Pg) -> None:
    """Appends racing from two engines get sequence and turn numbers in the rows' id order."""
    sid = uuid.uuid4().hex
    sessions = [pg.open(sid, server) for server in (0, 1, 0, 1)]
    await sessions[0].get_items()  # tables

    async def write(writer: int) -> None:
        for n in range(15):
            await sessions[writer].add_items(turn(writer, n))

    await asyncio.gather(*(write(w) for w in range(4)))
    records = await pg.records(sid)
    assert len(records) == 4 * 15 * 2
    assert {branch for _, branch, *_ in records} == {"main"}
    sequences = [seq for *_, seq, _turn in records]
    assert sequences == sorted(set(sequences))  # unique, increasing with the id
    assert ranks_match(records)
    items = await sessions[1].get_items()
    assert len(items) == 120
    for writer in range(4):  # each writer's turns in its own order, pairs kept together
        mine = [i["content"] for i in items if str(i["content"]).startswith(f"w{writer}-")]
        assert mine == [c["content"] for n in range(15) for c in turn(writer, n)]
    for session in sessions:
        await session.close()


async def test_appends_racing_a_branch_switch_land_on_one_branch_each(pg: Pg) -> None:
    """Appends racing forks and switches each land whole on the branch current at commit."""
    sid = uuid.uuid4().hex
    writer, brancher = pg.open(sid, 0), pg.open(sid, 1)
    await writer.add_items(turn(0, 0))

    async def write() -> None:
        for n in range(1, 25):
            await writer.add_items(turn(0, n))

    async def branch() -> None:
        for n in range(6):
            await asyncio.sleep(0.005)
            await brancher.create_branch_from_turn(2, f"b{n}")
            await asyncio.sleep(0.005)
            await brancher.switch_to_branch("main")

    await asyncio.gather(write(), branch())
    records = await pg.records(sid)
    by_message: dict[int, set[str]] = {}
    for mid, branch_id, *_ in records:
        by_message.setdefault(mid, set()).add(branch_id)
    branches = {b["branch_id"] for b in await brancher.list_branches()}
    assert {b for held in by_message.values() for b in held} <= branches
    for branch_id in branches:
        await brancher.switch_to_branch(branch_id)
        items = await brancher.get_items()
        contents = [str(i["content"]) for i in items]
        # Whole turns, in order, and numbered by rank on every branch.
        assert contents[0] == "w0-q0"
        assert all(
            q.replace("q", "a") == a for q, a in zip(contents[::2], contents[1::2], strict=True)
        )
        turns = await brancher.get_conversation_turns()
        assert [t["turn"] for t in turns] == list(range(1, len(contents) // 2 + 1))
        own = [r for r in records if r[1] == branch_id]
        inherited = len(contents) - len(own)
        assert [stored for *_, stored in own] == [
            (inherited + index) // 2 + 1 for index in range(len(own))
        ]
    await writer.close()
    await brancher.close()


async def test_a_plain_sessions_row_is_counted_in_the_next_turn(pg: Pg) -> None:
    """A row our plain session wrote (no record) counts toward the turn of the next append."""
    sid = uuid.uuid4().hex
    advanced = pg.open(sid)
    await advanced.add_items(turn(0, 0))
    plain = SQLAlchemySession(
        sid,
        engine=pg.engines[0],
        sessions_table=pg.sessions,
        messages_table=pg.messages,
    )
    await plain.add_items([{"role": "user", "content": "plain q"}])
    await advanced.add_items(turn(0, 1))
    records = await pg.records(sid)
    assert [stored for *_, stored in records] == [1, 1, 3, 3]
    turns = await advanced.get_conversation_turns()
    assert [t["content"] for t in turns] == ["w0-q0", "plain q", "w0-q1"]
    await plain.close()
    await advanced.close()


async def test_read_of_main_with_a_branch_elsewhere_shows_mains_rows_only(pg: Pg) -> None:
    """With a fork's own rows in the session, reading main skips them (no single-branch read)."""
    sid = uuid.uuid4().hex
    session = pg.open(sid)
    await session.add_items(turn(0, 0) + turn(0, 1))
    await session.create_branch_from_turn(2, "fork")
    await session.add_items(turn(1, 1))
    await session.switch_to_branch("main")
    assert [i["content"] for i in await session.get_items()] == [
        "w0-q0",
        "w0-a0",
        "w0-q1",
        "w0-a1",
    ]
    assert [i["content"] for i in await session.get_items(branch_id="fork")] == [
        "w0-q0",
        "w0-a0",
        "w1-q1",
        "w1-a1",
    ]
    await session.close()

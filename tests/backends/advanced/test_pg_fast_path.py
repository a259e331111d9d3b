"""PostgreSQL's one-statement append and read of AdvancedSQLAlchemySession, under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession, SQLAlchemySession
from agent_sessions.backends.advanced.flavor import flavor_of
from agent_sessions.backends.advanced.sql import AdvancedStatements
from agent_sessions.schema import TableNames
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

    def sdk(self, session_id: str, server: int = 0) -> Any:
        """The SDK's own ``SQLAlchemySession`` on the same tables."""
        from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession

        return SDKSQLAlchemySession(
            session_id,
            engine=self.engines[server],
            sessions_table=self.sessions,
            messages_table=self.messages,
        )

    async def two_turns(self, session_id: str) -> AdvancedSQLAlchemySession:
        """An advanced session on engine 0 that appended two turns (so it keeps a state)."""
        session = self.open(session_id)
        await session.add_items(turn(0, 0))
        await session.add_items(turn(0, 1))
        return session

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


# An append starts from the state this process's last append of the session left (no lookup),
# after checking that nobody wrote since: each test changes the session between two appends
# in a way that state cannot know of, and the next append must still number it right.


async def test_a_pop_by_the_sdks_session_between_appends_renumbers_the_next_turn(
    pg: Pg,
) -> None:
    """The SDK's pop deletes the newest row without touching the session row."""
    sid = uuid.uuid4().hex
    session = await pg.two_turns(sid)
    sdk = pg.sdk(sid)
    assert await sdk.pop_item() == {"role": "assistant", "content": "w0-a1"}
    assert await sdk.pop_item() == {"role": "user", "content": "w0-q1"}
    await session.add_items(turn(0, 2))
    records = await pg.records(sid)
    assert [(kind, stored) for _, _, kind, _, stored in records] == [
        ("user", 1),
        ("assistant", 1),
        ("user", 2),
        ("assistant", 2),
    ]
    sequences = [seq for *_, seq, _turn in records]
    assert sequences == sorted(set(sequences))
    turns = await session.get_conversation_turns()
    assert [(t["turn"], t["content"]) for t in turns] == [(1, "w0-q0"), (2, "w0-q2")]


async def test_a_row_written_without_the_session_row_is_counted_by_the_next_append(
    pg: Pg,
) -> None:
    """A row another tool inserted (session row untouched) is the newest row: the state is stale."""
    sid = uuid.uuid4().hex
    session = await pg.two_turns(sid)
    async with pg.engines[1].begin() as conn:
        await conn.execute(
            text(f"INSERT INTO {pg.messages} (session_id, message_data) VALUES (:sid, :data)"),
            {"sid": sid, "data": '{"role": "user", "content": "tool q"}'},
        )
    await session.add_items(turn(0, 2))
    turns = await session.get_conversation_turns()
    assert [(t["turn"], t["content"]) for t in turns] == [
        (1, "w0-q0"),
        (2, "w0-q1"),
        (3, "tool q"),
        (4, "w0-q2"),
    ]
    assert [stored for *_, stored in await pg.records(sid)][-2:] == [4, 4]


async def test_an_append_after_another_server_switched_branch_lands_on_that_branch(
    pg: Pg,
) -> None:
    """The current branch is the session's, not the process's: a switch elsewhere is seen."""
    sid = uuid.uuid4().hex
    writer, brancher = await pg.two_turns(sid), pg.open(sid, 1)
    await brancher.create_branch_from_turn(2, "fork")
    await writer.add_items(turn(0, 2))
    assert [i["content"] for i in await brancher.get_items(branch_id="fork")] == [
        "w0-q0",
        "w0-a0",
        "w0-q2",
        "w0-a2",
    ]
    assert len(await brancher.get_items(branch_id="main")) == 4
    fork = [r for r in await pg.records(sid) if r[1] == "fork"]
    assert [stored for *_, stored in fork] == [2, 2]
    await brancher.switch_to_branch("main")
    await writer.add_items(turn(0, 3))
    assert [t["turn"] for t in await writer.get_conversation_turns()] == [1, 2, 3]
    await writer.close()
    await brancher.close()


async def test_tagged_appends_start_from_the_last_state_and_see_a_pop(pg: Pg) -> None:
    """The fresh tagged append (a run's own items) keeps the same state and the same check."""
    from agent_sessions.store import RowTag

    sid = uuid.uuid4().hex
    session = pg.open(sid)
    await session.get_items()  # tables
    store = session.store

    def tagged(run: str, n: int) -> tuple[list[str], list[RowTag]]:
        texts = [f'{{"role": "user", "content": "{run}-q{n}"}}', '{"role": "assistant"}']
        return texts, [RowTag("agent", run, i, f"d{i}") for i in range(2)]

    for n in range(3):
        assert await store.append_tagged(sid, *tagged(f"run{n}", n), fresh=True) == 2
    sdk = pg.sdk(sid)
    await sdk.pop_item()
    await sdk.pop_item()
    assert await store.append_tagged(sid, *tagged("run3", 3), fresh=True) == 2
    records = await session.get_records()
    assert [r.run_id for r in records] == ["run0", "run0", "run1", "run1", "run3", "run3"]
    assert [t["turn"] for t in await session.get_conversation_turns()] == [1, 2, 3]
    assert [stored for *_, stored in await pg.records(sid)] == [1, 1, 2, 2, 3, 3]


async def test_a_read_after_another_server_branched_skips_the_forks_rows(pg: Pg) -> None:
    """A read that starts from the last append's state (only main) sees a fork made since."""
    sid = uuid.uuid4().hex
    writer, brancher = await pg.two_turns(sid), pg.open(sid, 1)
    assert len(await writer.get_items()) == 4
    await brancher.create_branch_from_turn(2, "fork")
    await brancher.add_items(turn(1, 1))
    assert [i["content"] for i in await writer.get_items()] == [
        "w0-q0",
        "w0-a0",
        "w1-q1",
        "w1-a1",
    ]
    await brancher.switch_to_branch("main")
    assert [i["content"] for i in await writer.get_items()] == [
        "w0-q0",
        "w0-a0",
        "w0-q1",
        "w0-a1",
    ]
    await writer.add_items(turn(0, 2))
    assert len(await writer.get_items()) == 6
    assert len(await brancher.get_items(branch_id="fork")) == 4
    await writer.close()
    await brancher.close()


async def test_the_sdks_clear_of_a_session_takes_its_branch_records_with_it(pg: Pg) -> None:
    """Deleting the session row (the SDK's clear) deletes the messages and so their records."""
    sid, other = uuid.uuid4().hex, uuid.uuid4().hex
    session, kept = pg.open(sid), pg.open(other)
    await session.add_items(turn(0, 0) + turn(0, 1))
    await session.create_branch_from_turn(2, "fork")
    await session.add_items(turn(1, 1))
    await kept.add_items(turn(2, 0))
    await pg.sdk(sid, 1).clear_session()
    assert await pg.records(sid) == []
    assert len(await pg.records(other)) == 2
    fresh = pg.open(sid, 1)
    await fresh.add_items(turn(3, 0))
    assert [t["turn"] for t in await fresh.get_conversation_turns()] == [1]
    assert [i["content"] for i in await fresh.get_items()] == ["w3-q0", "w3-a0"]


async def test_a_session_the_sdk_emptied_reads_empty_and_starts_again_at_turn_one(pg: Pg) -> None:
    """With every row popped behind its back, the kept state's read finds nothing and asks again."""
    sid = uuid.uuid4().hex
    session = await pg.two_turns(sid)
    sdk = pg.sdk(sid)
    for _ in range(4):
        assert await sdk.pop_item() is not None
    assert await session.get_items() == []
    await session.add_items(turn(0, 2))
    assert [i["content"] for i in await session.get_items()] == ["w0-q2", "w0-a2"]
    assert [t["turn"] for t in await session.get_conversation_turns()] == [1]


async def test_tables_with_the_older_foreign_key_get_the_trigger_and_delete_records_once(
    pg: Pg,
) -> None:
    """Tables made before keep the key from records to items; the trigger joins it, harmlessly."""
    sid = uuid.uuid4().hex
    session = await pg.two_turns(sid)
    st, m = f"{pg.messages}_structure", pg.messages
    async with pg.engines[1].begin() as conn:
        await conn.execute(text(f"DROP TRIGGER agent_sessions_forget ON {m}"))
        await conn.execute(
            text(
                f"ALTER TABLE {st} ADD CONSTRAINT {st}_message_fk FOREIGN KEY (message_id) "
                f"REFERENCES {m} (id) ON DELETE CASCADE"
            )
        )
    reopened = create_async_engine(pg.url)
    try:
        again = AdvancedSQLAlchemySession(
            sid,
            engine=reopened,
            create_tables=True,
            sessions_table=pg.sessions,
            messages_table=pg.messages,
        )
        await again.add_items(turn(0, 2))
        async with reopened.connect() as conn:
            triggers = await conn.execute(
                text(
                    "SELECT count(*) FROM pg_trigger WHERE tgname = 'agent_sessions_forget' "
                    "AND tgrelid = CAST(:m AS regclass)"
                ),
                {"m": m},
            )
            assert triggers.scalar() == 1
        assert await pg.sdk(sid).pop_item() == {"role": "assistant", "content": "w0-a2"}
        assert len(await pg.records(sid)) == 5
        await again.close()
    finally:
        await reopened.dispose()
    await session.close()


async def test_the_check_for_a_branch_name_probes_the_branch_index_in_a_generic_plan(
    pg: Pg,
) -> None:
    """Every branch creation asks whether its new name has records: one index probe, not a scan.

    With a table whose records are nearly all ``main``'s (copy-free branches add none; 100k
    here), the generic plan asyncpg runs after five calls once read a whole index in
    ``message_id`` order for a name nobody uses, and for the current fork in the head. The
    plans must bound the (session, branch, message) index.
    """
    sid = uuid.uuid4().hex
    session = pg.open(sid)
    await session.add_items(turn(0, 0))
    st, m = f"{pg.messages}_structure", pg.messages
    async with pg.engines[1].begin() as conn:  # 100k items of main, as add_items stores them
        await conn.execute(
            text(
                f"INSERT INTO {m} (session_id, message_data) SELECT :sid, "
                '\'{"role": "user", "content": "q"}\' FROM generate_series(1, 100000)'
            ),
            {"sid": sid},
        )
        await conn.execute(
            text(
                f"INSERT INTO {st} (session_id, message_id, branch_id, message_type, "
                "sequence_number, user_turn_number, branch_turn_number) "
                f"SELECT session_id, id, 'main', 'user', id, id, id FROM {m} "
                f"WHERE session_id = :sid AND id > (SELECT min(id) + 1 FROM {m} "
                "WHERE session_id = :sid)"
            ),
            {"sid": sid},
        )
    await session.create_branch_from_turn(1, "fork")
    statements = AdvancedStatements(TableNames(pg.sessions, pg.messages), flavor_of("postgresql"))
    statements.bind(shared=False)
    sql = statements.has_structure_branch.replace("?", "$1", 1).replace("?", "$2", 1)
    async with pg.engines[1].connect() as conn:
        for table in (m, *statements.names(shared=False)):
            await conn.execute(text(f"ANALYZE {table}"))
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        await conn.execute(text(f"PREPARE probe(text, text) AS {sql}"))
        plans = {}
        for name in ("nobody-uses-this", "fork", "main"):
            rows = await conn.execute(text(f"EXPLAIN EXECUTE probe('{sid}', '{name}')"))
            plans[name] = "\n".join(str(row[0]) for row in rows)
        found = await conn.execute(text(f"EXECUTE probe('{sid}', 'nobody-uses-this')"))
        assert found.first() is None
    for plan in plans.values():
        assert f"idx_{st}_branch_message" in plan, plan
        assert "Seq Scan" not in plan, plan
    # The head (every read and write of a fork asks it) probes the current fork the same way.
    head = statements.head.replace(":session", "$1")
    async with pg.engines[1].connect() as conn:
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        await conn.execute(text(f"PREPARE head(text) AS {head}"))
        rows = await conn.execute(text(f"EXPLAIN EXECUTE head('{sid}')"))
        plan = "\n".join(str(row[0]) for row in rows)
        assert f"Seq Scan on {st}" not in plan, plan
        assert f"idx_{st}_message " not in plan, plan
        found = (await conn.execute(text(f"EXECUTE head('{sid}')"))).first()
        assert found is not None
        assert found[0] == "fork"
    await session.close()


async def test_another_role_creating_its_tables_reuses_the_trigger_function(pg: Pg) -> None:
    """The function is made once per database; a role that does not own it still makes tables."""
    from sqlalchemy.engine import make_url

    first = await pg.two_turns(uuid.uuid4().hex)  # the function exists now, owned by postgres
    role = f"agent_sessions_{uuid.uuid4().hex[:8]}"
    async with pg.engines[0].begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        await conn.execute(text(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}"))
        await conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON agent_sessions_schema TO {role}")
        )
    engine = create_async_engine(make_url(pg.url).set(username=role))
    sessions, messages = unique_tables()
    try:
        session = AdvancedSQLAlchemySession(
            "s", engine=engine, create_tables=True, sessions_table=sessions, messages_table=messages
        )
        await session.add_items(turn(0, 0))
        from agents.extensions.memory import SQLAlchemySession as SDKSQLAlchemySession

        sdk = SDKSQLAlchemySession(
            "s", engine=engine, sessions_table=sessions, messages_table=messages
        )
        await sdk.pop_item()
        async with engine.connect() as conn:
            left = await conn.execute(text(f"SELECT message_type FROM {messages}_structure"))
            assert [row[0] for row in left] == ["user"]
        await session.close()
    finally:
        await engine.dispose()
        await drop_tables(pg.engines[0], sessions, messages)
        async with pg.engines[0].begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))
    await first.close()

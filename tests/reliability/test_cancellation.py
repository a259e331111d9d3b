"""Tasks cancelled at random moments inside ``add_items``, ``pop_item`` and ``pop_turn``.

Each operation runs as a task that another task cancels after a random delay: either a few
event-loop steps, or a random time up to twice the operation's measured duration, so the
cancellations land before, during and after the database work. Afterwards every batch must be
whole or absent (and there if it was acknowledged), and every popped item either returned to
its caller or still stored, in its place; no operation may fail with anything but
``CancelledError``, and the session must go on working.
"""

from __future__ import annotations

import asyncio
import gc
import random
import sqlite3
import statistics
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from agents.items import TResponseInputItem
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import (
    EncryptedSession,
    SQLAlchemySession,
    SQLiteSession,
    SQLiteStore,
)
from tests.file_locks import writers_held
from tests.redis_server import redis_harness
from tests.reliability.conftest import SESSION_BACKENDS, SqlTarget
from tests.sql_servers import drop_tables, unique_tables

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ADD_ROUNDS, WRITERS, BATCH = 100, 3, 5
POP_ROUNDS, POPPERS = 50, 2
TURNS, TURN_ROUNDS = 80, 60
KEY = Fernet.generate_key().decode()


@dataclass
class Backend:
    """Opens sessions of one backend on one fresh database; closes them all at the end."""

    open_session: Callable[[str], Any]
    opened: list[Any] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def session(self, session_id: str) -> Any:
        """A session of this backend (closed by the fixture)."""
        session = self.open_session(session_id)
        self.opened.append(session)
        return session


@pytest.fixture(params=[*SESSION_BACKENDS, pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend on a fresh database."""
    name: str = request.param
    path = tmp_path / "cancel.db"
    if name == "redis":
        harness = redis_harness(tmp_path)
        backend = Backend(harness.open, closers=list(harness.cleanup))
    elif name == "sqlite":
        backend = Backend(lambda sid: SQLiteSession(sid, path))
    elif name == "sqlite-shared":
        store = SQLiteStore(path)
        backend = Backend(store.session, closers=[store.aclose])
    elif name == "encrypted-sqlite":
        backend = Backend(lambda sid: EncryptedSession(sid, SQLiteSession(sid, path), KEY))
    else:
        target = SqlTarget(name.removeprefix("sqlalchemy-"), tmp_path)
        backend = Backend(
            lambda sid: SQLAlchemySession(
                sid,
                engine=target.engine,
                create_tables=True,
                sessions_table=target.tables[0],
                messages_table=target.tables[1],
            ),
            closers=[target.cleanup],
        )
    yield backend
    for session in backend.opened:
        await session.aclose()
    for close in backend.closers:
        await close()


def tagged(tag: str, **extra: str) -> TResponseInputItem:
    """A user message whose content is ``tag``."""
    return cast(TResponseInputItem, {"role": "user", "content": tag, **extra})


def content(stored: TResponseInputItem) -> str:
    """The tag of an item made by :func:`tagged` or :func:`exchange`."""
    return str(stored.get("content", stored.get("call_id", stored.get("output"))))


async def measure(operation: Callable[[], Awaitable[object]], times: int = 5) -> float:
    """The median duration, in seconds, of a few uncancelled runs of ``operation``."""
    durations = []
    for _ in range(times):
        began = time.perf_counter()
        await operation()
        durations.append(time.perf_counter() - began)
    return statistics.median(durations)


async def cancel_at_random(task: asyncio.Task[Any], rng: random.Random, typical: float) -> None:
    """Cancel ``task`` after a few loop steps or a random time up to twice ``typical``."""
    if rng.random() < 0.3:
        for _ in range(rng.randrange(6)):
            await asyncio.sleep(0)
    else:
        await asyncio.sleep(rng.uniform(0, 2 * typical))
    task.cancel()


async def run_cancelled(
    operations: list[Awaitable[Any]], rng: random.Random, typical: float
) -> list[Any]:
    """Run the operations at once, each cancelled at its own random moment; return outcomes."""
    tasks = [asyncio.ensure_future(operation) for operation in operations]
    await asyncio.gather(*(cancel_at_random(task, rng, typical) for task in tasks))
    return await asyncio.gather(*tasks, return_exceptions=True)


def failures(outcomes: list[Any]) -> list[BaseException]:
    """The outcomes that are errors other than a cancellation."""
    return [
        o
        for o in outcomes
        if isinstance(o, BaseException) and not isinstance(o, asyncio.CancelledError)
    ]


async def settle() -> None:
    """Give work that outlived its cancelled caller (a driver thread, the server) time to end."""
    await asyncio.sleep(0.2)


async def test_cancelled_add_items_leave_batches_whole_or_absent(backend: Backend) -> None:
    """300 add_items cancelled at random, 3 sessions at once: 0 torn batches, 0 acked lost.

    Every batch of 5 is in its session whole and contiguous, or not at all; every batch whose
    call returned is there, in call order; no call fails with anything but CancelledError. (A
    cancelled batch that is stored sits where it was committed, which may be after later calls:
    see test_cancelled_add_items_is_settled_when_it_raises.)
    """
    rng = random.Random()
    sessions = [backend.session(f"add-{k}") for k in range(WRITERS)]
    counter = iter(range(10**6))

    def batch(number: int) -> list[TResponseInputItem]:
        return [tagged(f"{number}:{i}") for i in range(BATCH)]

    acked: dict[int, set[int]] = {k: set() for k in range(WRITERS)}
    attempted: dict[int, set[int]] = {k: set() for k in range(WRITERS)}

    async def warm_up() -> None:  # the first call of each session also creates its tables
        for k, session in enumerate(sessions):
            number = next(counter)
            await session.add_items(batch(number))
            acked[k].add(number)
            attempted[k].add(number)

    typical = await measure(warm_up) / WRITERS
    errors: list[BaseException] = []
    cancelled = 0
    for _ in range(ADD_ROUNDS):
        numbers = [next(counter) for _ in sessions]
        for k, number in enumerate(numbers):
            attempted[k].add(number)
        outcomes = await run_cancelled(
            [s.add_items(batch(n)) for s, n in zip(sessions, numbers, strict=True)], rng, typical
        )
        errors += failures(outcomes)
        for k, (number, outcome) in enumerate(zip(numbers, outcomes, strict=True)):
            if outcome is None:
                acked[k].add(number)
            cancelled += isinstance(outcome, asyncio.CancelledError)
    assert errors == [], f"{len(errors)} failure(s), the first: {errors[0]!r}"
    await settle()
    for k, session in enumerate(sessions):
        tags = [content(stored).split(":") for stored in await session.get_items()]
        numbers = [int(tag[0]) for tag in tags[::BATCH]]
        assert tags == [[str(n), str(i)] for n in numbers for i in range(BATCH)], "torn batch"
        assert len(numbers) == len(set(numbers)), "a batch was stored twice"
        confirmed = [n for n in numbers if n in acked[k]]
        assert confirmed == sorted(confirmed), "acknowledged batches out of order"
        assert acked[k] <= set(numbers), "an acknowledged batch is missing"
        assert set(numbers) <= attempted[k]
        await session.add_items(batch(next(counter)))
    assert cancelled >= ADD_ROUNDS * WRITERS // 5, f"only {cancelled} calls were cancelled"


async def test_cancelled_pops_return_or_keep_every_item(backend: Backend) -> None:
    """100 pop_item cancelled at random, 2 at once: 0 items lost, 0 duplicated, order kept.

    Each item taken is either returned to its caller or still stored in its original place.
    """
    rng = random.Random()
    session = backend.session("pop")
    everything = [tagged(f"m{n}") for n in range(POP_ROUNDS * POPPERS + 20)]
    for start in range(0, len(everything), 10):
        await session.add_items(everything[start : start + 10])
    spare = [tagged(f"spare{n}") for n in range(5)]
    await session.add_items(spare)
    typical = await measure(session.pop_item)
    returned: list[TResponseInputItem] = []
    errors: list[BaseException] = []
    for _ in range(POP_ROUNDS):
        outcomes = await run_cancelled([session.pop_item() for _ in range(POPPERS)], rng, typical)
        errors += failures(outcomes)
        returned += [cast(TResponseInputItem, o) for o in outcomes if isinstance(o, dict)]
    assert errors == [], f"{len(errors)} failure(s), the first: {errors[0]!r}"
    await settle()
    remaining = await session.get_items()
    names = [content(i) for i in returned]
    assert len(names) == len(set(names)), "an item was returned twice"
    assert sorted(names + [content(i) for i in remaining]) == sorted(
        content(i) for i in everything
    ), "a popped item was neither returned nor kept"
    assert remaining == [i for i in everything if i in remaining], "kept items out of order"
    assert len(await session.get_items()) == len(remaining)
    assert await session.pop_item() == (remaining[-1] if remaining else None)


def exchange(n: int) -> list[TResponseInputItem]:
    """One exchange: a question, a tool call and its output, and the answer."""
    call = f"call{n}"
    return [
        tagged(f"q{n}"),
        cast(
            TResponseInputItem,
            {"type": "function_call", "call_id": call, "name": "f", "arguments": "{}"},
        ),
        cast(TResponseInputItem, {"type": "function_call_output", "call_id": call, "output": "ok"}),
        tagged(f"a{n}", role="assistant"),
    ]


async def test_cancelled_pop_turns_return_or_keep_whole_exchanges(backend: Backend) -> None:
    """60 pop_turn cancelled at random, one at a time: 0 torn exchanges, 0 lost, 0 duplicated.

    Each exchange (written in two batches) is either returned whole by one call or still
    stored whole, in its place.
    """
    rng = random.Random()
    session = backend.session("turns")
    for n in [*range(TURNS), *range(1000, 1005)]:
        await session.add_items(exchange(n)[:2])
        await session.add_items(exchange(n)[2:])
    typical = await measure(session.pop_turn)  # takes the five exchanges from 1000 on
    returned: list[list[TResponseInputItem]] = []
    errors: list[BaseException] = []
    for _ in range(TURN_ROUNDS):
        # One at a time: a pop_turn running while a cancelled one puts its rows back can take
        # part of that exchange (test_cancelled_pop_turn_puts_the_exchange_back_at_once).
        outcomes = await run_cancelled([session.pop_turn()], rng, typical)
        errors += failures(outcomes)
        returned += [o for o in outcomes if isinstance(o, list)]
    assert errors == [], f"{len(errors)} failure(s), the first: {errors[0]!r}"
    await settle()
    remaining = await session.get_items()
    kept = [int(content(i)[1:]) for i in remaining[::4]]
    assert remaining == [i for n in kept for i in exchange(n)], "a kept exchange is torn"
    taken = [int(content(turn[0])[1:]) for turn in returned]
    assert returned == [exchange(n) for n in taken], "a returned exchange is torn"
    assert sorted(taken + kept) == list(range(TURNS)), "an exchange was lost or duplicated"
    assert await session.pop_turn() == exchange(kept[-1])


@pytest.mark.parametrize(
    "sql_target",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param(
            "mariadb",
            marks=pytest.mark.mariadb,
        ),
    ],
    indirect=True,
)
async def test_cancelled_first_call_still_raises_cancelled(sql_target: SqlTarget) -> None:
    """10 first calls cancelled while they create the tables: each raises CancelledError.

    The session's next call then creates the tables and works. (On SQLite such a cancellation
    can leave the file locked: test_cancelled_table_creation_leaves_sqlite_unlocked.)
    """
    created: list[tuple[str, str]] = []
    outcomes: list[object] = []
    try:
        for attempt in range(10):
            tables = unique_tables()
            created.append(tables)
            session = SQLAlchemySession(
                "first",
                engine=sql_target.engine,
                create_tables=True,
                sessions_table=tables[0],
                messages_table=tables[1],
            )
            task = asyncio.ensure_future(session.add_items([tagged("x")]))
            await asyncio.sleep(0.001 * (attempt + 1))
            task.cancel()
            outcomes += await asyncio.gather(task, return_exceptions=True)
            assert await session.get_items() in ([], [tagged("x")])
            await session.aclose()
        wrong = [o for o in outcomes if o is not None and not isinstance(o, asyncio.CancelledError)]
        assert wrong == [], f"{len(wrong)} cancelled call(s) raised {wrong[0]!r}"
    finally:
        for tables in created:
            await drop_tables(sql_target.engine, *tables)


@pytest.mark.sqlite
@pytest.mark.skipif(sys.platform == "win32", reason="the writers' lock file uses flock")
@pytest.mark.parametrize("shared", [False, True], ids=["own-store", "shared-store"])
async def test_cancelled_add_items_is_settled_when_it_raises(tmp_path: Path, shared: bool) -> None:
    """A cancelled add_items whose write had begun raises only once its batch is settled.

    The write is held at the writers' lock file while the caller is cancelled; the read right
    after the CancelledError and a read 0.5 s later must agree.
    """
    path = tmp_path / "settle.db"
    store = SQLiteStore(path) if shared else None
    session = store.session("s") if store else SQLiteSession("s", path)
    await session.add_items([tagged("before")])
    try:
        with writers_held(path) as release:
            task = asyncio.ensure_future(session.add_items([tagged("cancelled")]))
            await asyncio.sleep(0.1)  # the worker has taken the batch and waits for the lock
            task.cancel()
            asyncio.get_running_loop().call_later(0.3, release)
            outcome = (await asyncio.gather(task, return_exceptions=True))[0]
            assert isinstance(outcome, asyncio.CancelledError)
            right_after = await session.get_items()
            await asyncio.sleep(0.5)
            assert await session.get_items() == right_after, "the cancelled batch appeared later"
    finally:
        await session.aclose()
        if store is not None:
            await store.aclose()


@pytest.mark.sqlite
@pytest.mark.skipif(sys.platform == "win32", reason="the writers' lock file uses flock")
async def test_cancelled_pop_turn_puts_the_exchange_back_at_once(tmp_path: Path) -> None:
    """While a cancelled pop_turn puts its exchange back, no read sees part of the exchange."""
    path = tmp_path / "turns.db"
    everything = [i for n in range(3) for i in exchange(n)]
    async with SQLiteSession("s", path) as session:
        await session.add_items(everything)
        with writers_held(path):
            task = asyncio.ensure_future(session.pop_turn())
            await asyncio.sleep(0.1)  # the pop has begun: it waits for the lock
            task.cancel()
        seen = []
        while not task.done():
            seen.append(len(await session.get_items()))
            await asyncio.sleep(0)
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        assert isinstance(outcome, asyncio.CancelledError)
        assert await session.get_items() == everything
        assert [count for count in seen if count % 4] == [], "a read saw part of an exchange"


def write_locked(path: Path) -> bool:
    """Whether some connection holds the SQLite file's write lock right now."""
    conn = sqlite3.connect(path, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()
    return False


@pytest.mark.sqlite
async def test_cancelled_table_creation_leaves_sqlite_unlocked(tmp_path: Path) -> None:
    """60 first calls cancelled while creating tables on SQLite: the file is never left locked.

    Each uses a new file whose engine already has a pooled connection; 50 ms after each
    cancelled call nothing may hold the write lock.
    """
    rng = random.Random()
    locked_at: int | None = None
    try:
        for attempt in range(60):
            path = tmp_path / f"first-{attempt}.db"
            engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
            async with SQLAlchemySession(
                "warm",
                engine=engine,
                create_tables=True,
                sessions_table="w_s",
                messages_table="w_m",
            ) as warm:
                await warm.get_items()
            session = SQLAlchemySession("first", engine=engine, create_tables=True)
            task = asyncio.ensure_future(session.add_items([tagged("x")]))
            await asyncio.sleep(rng.uniform(0.0002, 0.0008))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            del task
            await session.aclose()
            await asyncio.sleep(0.05)
            locked = write_locked(path)
            await engine.dispose()
            if locked:
                locked_at = attempt
                break
    finally:
        with warnings.catch_warnings():  # the leaked aiosqlite connection warns when collected
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    assert locked_at is None, f"cancelled call {locked_at} left the database write-locked"

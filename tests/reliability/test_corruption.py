"""Garbage written straight into stored rows: reads skip it with a warning and never crash.

Between batches of valid items the test writes rows no session would write: random text, JSON
cut short, JSON that is not an object, objects followed by more data, 100,000 nested brackets,
a megabyte of noise, and on SQLite also BLOBs of random bytes (invalid UTF-8 among them) and
numbers. Reads must return exactly the valid items, log a warning on the ``agent_sessions``
logger, and raise CorruptItemError when strict; ``pop_item`` must return the valid items newest
first and leave every garbage row where it was.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent_sessions import (
    CorruptItemError,
    RedisSession,
    SQLAlchemySession,
    SQLiteSession,
    SQLiteStore,
)
from agent_sessions.core import StoreSession
from tests.conftest import count_rows_sqlite
from tests.redis_server import redis_harness
from tests.reliability.conftest import SqlTarget

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SESSION = "garbled"
GOOD, GARBAGE = 100, 200
"""How many valid items and garbage rows each backend holds."""


def good(n: int) -> dict[str, Any]:
    """The ``n``-th valid item."""
    return {"role": "user", "content": f"valid {n}", "n": n}


SAMPLE = json.dumps(good(7))
"""The text of a valid row, for garbage made from it."""

TEXT_GARBAGE: list[Callable[[random.Random], str]] = [
    # random characters (no NUL, no surrogates: PostgreSQL refuses both in TEXT)
    lambda r: "".join(chr(r.randrange(1, 0xD800)) for _ in range(r.randrange(1, 60))),
    lambda r: SAMPLE[: r.randrange(len(SAMPLE))],  # cut short
    lambda r: r.choice(["[1, 2]", "42", '"text"', "null", "true", "[]", "", "   ", "{", "}"]),
    lambda r: SAMPLE + r.choice(["x", "{}", SAMPLE, ",", "]"]),  # more data after the object
    lambda r: "[" * r.randrange(1_000, 100_000),
    lambda r: '{"a":' * r.randrange(1_000, 20_000),
    lambda r: bytes(r.randrange(1, 256) for _ in range(r.randrange(1, 200))).decode("latin-1"),
    lambda r: SAMPLE.replace('"', "'"),
    lambda r: "".join(r.choices('{}[]":,0123456789abc ', k=1_000_000)),
]
"""Kinds of garbage that every database stores as text."""


def text_garbage(rng: random.Random) -> str:
    """A row no session writes, of a random kind; a megabyte of noise only now and then."""
    kinds = TEXT_GARBAGE if rng.random() < 0.02 else TEXT_GARBAGE[:-1]
    return rng.choice(kinds)(rng)


def sqlite_garbage(rng: random.Random) -> object:
    """A row only SQLite can hold: random bytes as a BLOB, or a number; else text garbage."""
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 1:
        return b"\xff\xfe" + json.dumps(good(7)).encode()
    if kind == 2:
        return json.dumps(good(7)).encode()  # a BLOB, even though its bytes are JSON
    if kind == 3:
        return rng.choice([42, 3.5, -1])
    return text_garbage(rng)


def redis_garbage(rng: random.Random) -> object:
    """A value only a byte store holds: random bytes (invalid UTF-8 among them); else text."""
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if kind == 1:
        return b"\xff\xfe" + json.dumps(good(7)).encode()
    return text_garbage(rng)


@dataclass
class Garbled:
    """A session, how to write raw rows into its table, and how to count them."""

    session: StoreSession
    write_raw: Callable[[object], Awaitable[None]]
    count: Callable[[], Awaitable[int]]
    garbage: Callable[[random.Random], object]
    strict: Callable[[], StoreSession]
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


def _sqlite_writer(
    path: Path, table: str = "agent_messages"
) -> Callable[[object], Awaitable[None]]:
    async def write_raw(data: object) -> None:
        conn = sqlite3.connect(path)
        try:
            with conn:
                conn.execute(
                    f"INSERT INTO {table} (session_id, message_data) VALUES (?, ?)",
                    (SESSION, data),
                )
        finally:
            conn.close()

    return write_raw


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("sqlite-shared", marks=pytest.mark.sqlite),
        pytest.param("sqlalchemy-sqlite", marks=pytest.mark.sqlite),
        pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
        pytest.param("sqlalchemy-mariadb", marks=pytest.mark.mariadb),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def garbled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Garbled]:
    """A session on a fresh database of each backend, with raw access to its rows."""
    name: str = request.param
    path = tmp_path / "garbled.db"

    async def sqlite_count() -> int:
        return count_rows_sqlite(path, SESSION)

    if name == "redis":
        harness = redis_harness(tmp_path)
        session_of: Any = harness.open

        async def write_redis(data: object) -> None:
            await harness.write_raw(SESSION, data)  # type: ignore[arg-type,misc]

        async def count_redis() -> int:
            return await harness.count_rows(SESSION)  # type: ignore[misc,no-any-return]

        garbled = Garbled(
            session_of(SESSION),
            write_redis,
            count_redis,
            redis_garbage,
            lambda: RedisSession(
                SESSION,
                redis_client=session_of(SESSION).redis_client,
                key_prefix=session_of(SESSION).key_prefix,
                strict=True,
            ),
            list(harness.cleanup),  # type: ignore[arg-type]
        )
    elif name == "sqlite":
        session = SQLiteSession(SESSION, path)
        garbled = Garbled(
            session,
            _sqlite_writer(path),
            sqlite_count,
            sqlite_garbage,
            lambda: SQLiteSession(SESSION, path, strict=True),
        )
    elif name == "sqlite-shared":
        store = SQLiteStore(path)
        garbled = Garbled(
            store.session(SESSION),
            _sqlite_writer(path),
            sqlite_count,
            sqlite_garbage,
            lambda: store.session(SESSION, strict=True),
            [store.aclose],
        )
    else:
        target = SqlTarget(name.removeprefix("sqlalchemy-"), tmp_path)

        def open_session(strict: bool = False) -> SQLAlchemySession:
            return SQLAlchemySession(
                SESSION,
                engine=target.engine,
                create_tables=True,
                sessions_table=target.tables[0],
                messages_table=target.tables[1],
                strict=strict,
            )

        async def write_sql(data: object) -> None:
            await target.insert_raw(SESSION, data)  # type: ignore[arg-type]

        async def count_sql() -> int:
            return len(await target.rows(SESSION))

        garbage = text_garbage
        if target.kind == "sqlite":
            path = Path(target.engine.url.database or "")
            write_sql, garbage = _sqlite_writer(path, target.tables[1]), sqlite_garbage  # type: ignore[assignment]
        garbled = Garbled(
            open_session(),
            write_sql,
            count_sql,
            garbage,
            lambda: open_session(strict=True),
            [target.cleanup],
        )
    yield garbled
    await garbled.session.aclose()
    for close in garbled.closers:
        await close()


def warnings_about(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged on ``agent_sessions`` about the session, since the last clear."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "agent_sessions"
        and record.levelno == logging.WARNING
        and repr(SESSION) in record.getMessage()
    ]


async def test_garbage_rows_are_skipped_never_returned_never_deleted(
    garbled: Garbled, caplog: pytest.LogCaptureFixture
) -> None:
    """200 garbage rows among 100 items per backend: 0 crashes, 0 returned, 0 deleted.

    Every read returns exactly the valid items with a logged warning, a strict read raises
    CorruptItemError, and pop_item takes back the 100 valid items newest first.
    """
    rng = random.Random(20240611)
    session = garbled.session
    items = [good(n) for n in range(GOOD)]
    garbage_left = GARBAGE
    for start in range(0, GOOD, 10):
        await session.add_items(items[start : start + 10])  # type: ignore[arg-type]
        for _ in range(GARBAGE // 10):
            await garbled.write_raw(garbled.garbage(rng))
            garbage_left -= 1
    assert garbage_left == 0
    assert await garbled.count() == GOOD + GARBAGE

    caplog.clear()
    assert await session.get_items() == items
    assert warnings_about(caplog), "garbage was skipped without a warning"
    for limit in (1, 5, 10, 37, 100, 1000):
        assert await session.get_items(limit) == items[-limit:]

    strict = garbled.strict()
    with pytest.raises(CorruptItemError, match=repr(SESSION)):
        await strict.get_items()
    await strict.aclose()

    caplog.clear()
    popped = [await session.pop_item() for _ in range(GOOD)]
    assert popped == items[::-1]
    assert await session.pop_item() is None
    assert warnings_about(caplog)
    assert await garbled.count() == GARBAGE, "a pop deleted a garbage row"
    assert await session.get_items() == []
    await session.add_items([good(GOOD)])  # type: ignore[list-item]
    assert await session.get_items() == [good(GOOD)]


@pytest.mark.parametrize(
    "kind",
    [
        "sqlite",
        "sqlite-shared",
        "sqlalchemy-sqlite",
    ],
)
@pytest.mark.sqlite
async def test_invalid_utf8_text_row_is_skipped(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A TEXT row of invalid UTF-8 among 3 items: the 3 are read and popped, the row stays."""
    path = tmp_path / "utf8.db"
    store = SQLiteStore(path) if kind == "sqlite-shared" else None
    if store is not None:
        session: StoreSession = store.session(SESSION)
    elif kind == "sqlite":
        session = SQLiteSession(SESSION, path)
    else:
        session = SQLAlchemySession.from_url(
            SESSION, url=f"sqlite+aiosqlite:///{path}", create_tables=True
        )
    try:
        await session.add_items([good(0), good(1)])  # type: ignore[list-item]
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO agent_messages (session_id, message_data) VALUES (?, CAST(? AS TEXT))",
                (SESSION, b'\xff\xfe{"role": "user"}'),
            )
        conn.close()
        await session.add_items([good(2)])  # type: ignore[list-item]
        caplog.clear()
        assert await session.get_items() == [good(0), good(1), good(2)]
        assert warnings_about(caplog), "the row was skipped without a warning"
        assert await session.get_items(2) == [good(1), good(2)]
        if isinstance(session, SQLiteSession):
            strict = SQLiteSession(SESSION, path, strict=True)
            with pytest.raises(CorruptItemError, match=repr(SESSION)):
                await strict.get_items()
            await strict.aclose()
        assert await session.pop_item() == good(2)
        assert await session.pop_item() == good(1)
        assert count_rows_sqlite(path, SESSION) == 2, "the undecodable row was deleted"
        await session.add_items([good(3)])  # type: ignore[list-item]
        assert await session.get_items() == [good(0), good(3)]
    finally:
        await session.aclose()
        if store is not None:
            await store.aclose()

"""Processes killed with SIGKILL in the middle of ``add_items``: every batch is whole or absent.

Each victim (``children.crash_victim``) writes numbered batches of 1 to 40 items to its own
session in a loop, logging ``start b`` before and ``ack b`` after each ``add_items``. The test
runs two victims at a time on one database and kills each at a random moment, 50 kills in all,
then reads every row raw: each batch must be complete, in order and contiguous, or absent; each
acknowledged batch must be there; and the database must open clean and take new writes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pytest

from agent_sessions import SQLiteSession, StoreSession
from agent_sessions.serialization import JsonCodec
from tests.reliability.children import Target, batch_size, crash_victim, item, parse
from tests.reliability.conftest import SqlTarget, integrity, server_params, sqlite_rows

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KILLS = 50
AT_ONCE = 2
LONGEST_LIFE = 0.25
"""Seconds a victim may write before it is killed (drawn uniformly from 0 to this)."""

_CODEC = JsonCodec()


class Log:
    """What a victim said before it died."""

    def __init__(self, path: Path) -> None:
        lines = path.read_text().split("\n") if path.exists() else []
        self.ready = "ready" in lines
        self.started = {int(line.split()[1]) for line in lines if line.startswith("start ")}
        self.acked = {int(line.split()[1]) for line in lines if line.startswith("ack ")}

    @property
    def in_flight(self) -> bool:
        """Whether the victim died inside an ``add_items`` call."""
        return bool(self.started - self.acked)


def kill_victims(
    context: ForkServerContext,
    target: Target,
    tmp_path: Path,
    victim_main: Callable[[Target, int, str], None] = crash_victim,
) -> list[Log]:
    """Start and SIGKILL ``KILLS`` victims, ``AT_ONCE`` at a time; return their logs."""
    rng = random.Random()
    logs: list[Log] = []
    for first in range(0, KILLS, AT_ONCE):
        victims = range(first, first + AT_ONCE)
        paths = {v: tmp_path / f"victim-{v}.log" for v in victims}
        procs = {
            v: context.Process(target=victim_main, args=(target, v, str(paths[v]))) for v in victims
        }
        for proc in procs.values():
            proc.start()
        deadline = time.monotonic() + 30
        while not all(Log(path).ready for path in paths.values()):
            assert time.monotonic() < deadline, "a victim never opened its session"
            assert all(proc.is_alive() for proc in procs.values()), "a victim died on its own"
            time.sleep(0.002)
        began = time.monotonic()
        for delay, v in sorted((rng.uniform(0, LONGEST_LIFE), v) for v in victims):
            time.sleep(max(0.0, began + delay - time.monotonic()))
            assert procs[v].is_alive(), f"victim {v} stopped before it was killed"
            procs[v].kill()
        for proc in procs.values():
            proc.join(10)
            assert proc.exitcode == -9
        logs.extend(Log(paths[v]) for v in victims)
    return logs


def check_batches(victim: int, log: Log, rows: Sequence[tuple[int, object]]) -> None:
    """Each of a victim's batches is whole, in order and contiguous, or absent; acked ones stay."""
    tags = [parse(dict(_CODEC.decode(str(data)))) for _, data in rows]
    assert all(tag[0] == victim for tag in tags)
    present: list[int] = []
    position = 0
    while position < len(tags):
        number = tags[position][1]
        size = batch_size(number)
        expected = [(victim, number, i) for i in range(size)]
        assert tags[position : position + size] == expected, (
            f"victim {victim}: batch {number} is not whole: {tags[position : position + size]}"
        )
        present.append(number)
        position += size
    assert present == sorted(set(present)), f"victim {victim}: batches out of order"
    assert log.acked <= set(present), f"victim {victim}: acknowledged batches lost"
    assert set(present) <= log.started, f"victim {victim}: a batch that was never written"


def check_all(
    logs: list[Log], rows: Callable[[str], Sequence[tuple[int, object]]]
) -> tuple[int, int]:
    """Check every victim; return how many died mid-write and how many batches were acked."""
    for victim, log in enumerate(logs):
        check_batches(victim, log, rows(f"victim-{victim}"))
    return sum(log.in_flight for log in logs), sum(len(log.acked) for log in logs)


async def still_usable(session: StoreSession) -> None:
    """A new session on the database writes and reads back a batch."""
    batch = [item(f"0:{n}:0") for n in range(3)]
    async with session:
        await session.add_items(batch)
        assert await session.get_items(3) == batch


@pytest.mark.sqlite
async def test_sigkill_mid_write_on_sqlite(forkserver: ForkServerContext, tmp_path: Path) -> None:
    """50 SIGKILLs mid-add_items on SQLite: 0 torn batches, 0 acked lost, integrity_check ok."""
    path = tmp_path / "crash.db"
    logs = await asyncio.to_thread(kill_victims, forkserver, Target("sqlite", str(path)), tmp_path)
    assert integrity(path) == ["ok"]
    in_flight, acked = check_all(logs, lambda session_id: sqlite_rows(path, session_id))
    assert in_flight >= KILLS // 2, f"only {in_flight} of {KILLS} kills landed mid-write"
    assert acked > 0
    await still_usable(SQLiteSession("after", path))
    assert integrity(path) == ["ok"]


@pytest.mark.parametrize("sql_target", server_params("sqlite"), indirect=True)
async def test_sigkill_mid_write_through_sqlalchemy(
    forkserver: ForkServerContext, sql_target: SqlTarget, tmp_path: Path
) -> None:
    """50 SIGKILLs mid-add_items through SQLAlchemySession: 0 torn batches, 0 acked lost.

    The server (or SQLite's journal) rolls back the dead connection's transaction.
    """
    logs = await asyncio.to_thread(kill_victims, forkserver, sql_target.target, tmp_path)
    rows = {f"victim-{v}": await sql_target.rows(f"victim-{v}") for v in range(KILLS)}
    in_flight, acked = check_all(logs, rows.__getitem__)
    assert in_flight >= KILLS // 2, f"only {in_flight} of {KILLS} kills landed mid-write"
    assert acked > 0
    await still_usable(sql_target.target.open("after"))
    if sql_target.kind == "sqlite":
        assert integrity(Path(sql_target.engine.url.database or "")) == ["ok"]

"""PostgreSQL stopped and started again while sessions are in use.

Four sessions write in the background (three from ``from_url``, one on a caller's engine) and a
fifth sits idle with a pooled connection. The test stops the server for about two seconds with
``pg_ctlcluster``, calls every session during the outage, starts the server again and goes on
with the very same objects. The outage is kept short, and the server is started again whatever
happens, because other work on this machine may be using it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import (
    SQLAlchemySession,
    StorageError,
    StorageUnavailableError,
    StoreSession,
)
from tests.conftest import servers_required
from tests.reliability.children import Target, item, parse
from tests.sql_servers import database_url, drop_tables, unique_tables

pytestmark = [pytest.mark.reliability, pytest.mark.postgres, pytest.mark.slow]

HOST, PORT = "127.0.0.1", 5432
WHERE = f"{HOST}:{PORT}"
OUTAGE = 2.0
"""Seconds the server stays down."""
QUICK = 2.0
"""Seconds within which a call during the outage must have failed."""
REFUSED, RECOVERY = 10**6, 10**6 + 1
"""Batch numbers of the write made during the outage and of the first one after it."""


def cluster_command(action: str) -> list[str]:
    """The ``pg_ctlcluster`` command line that runs ``action`` on the local cluster."""
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir() if p.is_dir())
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action]


def can_control_server() -> str | None:
    """Why this machine cannot stop and start its PostgreSQL, or None if it can."""
    if shutil.which("pg_ctlcluster") is None:
        return "pg_ctlcluster is not installed"
    if not Path("/etc/postgresql").is_dir() or not any(Path("/etc/postgresql").iterdir()):
        return "no local PostgreSQL cluster under /etc/postgresql"
    return None


def reachable() -> bool:
    """Whether PostgreSQL accepts TCP connections."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


async def cluster(action: str) -> None:
    """Run ``pg_ctlcluster ... action`` and fail the test if it does not succeed."""
    proc = await asyncio.create_subprocess_exec(
        *cluster_command(action),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"pg_ctlcluster {action} failed: {output.decode()}"


async def until(condition: bool, seconds: float) -> None:
    """Wait until PostgreSQL's reachability equals ``condition``."""
    deadline = time.monotonic() + seconds
    while reachable() is not condition:
        assert time.monotonic() < deadline, f"PostgreSQL reachable is not {condition}"
        await asyncio.sleep(0.05)


@dataclass
class Writer:
    """A session written to in the background; it records what was acknowledged and refused."""

    number: int
    session: StoreSession
    acked: list[int] = field(default_factory=list)
    attempted: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    acked_after_restart: int = 0
    restarted: bool = False

    async def run(self, stop: asyncio.Event) -> None:
        """Add numbered batches of two items (reading now and then) until ``stop`` is set."""
        seq = 0
        while not stop.is_set():
            self.attempted.append(seq)
            try:
                await self.session.add_items(
                    [item(f"{self.number}:{seq}:0"), item(f"{self.number}:{seq}:1")]
                )
                self.acked.append(seq)
                self.acked_after_restart += self.restarted
                if seq % 10 == 0:
                    await self.session.get_items(4)
            except Exception as exc:  # noqa: BLE001 - every failure is judged by the test
                self.errors.append(exc)
            seq += 1
            await asyncio.sleep(0.01)


async def check_outage_call(call: Awaitable[object], what: str) -> None:
    """A call during the outage fails quickly with StorageUnavailableError naming the server."""
    began = time.monotonic()
    with pytest.raises(StorageUnavailableError) as raised:
        await call
    took = time.monotonic() - began
    assert took < QUICK, f"{what} took {took:.1f} s to fail"
    assert WHERE in str(raised.value), f"{what}: {raised.value}"
    assert "cannot reach" in str(raised.value) or "cannot use" in str(raised.value)


async def outage(writers: list[Writer]) -> None:
    """Stop PostgreSQL, call every session while it is down, and start it again."""
    try:
        await cluster("stop")
        await until(False, 30)
        for writer in writers:
            name = f"busy-{writer.number}"
            await check_outage_call(writer.session.get_items(), f"{name} read")
            refused = [item(f"{writer.number}:{REFUSED}:0")]
            await check_outage_call(writer.session.add_items(refused), f"{name} write")
        await asyncio.sleep(OUTAGE)
    finally:
        if not reachable():
            await cluster("start")
        await until(True, 60)


async def check_writer(writer: Writer) -> None:
    """The writer recovered, raised only clear errors, and lost no acknowledged batch."""
    name = f"busy-{writer.number}"
    assert writer.acked_after_restart > 0, f"{name} did not recover"
    foreign = [e for e in writer.errors if not isinstance(e, StorageError)]
    assert foreign == [], f"{name} raised {foreign!r}"
    assert all(WHERE in str(e) for e in writer.errors)
    stored = [parse(i) for i in await writer.session.get_items()]
    assert stored.count((writer.number, RECOVERY, 0)) == 1
    stored.remove((writer.number, RECOVERY, 0))
    batches = [tag[1] for tag in stored[::2]]
    assert stored == [(writer.number, seq, half) for seq in batches for half in (0, 1)]
    assert batches == sorted(set(batches))
    assert set(writer.acked) <= set(batches), f"{name}: an acknowledged batch was lost"
    assert set(batches) <= set(writer.attempted)


def require_cluster_control() -> None:
    """Skip (or fail, when servers are required) unless this machine can restart PostgreSQL."""
    reason = can_control_server()
    if reason is not None:
        if servers_required():
            pytest.fail(f"{reason}: cannot restart PostgreSQL, and servers are required")
        pytest.skip(f"{reason}: cannot restart PostgreSQL")


@pytest.mark.slow
async def test_postgres_restart_while_sessions_are_in_use(tmp_path: Path) -> None:
    """PostgreSQL down ~2 s under 5 sessions: clear errors, same objects recover, 0 acked lost.

    Every call made while the server is down raises StorageUnavailableError in under 2 s naming
    127.0.0.1:5432; every error any call raised is a StorageError; each session's first call
    after the restart succeeds, the idle one's too; every acknowledged batch is stored once and
    whole, and no batch appears that was not written.
    """
    url = database_url("postgres", tmp_path)
    require_cluster_control()
    sessions_table, messages_table = unique_tables()
    target = Target("sqlalchemy", url, sessions_table, messages_table)
    engine = create_async_engine(url)
    sessions = [*(target.open(f"busy-{n}") for n in range(3)), target.open("busy-3", engine)]
    idle = target.open("idle")
    writers = [Writer(n, session) for n, session in enumerate(sessions)]
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await idle.add_items([item("9:0:0")])
        tasks = [asyncio.create_task(writer.run(stop)) for writer in writers]
        await asyncio.sleep(0.5)
        await outage(writers)
        for writer in writers:
            writer.restarted = True
            await writer.session.add_items([item(f"{writer.number}:{RECOVERY}:0")])
        await idle.add_items([item("9:1:0")])
        assert [parse(i) for i in await idle.get_items()] == [(9, 0, 0), (9, 1, 0)]
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        for writer in writers:
            await check_writer(writer)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not reachable():  # only if the start in outage() failed
            with contextlib.suppress(AssertionError):
                await cluster("start")
        await drop_tables(engine, sessions_table, messages_table)
        for session in [*sessions, idle]:
            await session.aclose()
        await engine.dispose()


# What a restart does to a call in flight, reproduced without one --------------------------------


async def cut_off_write(session: SQLAlchemySession, name: str, tables: tuple[str, str]) -> object:
    """Run an add_items that the server terminates mid-call; return how the call ended.

    Another connection holds the session's row lock, so the write waits inside the server; then
    the server terminates the waiting connection, as a restart or a failover does.
    """
    admin = await asyncpg.connect(host=HOST, port=PORT, user="postgres", database="test")
    try:
        holder = admin.transaction()
        await holder.start()
        await admin.execute(f"SELECT 1 FROM {tables[0]} WHERE session_id = 's' FOR UPDATE")
        task = asyncio.ensure_future(session.add_items([item("0:1:0")]))
        waiting = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = $1 AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 10
        while not await admin.fetch(waiting, name):
            assert time.monotonic() < deadline, "the write never reached the server"
            await asyncio.sleep(0.01)
        killer = await asyncpg.connect(host=HOST, port=PORT, user="postgres", database="test")
        try:
            await killer.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                name,
            )
        finally:
            await killer.close()
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        await holder.rollback()
        return outcome
    finally:
        await admin.close()


@pytest.fixture
async def tagged_tables(tmp_path: Path) -> AsyncIterator[tuple[str, str, str, str]]:
    """The PostgreSQL URL, fresh tables and an application name that tags one test's connections."""
    url = database_url("postgres", tmp_path)
    tables = unique_tables()
    yield url, *tables, f"agent-sessions-{tables[1]}"
    engine = create_async_engine(url)
    await drop_tables(engine, *tables)
    await engine.dispose()


async def test_write_cut_off_by_the_server_is_unavailable(
    tagged_tables: tuple[str, str, str, str],
) -> None:
    """A write whose connection the server terminates mid-call raises StorageUnavailableError."""
    url, sessions_table, messages_table, name = tagged_tables
    async with SQLAlchemySession.from_url(
        "s",
        url=url,
        engine_kwargs={"connect_args": {"server_settings": {"application_name": name}}},
        create_tables=True,
        sessions_table=sessions_table,
        messages_table=messages_table,
    ) as session:
        await session.add_items([item("0:0:0")])
        outcome = await cut_off_write(session, name, (sessions_table, messages_table))
        assert isinstance(outcome, StorageUnavailableError), repr(outcome)
        assert WHERE in str(outcome)


async def test_next_call_after_a_cut_off_write_succeeds(
    tagged_tables: tuple[str, str, str, str],
) -> None:
    """On a caller's engine, the call after a write the server cut off succeeds, and stores."""
    url, sessions_table, messages_table, name = tagged_tables
    engine = create_async_engine(url, connect_args={"server_settings": {"application_name": name}})
    try:
        async with SQLAlchemySession(
            "s",
            engine=engine,
            create_tables=True,
            sessions_table=sessions_table,
            messages_table=messages_table,
        ) as session:
            await session.add_items([item("0:0:0")])
            outcome = await cut_off_write(session, name, (sessions_table, messages_table))
            assert isinstance(outcome, StorageError), repr(outcome)
            await session.add_items([item("0:2:0")])
            assert [parse(i) for i in await session.get_items()] == [(0, 0, 0), (0, 2, 0)]
    finally:
        await engine.dispose()

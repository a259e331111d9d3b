"""What the reliability tests run in child processes, through the public API only.

The tests start these functions in processes of multiprocessing's ``forkserver`` context. Its
server is a fresh interpreter (like ``spawn``) that imports this module, and so the SDK and
agent_sessions, once; every child is then forked from that single-threaded, warmed-up process.
Importing the SDK costs about two seconds of CPU, so this is what lets a test start sixteen
writers, or fifty processes to kill, in a moment.

Children report through files, never through pipes or locks that a SIGKILL could leave half
written or held: a writer leaves a JSON report, a crash victim appends one line per event to a
log opened with ``O_APPEND``.
"""

from __future__ import annotations

import asyncio
import json
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from agents.items import TResponseInputItem
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import AdvancedSQLiteSession, SQLAlchemySession, SQLiteSession, StoreSession

__all__ = [
    "Target",
    "crash_victim",
    "generation",
    "item",
    "parse",
    "replace_victim",
    "turn_writer",
]

PAD = "x" * 120
"""Makes items the size of a short chat message."""


@dataclass(frozen=True)
class Target:
    """Where sessions live: a SQLite file, or a URL (``SQLAlchemySession``).

    A file is opened with ``SQLiteSession``, or ``AdvancedSQLiteSession`` for the ``advanced`` kind.

    It is pickled to the children, so it holds plain values only.
    """

    kind: str
    where: str
    sessions_table: str = "agent_sessions"
    messages_table: str = "agent_messages"

    def open(self, session_id: str, engine: Any = None) -> StoreSession:
        """Open a session on the target; SQLAlchemy sessions share ``engine`` if one is given."""
        if self.kind == "advanced":
            return AdvancedSQLiteSession(session_id=session_id, db_path=self.where)
        if self.kind == "sqlite":
            return SQLiteSession(
                session_id,
                self.where,
                sessions_table=self.sessions_table,
                messages_table=self.messages_table,
            )
        if engine is not None:
            return SQLAlchemySession(
                session_id,
                engine=engine,
                create_tables=True,
                sessions_table=self.sessions_table,
                messages_table=self.messages_table,
            )
        return SQLAlchemySession.from_url(
            session_id,
            url=self.where,
            create_tables=True,
            sessions_table=self.sessions_table,
            messages_table=self.messages_table,
        )

    def engine(self) -> Any:
        """A new engine for the target's URL (SQLAlchemy targets only)."""
        return create_async_engine(self.where)


def item(tag: str) -> TResponseInputItem:
    """A user message whose content starts with ``tag`` (``writer:turn:index`` and so on)."""
    return cast(TResponseInputItem, {"role": "user", "content": f"{tag}|{PAD}"})


def parse(stored: Mapping[str, object]) -> tuple[int, ...]:
    """The numbers of the tag an :func:`item` carries."""
    return tuple(int(part) for part in str(stored["content"]).split("|")[0].split(":"))


# Sixteen writers -------------------------------------------------------------------------------


def turn_writer(
    target: Target, writer: int, *, turns: int, batch: int, start: Any, report: str
) -> None:
    """Write ``turns`` batches to the shared session and to the writer's own, then report.

    Each turn adds one batch of ``batch`` items to ``shared`` and one to ``own-<writer>`` at
    the same time; every 25th turn also reads both back. The report holds the errors (with
    their tracebacks) and how many turns were acknowledged.
    """
    start.wait(60)
    errors: list[str] = []
    acknowledged = 0
    try:
        acknowledged = asyncio.run(_write_turns(target, writer, turns, batch, errors))
    except BaseException:  # noqa: BLE001 - anything at all is reported to the test
        errors.append(traceback.format_exc())
    Path(report).write_text(json.dumps({"errors": errors, "acknowledged": acknowledged}))


async def _write_turns(
    target: Target, writer: int, turns: int, batch: int, errors: list[str]
) -> int:
    engine = target.engine() if target.kind != "sqlite" else None
    shared, own = target.open("shared", engine), target.open(f"own-{writer}", engine)
    acknowledged = 0
    try:
        for turn in range(turns):
            items = [item(f"{writer}:{turn}:{i}") for i in range(batch)]
            try:
                await asyncio.gather(shared.add_items(items), own.add_items(items))
                acknowledged += 1
                if turn % 25 == 24:
                    await shared.get_items(batch * 4)
                    mine = await own.get_items(batch)
                    if mine != items:
                        errors.append(f"turn {turn}: own session read back {mine!r}")
            except Exception:  # noqa: BLE001 - counted and reported, then the writer goes on
                errors.append(traceback.format_exc())
    finally:
        await own.aclose()
        await shared.aclose()
        if engine is not None:
            await engine.dispose()
    return acknowledged


# Crash victims ---------------------------------------------------------------------------------


def crash_victim(target: Target, victim: int, log: str) -> None:
    """Write numbered batches to session ``victim-<n>`` until killed, logging each step.

    The log gets ``ready`` once the session is open, then ``start <b>`` before and ``ack <b>``
    after each ``add_items`` of batch ``b`` (of ``batch_size(b)`` items tagged ``victim:b:i``).
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        asyncio.run(_write_until_killed(target, victim, fd))
    finally:
        os.close(fd)


def batch_size(number: int) -> int:
    """How many items crash batch ``number`` holds: 1 to 40, varied."""
    return 1 + (number * 7) % 40


async def _write_until_killed(target: Target, victim: int, fd: int) -> None:
    session = target.open(f"victim-{victim}")
    try:
        await session.get_items(1)  # opens the database, creating the tables if needed
        os.write(fd, b"ready\n")
        for number in range(100_000):
            items = [item(f"{victim}:{number}:{i}") for i in range(batch_size(number))]
            os.write(fd, f"start {number}\n".encode())
            await session.add_items(items)
            os.write(fd, f"ack {number}\n".encode())
    finally:
        await session.aclose()


def generation(victim: int, number: int) -> list[TResponseInputItem]:
    """The history a replace victim swaps in as generation ``number``: 1 to 40 tagged items."""
    return [item(f"{victim}:{number}:{i}") for i in range(batch_size(number))]


def replace_victim(target: Target, victim: int, log: str) -> None:
    """Fill session ``victim-<n>`` with generation 0, then replace it by 1, 2, ... until killed.

    The log gets ``ready`` once generation 0 is stored, then ``start <g>`` before and
    ``ack <g>`` after each ``replace_items`` of generation ``g``.
    """
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        asyncio.run(_replace_until_killed(target, victim, fd))
    finally:
        os.close(fd)


async def _replace_until_killed(target: Target, victim: int, fd: int) -> None:
    session = target.open(f"victim-{victim}")
    try:
        await session.add_items(generation(victim, 0))
        os.write(fd, b"ready\n")
        for number in range(1, 100_000):
            os.write(fd, f"start {number}\n".encode())
            await session.replace_items(generation(victim, number))
            os.write(fd, f"ack {number}\n".encode())
    finally:
        await session.aclose()

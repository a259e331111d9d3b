"""Processes killed with SIGKILL in the middle of ``replace_items``: the old history or the new.

Each victim (``children.replace_victim``) stores generation 0 of its history, then replaces the
whole history by generation 1, 2, ... in a loop, logging ``start g`` before and ``ack g`` after
each ``replace_items``. After 50 kills (two victims at a time), every session must hold exactly
one generation, whole and in order: the last acknowledged one or the one in flight. A clear then
an add, the SDK's fallback without ``_atomic_replace_items``, would leave empty sessions here.
"""

from __future__ import annotations

import asyncio
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pytest
from agents.items import TResponseInputItem

from agent_sessions import StoreSession
from tests.reliability.children import Target, generation, parse, replace_victim
from tests.reliability.conftest import SqlTarget, integrity, server_params
from tests.reliability.test_crash import KILLS, Log, kill_victims

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def check_generation(victim: int, log: Log, items: list[TResponseInputItem]) -> bool:
    """The session holds one whole generation: the last acked or the one in flight.

    Returns:
        Whether it holds the generation that was in flight (the kill landed mid-replace and
        the new history had committed).
    """
    tags = [parse(dict(item)) for item in items]
    assert tags, f"victim {victim}: the session is empty"
    number = tags[0][1]
    assert items == generation(victim, number), f"victim {victim}: a mixed history {tags[:5]}"
    last_acked = max(log.acked, default=0)
    in_flight = max(log.started - log.acked, default=None)
    assert number in (last_acked, in_flight), (
        f"victim {victim}: holds generation {number}, not the last acked ({last_acked}) "
        f"or the one in flight ({in_flight})"
    )
    return number == in_flight


async def check_all(logs: list[Log], target: Target) -> tuple[int, int]:
    """Check every victim through a fresh session; return (mid-replace kills, acked replaces)."""
    for victim, log in enumerate(logs):
        session: StoreSession = target.open(f"victim-{victim}")
        async with session:
            check_generation(victim, log, await session.get_items())
    return sum(log.in_flight for log in logs), sum(len(log.acked) for log in logs)


@pytest.mark.sqlite
@pytest.mark.parametrize("kind", ["sqlite", "advanced"])
async def test_sigkill_mid_replace_on_sqlite(
    forkserver: ForkServerContext, tmp_path: Path, kind: str
) -> None:
    """50 SIGKILLs mid-replace_items on SQLite (plain and advanced): one whole generation each."""
    path = tmp_path / "replace.db"
    target = Target(kind, str(path))
    logs = await asyncio.to_thread(kill_victims, forkserver, target, tmp_path, replace_victim)
    assert integrity(path) == ["ok"]
    in_flight, acked = await check_all(logs, target)
    assert in_flight >= KILLS // 2, f"only {in_flight} of {KILLS} kills landed mid-replace"
    assert acked > 0


@pytest.mark.parametrize("sql_target", server_params(), indirect=True)
async def test_sigkill_mid_replace_through_sqlalchemy(
    forkserver: ForkServerContext, sql_target: SqlTarget, tmp_path: Path
) -> None:
    """50 SIGKILLs mid-replace_items on PostgreSQL and MariaDB: one whole generation each."""
    target = sql_target.target
    logs = await asyncio.to_thread(kill_victims, forkserver, target, tmp_path, replace_victim)
    in_flight, acked = await check_all(logs, target)
    assert in_flight >= KILLS // 2, f"only {in_flight} of {KILLS} kills landed mid-replace"
    assert acked > 0

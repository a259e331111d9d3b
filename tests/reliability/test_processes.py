"""Many processes writing one database at once: nothing fails, nothing is lost, order is kept.

Sixteen child processes (see ``children.turn_writer``) each run 300 turns. A turn adds one batch
of 3 items to the session they all share and, at the same moment, one to the writer's own
session; every 25th turn reads both back. Afterwards the parent reads every row raw and checks
the count, that no batch was split by another writer's rows, and that each writer's items come
in the order it wrote them.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import await_only

from agent_sessions.serialization import JsonCodec
from tests.reliability.children import Target, parse, turn_writer
from tests.reliability.conftest import SqlTarget, integrity, server_params, sqlite_rows
from tests.sql_servers import drop_tables, unique_tables

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

WRITERS = 16
TURNS = 300
BATCH = 3
_CODEC = JsonCodec()


def run_writers(context: ForkServerContext, target: Target, tmp_path: Path) -> list[dict[str, Any]]:
    """Start the writers together, wait for them all, and return their reports."""
    start = context.Event()
    reports = [tmp_path / f"writer-{w}.json" for w in range(WRITERS)]
    procs = [
        context.Process(
            target=turn_writer,
            args=(target, w),
            kwargs={"turns": TURNS, "batch": BATCH, "start": start, "report": str(reports[w])},
        )
        for w in range(WRITERS)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(240)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert [proc.exitcode for proc in procs] == [0] * WRITERS
    return [json.loads(report.read_text()) for report in reports]


def check_session(rows: Sequence[tuple[int, object]], writers: Sequence[int]) -> None:
    """Every writer's items are there once, in its order, and no batch is split."""
    tags = [parse(dict(_CODEC.decode(str(data)))) for _, data in rows]
    assert len(tags) == len(set(tags)) == len(writers) * TURNS * BATCH
    by_writer: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for tag in tags:
        by_writer[tag[0]].append(tag)
    for writer in writers:
        expected = [(writer, t, i) for t in range(TURNS) for i in range(BATCH)]
        assert by_writer[writer] == expected, f"writer {writer}'s items are out of order"
    for start in range(0, len(tags), BATCH):
        batch = tags[start : start + BATCH]
        assert len({tag[:2] for tag in batch}) == 1, f"a batch was split: {batch}"


def check_all(
    reports: list[dict[str, Any]], rows: Callable[[str], Sequence[tuple[int, object]]]
) -> None:
    """The figure: 0 errors, every turn acknowledged, 0 lost items, order kept everywhere."""
    errors = [error for report in reports for error in report["errors"]]
    assert errors == [], f"{len(errors)} error(s), the first:\n{errors[0]}"
    assert [report["acknowledged"] for report in reports] == [TURNS] * WRITERS
    check_session(rows("shared"), range(WRITERS))
    for writer in range(WRITERS):
        check_session(rows(f"own-{writer}"), [writer])


@pytest.mark.slow
@pytest.mark.sqlite
def test_sixteen_processes_on_one_sqlite_file(
    forkserver: ForkServerContext, tmp_path: Path
) -> None:
    """16 processes x 300 turns on one SQLite file: 0 errors, 0 lost items, order kept.

    9,600 batches (28,800 items) into one shared and sixteen own sessions, with reads in
    between; the file passes ``PRAGMA integrity_check`` afterwards.
    """
    path = tmp_path / "many.db"
    reports = run_writers(forkserver, Target("sqlite", str(path)), tmp_path)
    check_all(reports, lambda session_id: sqlite_rows(path, session_id))
    assert integrity(path) == ["ok"]


@pytest.mark.slow
@pytest.mark.parametrize("sql_target", server_params("sqlite"), indirect=True)
async def test_sixteen_processes_through_sqlalchemy(
    forkserver: ForkServerContext, sql_target: SqlTarget, tmp_path: Path
) -> None:
    """16 processes x 300 turns through SQLAlchemySession: 0 errors, 0 lost items, order kept.

    9,600 batches (28,800 items) into one shared and sixteen own sessions; the tables exist
    beforehand (racing creators: test_second_creator_waits_for_the_first_to_commit).
    """
    async with sql_target.target.open("setup") as setup:
        await setup.get_items()
    reports = await asyncio.to_thread(run_writers, forkserver, sql_target.target, tmp_path)
    sessions = ["shared", *(f"own-{w}" for w in range(WRITERS))]
    rows = {session_id: await sql_target.rows(session_id) for session_id in sessions}
    check_all(reports, rows.__getitem__)


@pytest.mark.parametrize(
    "sql_target",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
    indirect=True,
)
async def test_second_creator_waits_for_the_first_to_commit(sql_target: SqlTarget) -> None:
    """Two sessions creating the same tables, the first slow to commit: both succeed.

    The first creator's commit is held back 0.3 s (an event hook on its own engine); the
    second starts once the first holds the schema lock, and must wait for that commit rather
    than read the schema version before it.
    """
    url = sql_target.target.where
    sessions, messages = unique_tables()
    first_engine, second_engine = create_async_engine(url), create_async_engine(url)
    locked = asyncio.Event()

    def on_statement(conn: object, cursor: object, statement: str, *args: object) -> None:
        schema_locks = ("GET_LOCK(", "PG_ADVISORY_XACT_LOCK(", "BEGIN IMMEDIATE")
        if any(lock in statement.upper() for lock in schema_locks):
            locked.set()

    def slow_commit(conn: object) -> None:
        await_only(asyncio.sleep(0.3))

    event.listen(first_engine.sync_engine, "after_cursor_execute", on_statement)
    event.listen(first_engine.sync_engine, "commit", slow_commit)
    first, second = (
        Target("sqlalchemy", url, sessions, messages).open(name, engine)
        for name, engine in (("one", first_engine), ("two", second_engine))
    )
    try:
        task = asyncio.ensure_future(first.get_items())
        await asyncio.wait_for(locked.wait(), 10)
        assert await second.get_items() == []
        assert await task == []
    finally:
        await first.aclose()
        await second.aclose()
        await drop_tables(sql_target.engine, sessions, messages)
        await first_engine.dispose()
        await second_engine.dispose()

"""Provenance on SQLite files: schema v4, tagged writes, retries across processes, the SDK."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from agents import RunConfig, Runner
from agents.memory import SQLiteSession as SdkSQLiteSession

from agent_sessions import SQLiteSession
from agent_sessions.backends.sqlite import SQLiteStore
from agent_sessions.errors import ProvenanceConflictError
from agent_sessions.provenance import as_run
from agent_sessions.store import RowTag
from tests.provenance.test_session_layer import CHECK, desks, message

NO_TRACE = RunConfig(tracing_disabled=True)


def tag(position: int, digest: str = "d", run_id: str = "r") -> RowTag:
    """A tag of run ``run_id`` at ``position``."""
    return RowTag("agent", run_id, position, digest)


async def test_tagged_rows_read_back_and_a_repeat_stores_nothing(tmp_path: Path) -> None:
    """The store keeps each tag; the same batch again stores nothing; new positions land."""
    async with SQLiteStore(tmp_path / "t.db") as store:
        texts = [json.dumps(message("a")), json.dumps(message("b"))]
        assert await store.append_tagged("s", texts, [tag(0, "x"), tag(1, "y")]) == 2
        assert await store.append_tagged("s", texts, [tag(0, "x"), tag(1, "y")]) == 0
        assert await store.append_tagged("s", texts[:1], [tag(2, "x")]) == 1
        records = await store.records("s", None)
        assert [(r.agent_name, r.run_id, r.position) for r in records] == [
            ("agent", "r", 0),
            ("agent", "r", 1),
            ("agent", "r", 2),
        ]
        assert [r.text for r in await store.records("s", 1)] == texts[:1]


async def test_a_conflicting_digest_writes_nothing_of_the_batch(tmp_path: Path) -> None:
    """A stored position with another digest refuses the whole batch."""
    async with SQLiteStore(tmp_path / "t.db") as store:
        text = json.dumps(message("a"))
        await store.append_tagged("s", [text], [tag(1, "x")])
        with pytest.raises(ProvenanceConflictError) as caught:
            await store.append_tagged("s", [text, text], [tag(0, "new"), tag(1, "other")])
        assert caught.value.position == 1
        assert len(await store.records("s", None)) == 1


def _append_same_tags(path: str, start: Any) -> None:
    async def main() -> None:
        async with SQLiteStore(path) as store:
            start.wait()
            await store.append_tagged("s", ['{"role":"user","content":"x"}'], [tag(0, "x")])

    asyncio.run(main())


def run_together(target: Any, path: str, processes: int = 2) -> None:
    """Run ``target(path, start)`` in spawned processes released at once; each must succeed."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=target, args=(path, start)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0


def test_two_processes_retrying_at_once_store_one_copy(tmp_path: Path) -> None:
    """Two processes appending the same tags at the same moment leave one row."""
    path = str(tmp_path / "race.db")
    sqlite3.connect(path).close()
    run_together(_append_same_tags, path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM agent_messages").fetchone() == (1,)


async def test_an_sdk_file_upgrades_and_both_classes_read_each_other(tmp_path: Path) -> None:
    """A file the SDK made gains the columns; the SDK reads tagged rows; its rows are untagged."""
    path = tmp_path / "sdk.db"
    sdk = SdkSQLiteSession("s", path)
    await sdk.add_items([message("from the SDK")])
    ours = SQLiteSession("s", path)
    with as_run("r1", agent_name="importer"):
        await ours.add_items([message("from us", "assistant")])
    records = await ours.get_records()
    assert [(r.agent_name, r.run_id) for r in records] == [(None, None), ("importer", "r1")]
    assert await sdk.get_items() == [message("from the SDK"), message("from us", "assistant")]
    ours.close()
    sdk.close()


async def test_a_handoff_on_a_sqlite_file_names_each_agent(tmp_path: Path) -> None:
    """Runner.run on SQLiteSession records the agents of a handoff, and they survive reopening."""
    triage, _ = desks()
    session = SQLiteSession("ticket", tmp_path / "h.db")
    await Runner.run(
        triage,
        "I was charged twice, please pass me to billing.",
        session=session,
        run_config=NO_TRACE,
    )
    session.close()
    reopened = SQLiteSession("ticket", tmp_path / "h.db")
    agents = [r.agent_name for r in await reopened.get_records()]
    assert agents == [None, "triage", "triage", "billing"]
    reopened.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from agents import RunConfig, Runner, function_tool, Agent
    from agent_sessions import SQLiteSession
    from agent_sessions.offline import OfflineModel
    from agent_sessions.provenance import as_run

    @function_tool
    def lookup_invoice(number: int) -> str:
        \"\"\"Look up an invoice by its number.

        Args:
            number: The invoice number.
        \"\"\"
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies inside the tool
        return "never"

    async def main():
        agent = Agent(name="billing", instructions="Use lookup_invoice for invoices.",
                      tools=[lookup_invoice], model=OfflineModel())
        session = SQLiteSession("job", sys.argv[1])
        with as_run("job-42"):
            await Runner.run(agent, sys.argv[2], session=session,
                             run_config=RunConfig(tracing_disabled=True))

    asyncio.run(main())
    """
)


async def test_a_run_retried_after_its_process_was_killed_stores_each_item_once(
    tmp_path: Path,
) -> None:
    """SIGKILL inside a tool, then the same run id again: every stored item is there once."""
    path = tmp_path / "job.db"
    child = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CHILD, str(path), CHECK],
        cwd=os.getcwd(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    session = SQLiteSession("job", path)
    before = await session.get_items()
    assert before, "the killed run stored nothing"
    _, billing = desks()
    with as_run("job-42"):
        await Runner.run(billing, CHECK, session=session, run_config=NO_TRACE)
    items = await session.get_items()
    texts = [json.dumps(item, sort_keys=True) for item in items]
    assert len(texts) == len(set(texts)), "an item was stored twice"
    assert [i for i in items if i.get("role") == "user"] == [message(CHECK)]
    assert {r.run_id for r in await session.get_records()} == {"job-42"}
    session.close()

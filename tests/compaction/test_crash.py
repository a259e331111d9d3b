"""A process killed mid-compaction (or mid-uncompact) leaves one of the two whole states."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent_sessions import SQLiteSession

from .kit import contents, turns

pytestmark = [pytest.mark.sqlite, pytest.mark.slow]

KILLS = 6


async def test_sigkill_leaves_old_history_or_summary_and_archive(tmp_path: Path) -> None:
    """After each SIGKILL: the whole history and no archive, or summary, last turn and archive."""
    path = tmp_path / "chats.db"
    original = turns(4)
    async with SQLiteSession("s", path) as session:
        await session.add_items(original)
    compacted = ["summary of 6", *contents(turns(1, 3))]
    for _ in range(KILLS):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.compaction.crasher",
            str(path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"ready"
        await asyncio.sleep(random.uniform(0.05, 0.4))
        child.send_signal(signal.SIGKILL)
        await child.wait()
        async with SQLiteSession("s", path) as session:
            history = contents(await session.get_items())
            archived = [entry.item for entry in await session.archived_items()]
        if archived:
            assert history == compacted
            assert archived == original[:6]
        else:
            assert history == contents(original)

"""A child process that compacts and uncompacts one SQLite session forever, until killed."""

from __future__ import annotations

import asyncio
import sys

from agents.items import TResponseInputItem

from agent_sessions import SQLiteSession
from agent_sessions.compaction import CompactingSession


async def summarise(items: list[TResponseInputItem]) -> list[TResponseInputItem]:
    """One system item naming how many items it replaces."""
    return [{"role": "system", "content": f"summary of {len(items)}"}]


async def main(path: str) -> None:
    """Alternate compact and uncompact; print once the loop runs (the parent then kills)."""
    session = CompactingSession(SQLiteSession("s", path), summarizer=summarise, keep_last_turns=1)
    print("ready", flush=True)  # noqa: T201 - the parent waits for it
    while True:
        await session.compact(force=True)
        await session.uncompact()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

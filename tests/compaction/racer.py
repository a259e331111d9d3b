"""One process of the multi-process compaction race: compact a session, print the result.

Run as ``python -m tests.compaction.racer URL SESSION_ID LABEL``; ``URL`` is a SQLite file path
or a SQLAlchemy URL. The summariser sleeps, so that processes started together overlap.
"""

from __future__ import annotations

import asyncio
import sys

from agents.items import TResponseInputItem
from agents.memory import Session

from agent_sessions import SQLAlchemySession, SQLiteSession
from agent_sessions.compaction import CompactingSession


def open_session(url: str, session_id: str, messages_table: str) -> Session:
    """Open our session on ``url`` (a SQLAlchemy URL if it has a scheme, else a file)."""
    if "://" in url:
        return SQLAlchemySession.from_url(
            session_id,
            url=url,
            create_tables=True,
            sessions_table=f"s{messages_table[1:]}",
            messages_table=messages_table,
        )
    return SQLiteSession(session_id, url)


async def main(url: str, session_id: str, label: str, messages_table: str) -> None:
    """Compact once and print ``True`` or ``False``."""

    async def summarise(items: list[TResponseInputItem]) -> list[TResponseInputItem]:
        await asyncio.sleep(0.5)
        return [{"role": "system", "content": f"{label} of {len(items)} items"}]

    inner = open_session(url, session_id, messages_table)
    async with CompactingSession(inner, summarizer=summarise, keep_last_turns=2) as session:
        print(await session.compact(force=True))  # noqa: T201 - the parent reads it


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

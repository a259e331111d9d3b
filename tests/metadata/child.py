"""A child process for the metadata tests: ``python -m tests.metadata.child DB TABLES PREFIX N``.

It sets N keys ``PREFIX0 .. PREFIX<N-1>`` of session ``shared``'s metadata, one update each.
"""

from __future__ import annotations

import asyncio
import sys

from agent_sessions import SQLAlchemySession, SQLiteSession


async def main(db: str, tables: str, prefix: str, count: int) -> None:
    """Run the updates on a SQLite file (``tables`` is ``-``) or a server URL."""
    if tables == "-":
        session: SQLiteSession | SQLAlchemySession = SQLiteSession("shared", db)
    else:
        sessions, messages = tables.split(",")
        session = SQLAlchemySession.from_url(
            "shared", url=db, create_tables=True, sessions_table=sessions, messages_table=messages
        )
    for i in range(count):
        await session.update_metadata(**{f"{prefix}{i}": i})
    await session.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))

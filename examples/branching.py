"""Re-ask a question differently on a branch, and compare both branches with their token usage.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/branching.py [path/to/file.db]
    python examples/branching.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/test

On a SQLite file (a temporary one by default) the conversation is an ``AdvancedSQLiteSession``.
With ``--url`` it is an ``AdvancedSQLAlchemySession`` in that database (PostgreSQL, MySQL/MariaDB
or SQLite), under a fresh session id that is removed, with its branches, at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from pathlib import Path

from agents import Agent, RunConfig, Runner
from sqlalchemy.engine import make_url

from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.offline import resolve_model

Session = AdvancedSQLiteSession | AdvancedSQLAlchemySession
"""Either advanced class: they have the same methods."""


async def ask(session: Session, agent: Agent[None], text: str) -> None:
    """Run one turn, record its token usage, and print the exchange."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    await session.store_run_usage(result)
    print(f"  you   > {text}")
    print(f"  agent > {result.final_output}")


async def converse(session: Session) -> None:
    """Hold a three-turn conversation, branch from turn 2, re-ask it, and list both branches."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    print("main branch:")
    await ask(session, agent, "Hi! My name is Ada.")
    await ask(session, agent, "I prefer trains over planes.")
    await ask(session, agent, "What do I prefer?")

    branch = await session.create_branch_from_turn(2, "re-ask")
    print(f"\nbranch {branch!r}, made from turn 2 (turn 1 is kept, no rows copied):")
    await ask(session, agent, "I prefer planes, actually.")
    await ask(session, agent, "What do I prefer?")

    print("\nbranches:")
    for info in await session.list_branches():
        usage = await session.get_session_usage(info["branch_id"])
        tokens = usage["total_tokens"] if usage else 0
        mark = "*" if info["is_current"] else " "
        print(
            f" {mark} {info['branch_id']:<8} {info['message_count']} items, "
            f"{info['user_turns']} user turns, {tokens} tokens"
        )
    await session.switch_to_branch("main")
    last = (await session.get_items(1))[0]
    print(f"\nback on main, the last answer is still: {answer_text(last)!r}")


def answer_text(item: object) -> str:
    """The text of an assistant message item (its content is a list of output parts)."""
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


async def main(db_path: Path | None, url: str | None) -> None:
    """Run the conversation on a SQLite file, or on the database at ``url`` (then remove it)."""
    if url is None:
        assert db_path is not None
        print(f"backend: AdvancedSQLiteSession on {db_path.name}\n")
        async with AdvancedSQLiteSession(session_id="trip", db_path=db_path) as session:
            await session.clear_session()  # a file given again: start over
            await converse(session)
        return
    shown = make_url(url).render_as_string(hide_password=True)
    print(f"backend: AdvancedSQLAlchemySession on {shown}\n")
    session_id = f"trip-{uuid.uuid4().hex[:8]}"  # fresh, so runs sharing the database never meet
    async with AdvancedSQLAlchemySession.from_url(
        session_id, url=url, create_tables=True
    ) as session:
        try:
            await converse(session)
        finally:
            await session.switch_to_branch("main")
            await session.clear_session()  # on main: the session and every branch
            print(f"\nremoved session {session_id!r} and its branches from the database")


def cli() -> None:
    """Parse the arguments and run the example."""
    parser = argparse.ArgumentParser(description="Branch a conversation and re-ask a question.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("db_path", nargs="?", type=Path, help="SQLite file (default: temporary)")
    where.add_argument("--url", help="an async SQLAlchemy URL, e.g. postgresql+asyncpg://...")
    args = parser.parse_args()
    if args.db_path is not None or args.url is not None:
        asyncio.run(main(args.db_path, args.url))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "branching.db", None))


if __name__ == "__main__":
    cli()

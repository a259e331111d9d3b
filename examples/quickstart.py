"""Talk to an agent that remembers, then continue the same conversation from a new process.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/quickstart.py [path/to/file.db]

The script holds two turns, closes the session, and then starts itself again as a separate
process (``--continue``) that reopens the same file and carries on where the first one stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agents import Agent, RunConfig, Runner

from agent_sessions import SQLiteSession
from agent_sessions.offline import resolve_model

SESSION_ID = "quickstart"


async def ask(session: SQLiteSession, agent: Agent[None], text: str) -> None:
    """Run one turn and print the exchange."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    print(f"  you   > {text}")
    print(f"  agent > {result.final_output}")


async def first_process(db_path: Path) -> None:
    """Start the conversation: state a name, then ask for it back."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    async with SQLiteSession(SESSION_ID, db_path) as session:
        await session.clear_session()
        print(f"part 1, process {os.getpid()}: a new conversation in {db_path.name}")
        await ask(session, agent, "Hi! My name is Ada.")
        await ask(session, agent, "What is my name?")
        print(f"  ({len(await session.get_items())} items stored; closing the session)")


async def second_process(db_path: Path) -> None:
    """Reopen the file in a fresh process: nothing is in memory, everything is in the file."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    async with SQLiteSession(SESSION_ID, db_path) as session:
        stored = len(await session.get_items())
        print(f"\npart 2, process {os.getpid()}: reopened {db_path.name} ({stored} items)")
        await ask(session, agent, "What is my name?")
        await ask(session, agent, "How many messages have I sent?")


def run(db_path: Path) -> None:
    """Run part 1 here, then part 2 in a child process on the same file."""
    asyncio.run(first_process(db_path))
    sys.stdout.flush()  # the child writes to the same stdout; keep the parts in order
    subprocess.run(  # noqa: S603 (runs this very script with the same interpreter)
        [sys.executable, __file__, "--continue", str(db_path)], check=True
    )


def main() -> None:
    """Parse the arguments and run the part that was asked for."""
    parser = argparse.ArgumentParser(description="A conversation that survives a restart.")
    parser.add_argument("db_path", nargs="?", type=Path, help="SQLite file (default: temporary)")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="continue the conversation stored in db_path (used for part 2)",
    )
    args = parser.parse_args()
    if args.resume:
        if args.db_path is None:
            parser.error("--continue needs the db_path of the conversation to continue")
        asyncio.run(second_process(args.db_path))
    elif args.db_path is not None:
        run(args.db_path)
    else:
        with tempfile.TemporaryDirectory() as directory:
            run(Path(directory) / "quickstart.db")


if __name__ == "__main__":
    main()

"""The cost of provenance: chat with a run context (tagged rows) vs chat without, interleaved.

Usage: ``python benchmarks/provenance.py [--url URL] [--rounds N] [--quick]``

Each round runs the chat workload (per turn ``get_items()`` then ``add_items(4)``) twice on fresh
sessions of one database: once plainly, once with a ``RunContextWrapper`` per turn, as the SDK's
``Runner`` passes it (each row then records its agent, run, position and digest, and a run's
batch is checked against what it stored). The order alternates between rounds; the report is the
median ratio tagged / plain with the spread. Goal (issue 19): at most 1.15x.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agents.run_context import RunContextWrapper

from agent_sessions import SQLAlchemySession, SQLiteSession
from benchmarks.workloads import turn_items


async def _chat(session: Any, tagged: bool, turns: int) -> float:
    start = time.perf_counter()
    for turn in range(turns):
        wrapper = RunContextWrapper(context=None) if tagged else None
        await session.get_items(wrapper=wrapper)
        await session.add_items(turn_items(turn), wrapper=wrapper)
    return (time.perf_counter() - start) / turns


async def measure(url: str | None, rounds: int, turns: int) -> list[float]:
    """Ratios tagged / plain, one per round, on a temporary SQLite file or the database at url."""
    folder = Path(tempfile.mkdtemp(prefix="provenance-bench-"))

    def open_session() -> Any:
        session_id = f"bench-{uuid.uuid4().hex}"
        if url is None:
            return SQLiteSession(session_id, folder / "chat.db")
        return SQLAlchemySession.from_url(session_id, url=url, create_tables=True)

    ratios = []
    for round_number in range(rounds):
        times: dict[bool, float] = {}
        order = (False, True) if round_number % 2 == 0 else (True, False)
        for tagged in order:
            session = open_session()
            try:
                await _chat(session, tagged, 2)  # warm the connection and the statements
                times[tagged] = await _chat(session, tagged, turns)
                await session.clear_session()
            finally:
                await session.aclose()
        ratios.append(times[True] / times[False])
    return ratios


def main() -> None:
    """Parse the arguments, measure, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an async SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 turns")
    args = parser.parse_args()
    rounds, turns = (2, 5) if args.quick else (args.rounds, 40)
    ratios = asyncio.run(measure(args.url, rounds, turns))
    where = args.url or "SQLiteSession file"
    print(
        f"chat with provenance / without on {where}: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {rounds} interleaved rounds; goal <= 1.15)"
    )


if __name__ == "__main__":
    main()

"""The cost of provenance: chat with a run context (tagged rows) vs chat without, interleaved.

Usage: ``python benchmarks/provenance.py [--url URL] [--advanced] [--rounds N] [--quick]``

Each round runs the chat workload (per turn ``get_items()`` then ``add_items(4)``) on two fresh
sessions of one database, turn for turn: one plainly, one with a ``RunContextWrapper`` per turn,
as the SDK's ``Runner`` passes it (each row then records its agent, run, position and digest).
The order alternates between turns; the report is the median ratio tagged / plain over the
rounds, with the spread. Goal (issue 19): at most 1.15x.
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

from agent_sessions import (
    AdvancedSQLAlchemySession,
    AdvancedSQLiteSession,
    SQLAlchemySession,
    SQLiteSession,
)
from benchmarks.workloads import turn_items


async def _turn(session: Any, tagged: bool, turn: int) -> float:
    # The Runner makes its run context either way: only what the session does with it counts.
    wrapper = RunContextWrapper(context=None) if tagged else None
    start = time.perf_counter()
    await session.get_items(wrapper=wrapper)
    await session.add_items(turn_items(turn), wrapper=wrapper)
    return time.perf_counter() - start


async def measure(
    url: str | None, rounds: int, turns: int, *, advanced: bool = False
) -> list[float]:
    """Ratios tagged / plain, one per round, on a temporary SQLite file or the database at url.

    ``advanced``: the branching sessions (``AdvancedSQLiteSession``, ``AdvancedSQLAlchemySession``).

    Each round chats on two fresh sessions of one database side by side, turn for turn (the
    order alternating), so a disturbance of the machine falls on both alike.
    """
    folder = Path(tempfile.mkdtemp(prefix="provenance-bench-"))

    def open_session() -> Any:
        session_id = f"bench-{uuid.uuid4().hex}"
        if url is None:
            if advanced:
                return AdvancedSQLiteSession(
                    session_id=session_id, db_path=folder / "chat.db", create_tables=True
                )
            return SQLiteSession(session_id, folder / "chat.db")
        kind = AdvancedSQLAlchemySession if advanced else SQLAlchemySession
        return kind.from_url(session_id, url=url, create_tables=True)

    ratios = []
    for _ in range(rounds):
        sessions = {False: open_session(), True: open_session()}
        try:
            for tagged, session in sessions.items():  # warm the connection and the statements
                await _turn(session, tagged, 0)
            totals = {False: 0.0, True: 0.0}
            for turn in range(turns):
                for tagged in (False, True) if turn % 2 == 0 else (True, False):
                    totals[tagged] += await _turn(sessions[tagged], tagged, turn)
            ratios.append(totals[True] / totals[False])
            for session in sessions.values():
                await session.clear_session()
        finally:
            for session in sessions.values():
                await session.aclose()
    return ratios


def main() -> None:
    """Parse the arguments, measure, print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an async SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 turns")
    parser.add_argument("--advanced", action="store_true", help="the branching sessions")
    args = parser.parse_args()
    rounds, turns = (2, 5) if args.quick else (args.rounds, 100)
    ratios = asyncio.run(measure(args.url, rounds, turns, advanced=args.advanced))
    kind = "Advanced" if args.advanced else ""
    where = args.url or f"{kind}SQLiteSession file"
    if args.advanced and args.url:
        where = f"AdvancedSQLAlchemySession on {args.url}"
    print(
        f"chat with provenance / without on {where}: median {statistics.median(ratios):.2f}x "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {rounds} interleaved rounds; goal <= 1.15)"
    )


if __name__ == "__main__":
    main()

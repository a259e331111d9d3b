"""Chat on the advanced session against our plain one, turn for turn: the cost of branching.

Usage: ``python benchmarks/advanced_chat.py [--url URL] [--rounds N] [--quick]``

``run.py``'s chat compares whole runs of a few tenths of a second each, one contender after the
other, so on a small machine a single disturbance moves one run's ratio by 20% or more. Here
each round chats on fresh tables of one database (created untimed, as ``run.py`` does) with
both classes side by side: per session and turn, the advanced session's ``get_items()`` then
``add_items(4)``, and the plain session's, the order alternating between turns, so whatever
disturbs the machine falls on both alike. ``sessions`` sessions of ``turns`` turns each, one
after another, as in ``run.py``'s chat. The report is the median over the rounds of plain time /
advanced time (``ours/plain`` in ``run.py``'s terms: 0.77 is the advanced session at 1.3x the
plain one, the goal of issue 17), with the spread and each half of the turn.

Default: ``AdvancedSQLiteSession`` against ``SQLiteSession`` on a temporary file; with
``--url``, ``AdvancedSQLAlchemySession`` against ``SQLAlchemySession`` on that database.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from advanced_sqlalchemy_suite import drop_tables
from sqlalchemy.engine import make_url
from workloads import turn_items

from agent_sessions import (
    AdvancedSQLAlchemySession,
    AdvancedSQLiteSession,
    SQLAlchemySession,
    SQLiteSession,
)

CONTENDERS = ("advanced", "plain")


class Round:
    """One round's fresh tables (or file) and the sessions opened on them."""

    def __init__(self, url: str | None, folder: Path) -> None:
        self.url = url
        tag = uuid.uuid4().hex[:8]
        self.path = folder / f"chat-{tag}.db"
        self.tables = {
            name: {"sessions_table": f"s_{name}_{tag}", "messages_table": f"m_{name}_{tag}"}
            for name in CONTENDERS
        }
        self.probes: dict[str, Any] = {}
        self.opened: list[Any] = []

    async def open(self) -> None:
        """Create each contender's tables with a probe session, untimed."""
        for name in CONTENDERS:
            probe = self._new(name, "probe", create=True)
            await probe.get_items()
            self.probes[name] = probe

    def session(self, name: str, session_id: str) -> Any:
        """A contender's session on its tables (which exist by now)."""
        session = self._new(name, session_id, create=False)
        self.opened.append(session)
        return session

    def _new(self, name: str, session_id: str, *, create: bool) -> Any:
        advanced = name == "advanced"
        if self.url is None:
            if advanced:
                return AdvancedSQLiteSession(
                    session_id=session_id, db_path=self.path, create_tables=True
                )
            return SQLiteSession(session_id, self.path)
        kind = AdvancedSQLAlchemySession if advanced else SQLAlchemySession
        if create:
            return kind.from_url(session_id, url=self.url, create_tables=True, **self.tables[name])
        engine = self.probes[name].engine
        return kind(session_id, engine=engine, **self.tables[name])

    async def close(self) -> None:
        """Close every session, dispose of the engines and drop the tables."""
        for session in self.opened:
            await session.aclose()
        for probe in self.probes.values():
            await probe.aclose()
        if self.url is not None:
            for tables in self.tables.values():
                await drop_tables(make_url(self.url), *tables.values())


async def _turn(session: Any, turn: int) -> tuple[float, float]:
    start = time.perf_counter()
    await session.get_items()
    read = time.perf_counter()
    await session.add_items(turn_items(turn))
    return read - start, time.perf_counter() - read


async def measure(
    url: str | None, rounds: int, sessions: int, turns: int
) -> list[dict[str, tuple[float, float]]]:
    """Per round, each contender's seconds of reads and of appends, turn for turn."""
    folder = Path(tempfile.mkdtemp(prefix="advanced-chat-bench-"))
    results = []
    try:
        for _ in range(rounds):
            run = Round(url, folder)
            try:
                await run.open()
                totals = {name: [0.0, 0.0] for name in CONTENDERS}
                for i in range(sessions):
                    pair = {name: run.session(name, f"chat-{i}") for name in CONTENDERS}
                    for turn in range(turns):
                        order = CONTENDERS if (i + turn) % 2 == 0 else CONTENDERS[::-1]
                        for name in order:
                            read, append = await _turn(pair[name], turn)
                            totals[name][0] += read
                            totals[name][1] += append
                results.append({name: (t[0], t[1]) for name, t in totals.items()})
            finally:
                await run.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results


def main() -> None:
    """Parse the arguments, measure, print the ratio and its halves."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an async SQLAlchemy URL (default: a SQLite file)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 sessions x 5 turns")
    args = parser.parse_args()
    rounds, sessions, turns = (2, 2, 5) if args.quick else (args.rounds, 20, 20)
    results = asyncio.run(measure(args.url, rounds, sessions, turns))
    ratios = [sum(r["plain"]) / sum(r["advanced"]) for r in results]
    calls = sessions * turns

    def ms(name: str, half: int) -> str:
        return f"{statistics.median(r[name][half] for r in results) / calls * 1e3:.3f}"

    where = f"on {args.url}" if args.url else "on a SQLite file"
    print(
        f"chat ours/plain (advanced vs plain, turn for turn) {where}: median "
        f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}, "
        f"{rounds} rounds of {sessions} x {turns} turns; goal >= 0.77)"
    )
    print(
        f"per turn, median ms: advanced read {ms('advanced', 0)} + append {ms('advanced', 1)}; "
        f"plain read {ms('plain', 0)} + append {ms('plain', 1)}"
    )


if __name__ == "__main__":
    main()

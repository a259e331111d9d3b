"""Growth of the advanced sessions: a short read and a branch creation at 1k, 10k and 100k items.

Usage: ``python benchmarks/advanced_growth.py [--repeat 3] [--backends sqlite,aiosqlite,postgres,
mariadb] [--postgres URL] [--mariadb URL] [--quick] [--json F]``

On each backend, one session's history grows to each size (with ``add_items`` in batches of
4,000 items, the turn mix of ``workloads.py``; not timed), and at each size three things are
timed on ``main``:

- ``get_items(20)``: ``reads`` calls in batches of 50 after 5 warm-up calls; a size's figure is
  the median batch, per call (µs).
- ``create_branch_from_turn(2)``: ``branches`` creations, each timed alone, switching back to
  ``main`` after each (untimed); the median (ms). A fork near the start of the conversation.
- ``create_branch_from_turn(newest)``: the same from the newest user turn (the "ask the last
  question again" case).

Backends: ``sqlite`` is ``AdvancedSQLiteSession`` on a file; ``aiosqlite``, ``postgres`` and
``mariadb`` are ``AdvancedSQLAlchemySession.from_url`` on a fresh file or fresh tables (dropped
afterwards). Each repeat runs every backend once, one after another (interleaved), each in its
own ``asyncio.run``. The table shows medians over the repeats and, per backend, each size's
ratio to the smallest size; the goal is at most 1.5x at 100k. The spread line lists cells whose
repeats differ by more than 20% of their median.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from advanced_sqlalchemy_suite import drop_tables
from sqlalchemy import text
from sqlalchemy.engine import make_url
from workloads import history

import agent_sessions
from agent_sessions import AdvancedSQLAlchemySession, AdvancedSQLiteSession
from agent_sessions.backends.advanced.sql import AdvancedStatements
from agent_sessions.schema import TableNames

__all__ = ["MEASURES", "Backend", "grow", "main"]

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+aiomysql://root@127.0.0.1:3306/test"
FILL = 4_000
"""Items per ``add_items`` while the history grows (not timed)."""
GOAL = 1.5
"""The most a figure at the largest size may be, as a multiple of the smallest size's."""
NOISY = 0.20

MEASURES = {
    "read": ("get_items(20)", "µs", 1e6, ",.0f"),
    "branch_first": ("create_branch_from_turn(2)", "ms", 1e3, ",.2f"),
    "branch_newest": ("create_branch_from_turn(newest)", "ms", 1e3, ",.2f"),
}
"""What is timed at each size: label, unit, seconds -> unit, cell format."""


@dataclass
class Backend:
    """Where one run's session lives."""

    name: str
    url: str | None = None
    """None: ``AdvancedSQLiteSession`` on a file; else an async SQLAlchemy URL (SQLite: a file)."""

    def label(self) -> str:
        """The column heading."""
        return {
            "sqlite": "AdvancedSQLiteSession",
            "aiosqlite": "aiosqlite",
            "postgres": "PostgreSQL",
            "mariadb": "MariaDB",
        }.get(self.name, self.name)


async def _time_reads(session: Any, reads: int, batch: int = 50) -> float:
    """Seconds per ``get_items(20)``: the median over batches, after 5 warm-up calls."""
    for _ in range(5):
        await session.get_items(20)
    batches = []
    for _ in range(max(1, reads // batch)):
        start = time.perf_counter()
        for _ in range(batch):
            items = await session.get_items(20)
        batches.append((time.perf_counter() - start) / batch)
    assert len(items) == 20
    return statistics.median(batches)


async def _time_branches(session: Any, turn: int, count: int, tag: str) -> float:
    """Median seconds of ``count`` creations from ``turn``, back on main after each."""
    calls = []
    for i in range(count):
        start = time.perf_counter()
        await session.create_branch_from_turn(turn, f"{tag}_{i}")
        calls.append(time.perf_counter() - start)
        await session.switch_to_branch("main")
    return statistics.median(calls)


async def grow(
    session: Any,
    sizes: tuple[int, ...],
    reads: int,
    branches: int,
    analyze: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, dict[int, float]]:
    """Grow one session through ``sizes``, timing each measure at each size (seconds).

    ``analyze`` runs after each growth, before anything is timed (PostgreSQL's statistics).
    """
    found: dict[str, dict[int, float]] = {measure: {} for measure in MEASURES}
    stored = 0
    for size in sizes:
        items = history(size - stored, stored // 4)
        for first in range(0, len(items), FILL):
            await session.add_items(items[first : first + FILL])
        stored = size
        if analyze is not None:
            await analyze()
        newest = (size + 3) // 4  # every turn of history() starts with its user message
        await session.create_branch_from_turn(newest, f"warmup_{size}")  # untimed
        await session.switch_to_branch("main")
        found["read"][size] = await _time_reads(session, reads)
        found["branch_first"][size] = await _time_branches(session, 2, branches, f"f{size}")
        found["branch_newest"][size] = await _time_branches(session, newest, branches, f"n{size}")
        assert len(await session.get_items(20)) == 20
    return found


async def _run_once(
    backend: Backend, tmp_root: str | None, sizes: tuple[int, ...], reads: int, branches: int
) -> dict[str, dict[int, float]]:
    """One run on a fresh file or fresh tables, removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="agent-sessions-growth-", dir=tmp_root)
    try:
        if backend.url is None:
            async with AdvancedSQLiteSession(
                session_id="growth", db_path=str(Path(tmp) / "growth.db"), create_tables=True
            ) as session:
                return await grow(session, sizes, reads, branches)
        url = make_url(backend.url)
        if url.get_backend_name() == "sqlite":
            url = url.set(database=str(Path(tmp) / "growth.db"))
        tag = uuid.uuid4().hex[:8]
        tables = (f"s_{tag}", f"m_{tag}")
        session = AdvancedSQLAlchemySession.from_url(
            "growth",
            url=url.render_as_string(hide_password=False),
            create_tables=True,
            sessions_table=tables[0],
            messages_table=tables[1],
        )

        async def analyze() -> None:
            # What autovacuum does as a table grows; the test server here runs without it, and
            # plans made on a 1k-row table would otherwise be kept by each pooled connection.
            async with session.engine.begin() as conn:
                for table in (
                    *tables,
                    *AdvancedStatements(TableNames(*tables)).names(shared=False),
                ):
                    await conn.execute(text(f"ANALYZE {table}"))

        postgres = url.get_backend_name() == "postgresql"
        try:
            return await grow(session, sizes, reads, branches, analyze if postgres else None)
        finally:
            await session.aclose()  # disposes of the engine from_url made
            if url.get_backend_name() != "sqlite":
                await drop_tables(url, *tables)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def summarize(
    runs: dict[str, list[dict[str, dict[int, float]]]], sizes: tuple[int, ...]
) -> dict[str, Any]:
    """Medians per backend, measure and size (in the measure's unit), their spread and ratios."""
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        entry: dict[str, Any] = {"runs": results}
        for measure, (_label, _unit, scale, _spec) in MEASURES.items():
            if not results:
                continue
            values = {s: [r[measure][s] * scale for r in results] for s in sizes}
            medians = {s: statistics.median(v) for s, v in values.items()}
            entry[measure] = {
                "median": medians,
                "spread": {s: _spread(v) for s, v in values.items()},
                "ratio": {s: medians[s] / medians[sizes[0]] for s in sizes},
                # Each run's own ratio to its smallest size, to show how much it varies.
                "run_ratios": {
                    s: [r[measure][s] / r[measure][sizes[0]] for r in results] for s in sizes
                },
            }
        summary[name] = entry
    return summary


def _size(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def table(summary: dict[str, Any], backends: list[Backend], sizes: tuple[int, ...]) -> list[str]:
    """Markdown: per measure one row per size (medians) and one ratio row per larger size."""
    lines = [
        "| measure | " + " | ".join(b.label() for b in backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]
    for measure, (label, unit, _scale, spec) in MEASURES.items():
        for size in sizes:
            cells = [
                format(summary[b.name][measure]["median"][size], spec)
                if measure in summary[b.name]
                else "error"
                for b in backends
            ]
            lines.append(f"| {label} at {_size(size)} ({unit}) | " + " | ".join(cells) + " |")
        for size in sizes[1:]:
            cells = []
            for b in backends:
                if measure not in summary[b.name]:
                    cells.append("error")
                    continue
                ratio = summary[b.name][measure]["ratio"][size]
                runs = summary[b.name][measure]["run_ratios"][size]
                mark = "" if ratio <= GOAL else " ✗"
                cells.append(f"{ratio:.2f}x ({min(runs):.2f}-{max(runs):.2f}){mark}")
            lines.append(f"| {label} {_size(size)}/{_size(sizes[0])} | " + " | ".join(cells) + " |")
    return lines


def noisy(summary: dict[str, Any]) -> list[str]:
    """Cells whose repeats spread by more than ``NOISY`` of their median."""
    return [
        f"{measure} {_size(size)}/{name}: repeats spread {spread:.0%} of the median"
        for name, entry in summary.items()
        for measure in MEASURES
        if measure in entry
        for size, spread in entry[measure]["spread"].items()
        if spread > NOISY
    ]


def _backends(args: argparse.Namespace) -> list[Backend]:
    known: dict[str, Callable[[], Backend]] = {
        "sqlite": lambda: Backend("sqlite"),
        "aiosqlite": lambda: Backend("aiosqlite", "sqlite+aiosqlite:///growth.db"),
        "postgres": lambda: Backend("postgres", args.postgres),
        "mariadb": lambda: Backend("mariadb", args.mariadb),
    }
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown backends {unknown}; choose from {list(known)}")
    return [known[name]() for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="runs per backend (default 3, quick 1)")
    parser.add_argument("--backends", default="sqlite,aiosqlite,postgres,mariadb")
    parser.add_argument("--postgres", default=PG_URL, help=f"default {PG_URL}")
    parser.add_argument("--mariadb", default=MARIADB_URL, help=f"default {MARIADB_URL}")
    parser.add_argument("--tmp-dir", help="where the SQLite files go (default: system temp)")
    parser.add_argument("--quick", action="store_true", help="1k and 4k items: a smoke test")
    parser.add_argument("--json", type=Path, help="write medians and every run here")
    args = parser.parse_args(argv)
    try:
        backends = _backends(args)
    except ValueError as exc:
        parser.error(str(exc))
    repeat = args.repeat or (1 if args.quick else 3)
    sizes = (1_000, 4_000) if args.quick else (1_000, 10_000, 100_000)
    reads, branches = (100, 5) if args.quick else (1_000, 15)
    meta = {
        "python": platform.python_version(),
        "agent_sessions": agent_sessions.__version__,
        "openai_agents": version("openai-agents"),
        "sqlalchemy": version("sqlalchemy"),
        "platform": platform.platform(),
        "repeat": repeat,
        "sizes": list(sizes),
        "backends": {b.name: b.url or "AdvancedSQLiteSession file" for b in backends},
    }
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    runs: dict[str, list[dict[str, dict[int, float]]]] = {b.name: [] for b in backends}
    failed: list[str] = []
    for round_number in range(repeat):
        for backend in backends:
            print(f"round {round_number + 1}: {backend.name} ...", file=sys.stderr, flush=True)
            gc.collect()
            try:
                result = asyncio.run(_run_once(backend, args.tmp_dir, sizes, reads, branches))
            except Exception as exc:  # noqa: BLE001 - reported below, the others go on
                failed.append(f"{backend.name}: {type(exc).__name__}: {exc}")
                continue
            runs[backend.name].append(result)
    summary = summarize(runs, sizes)
    print()
    print("\n".join(table(summary, backends, sizes)))
    print(
        f"\nRatios are the median at a size over the median at {_size(sizes[0])} (in brackets: "
        f"the lowest and highest run's own ratio); ✗ marks one above the {GOAL}x goal."
    )
    spread = noisy(summary) if repeat > 1 else []
    if spread:
        print(f"\nNoisy (spread > {NOISY:.0%}):\n" + "\n".join(f"- {n}" for n in spread))
    if failed:
        print("\nFailed runs:\n" + "\n".join(f"- {f}" for f in failed))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": summary}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

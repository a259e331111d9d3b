"""Loop stalls: how long a session's reads hold the event loop, ours against the SDK's class.

A ticker task records the longest gap between two of its turns on the loop while another task
reads. Two workloads, each on a fresh file:

- ``long_read``: one ``get_items()`` of a session holding 100,000 items (``--items``).
- ``read_loop``: a task calls ``get_items(20)`` 2,000 times in a row on a 4,000-item session
  while a writer task adds 20 batches; reported: the longest stall, and how many of the
  writer's batches were stored before the reader finished (20 = the reader never starves it).

    python benchmarks/loop_stall.py [--items 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agents

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sessions import SQLiteSession

CONTENDERS: dict[str, Callable[[str, str], Any]] = {
    "ours": SQLiteSession,
    "SDK": agents.SQLiteSession,
}


class Ticker:
    """Counts its turns on the loop and keeps the longest gap between two of them."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            self.ticks += 1
            last = now
            await asyncio.sleep(0)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        await asyncio.sleep(0)  # one more turn: a gap that lasted until now is counted too
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _item(n: int) -> dict[str, Any]:
    return {"role": "user", "content": f"message {n} " + "x" * 80}


async def _fill(session: Any, count: int) -> None:
    for start in range(0, count, 5_000):
        await session.add_items([_item(n) for n in range(start, min(start + 5_000, count))])


async def long_read(make: Callable[[str, str], Any], path: str, items: int) -> dict[str, float]:
    """The longest stall during one read of ``items`` items, and the read's duration."""
    session = make("long", path)
    try:
        await _fill(session, items)
        await session.get_items(1)
        ticker = Ticker()
        ticker.start()
        await asyncio.sleep(0)
        began = time.perf_counter()
        got = await session.get_items()
        took = time.perf_counter() - began
        await ticker.stop()
        assert len(got) == items
        return {"stall_ms": ticker.longest * 1e3, "read_ms": took * 1e3}
    finally:
        session.close()


async def read_loop(make: Callable[[str, str], Any], path: str, items: int) -> dict[str, float]:
    """The longest stall while a task loops on reads, and the writer's progress meanwhile."""
    reader, writer = make("reader", path), make("writer", path)
    try:
        await _fill(reader, 4_000)
        await reader.get_items(20)
        written = 0

        async def write() -> None:
            nonlocal written
            for n in range(20):
                await writer.add_items([_item(n)])
                written += 1

        ticker = Ticker()
        ticker.start()
        task = asyncio.ensure_future(write())
        for _ in range(2_000):
            await reader.get_items(20)
        progress = written
        await task
        await ticker.stop()
        return {"stall_ms": ticker.longest * 1e3, "writer_batches_meanwhile": progress}
    finally:
        reader.close()
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.repeat):
        for workload in (long_read, read_loop):
            for name, make in CONTENDERS.items():  # interleaved, as in run.py
                with tempfile.TemporaryDirectory() as tmp:
                    path = str(Path(tmp) / "stall.db")
                    run = asyncio.run(workload(make, path, args.items))
                results.setdefault((workload.__name__, name), []).append(run)
    for (label, name), runs in results.items():
        medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        shown = "  ".join(f"{key}={value:.1f}" for key, value in medians.items())
        print(f"{label:10} {name:5} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

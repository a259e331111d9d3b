"""MemoryStore against LangGraph's stores on the same data: put, get, filter and semantic search.

    pip install -e '.[bench]'                      # langgraph-checkpoint-sqlite, numpy, pysqlite3
    python benchmarks/memory_bench.py              # 10k and 100k memories in 1,000 namespaces
    python benchmarks/memory_bench.py --sizes 2000 --repeat 1 --namespaces 100   # smoke test

Contenders, each on a fresh file in one temporary directory:

- ``ours``: ``agent_sessions.memory.MemoryStore`` on SQLite, default settings (WAL,
  ``synchronous=FULL``); semantic search is exact, in process (numpy).
- ``lg-sqlite``: LangGraph's ``SqliteStore.from_conn_string`` (stdlib sqlite3, its defaults).
  Its semantic search needs the ``sqlite-vec`` extension, which the stdlib ``sqlite3`` of many
  Python builds cannot load, so for semantic search it runs on a ``pysqlite3`` connection
  (``lg-sqlite-vec``), when ``pysqlite3`` is installed.
- ``lg-memory``: LangGraph's ``InMemoryStore`` (a dict, nothing durable): a ceiling, not a peer.

Every store gets the same data and, for semantic search, the same embedder (a deterministic
hashing embedder of 384 dimensions, cheap enough that the search itself is what is timed;
``--embedder local`` uses all-MiniLM-L6-v2 instead, whose cost then dominates both sides).
The stores are filled untimed (ours with ``durable=False``, LangGraph's in batches), then the
timed workloads run interleaved, ours first, for ``--repeat`` rounds; the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_sessions.memory import HashingEmbedder, IndexConfig, MemoryStore, local_embedder

DIMS = 384
KINDS = ["preference", "fact", "event", "goal"]
WORDS = [
    "pytest",
    "tea",
    "hiking",
    "python",
    "rust",
    "coffee",
    "lyon",
    "paris",
    "editor",
    "neovim",
    "dark",
    "mode",
    "detailed",
    "short",
    "answers",
    "examples",
    "music",
    "jazz",
    "running",
    "cycling",
    "books",
    "history",
    "cooking",
    "pasta",
    "travel",
    "japan",
    "budget",
    "meetings",
    "morning",
    "evening",
    "reports",
    "charts",
    "email",
    "calendar",
    "family",
    "dog",
    "cat",
    "garden",
]


def memory(n: int, namespaces: int) -> tuple[tuple[str, ...], str, dict[str, Any]]:
    """The n-th memory of the data set: same for every contender."""
    rng = random.Random(n)
    text = " ".join(rng.choice(WORDS) for _ in range(8))
    kind = KINDS[(n // namespaces) % len(KINDS)]  # every user has every kind
    value = {"text": f"user {n % namespaces} note {n}: {text}", "kind": kind, "n": n}
    return ("users", f"u{n % namespaces}"), f"m{n}", value


def load_embedder(kind: str) -> Callable[[list[str]], list[list[float]]]:
    if kind == "local":
        return local_embedder()  # type: ignore[return-value]
    return HashingEmbedder(DIMS)


def timed(count: int, started: float) -> float:
    """Operations per second."""
    return count / (time.perf_counter() - started)


class Ours:
    name = "ours"

    def __init__(self, path: Path, index: IndexConfig | None) -> None:
        self.path, self.index = path, index
        self.store: MemoryStore | None = None

    async def fill(self, size: int, namespaces: int) -> None:
        async with MemoryStore(self.path, index=self.index, durable=False) as store:
            for n in range(size):
                await store.put(*memory(n, namespaces))
        self.store = MemoryStore(self.path, index=self.index)

    async def put(self, items: list[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        assert self.store is not None
        for namespace, key, value in items:
            await self.store.put(namespace, key, value)

    async def get(self, keys: list[tuple[tuple[str, ...], str]]) -> None:
        assert self.store is not None
        for namespace, key in keys:
            assert await self.store.get(namespace, key) is not None

    async def search(self, calls: list[dict[str, Any]]) -> list[list[str]]:
        assert self.store is not None
        found = []
        for call in calls:
            prefix = call.pop("prefix")
            found.append([i.key for i in await self.store.search(prefix, **call)])
            call["prefix"] = prefix
        return found

    async def close(self) -> None:
        if self.store is not None:
            await self.store.aclose()


class LangGraph:
    def __init__(self, name: str, store: Any, closer: Callable[[], None] | None = None) -> None:
        self.name, self.store, self.closer = name, store, closer

    async def fill(self, size: int, namespaces: int) -> None:
        from langgraph.store.base import PutOp

        for start in range(0, size, 500):
            ops = [PutOp(*memory(n, namespaces)) for n in range(start, min(size, start + 500))]
            self.store.batch(ops)

    async def put(self, items: list[tuple[tuple[str, ...], str, dict[str, Any]]]) -> None:
        for namespace, key, value in items:
            self.store.put(namespace, key, value)

    async def get(self, keys: list[tuple[tuple[str, ...], str]]) -> None:
        for namespace, key in keys:
            assert self.store.get(namespace, key) is not None

    async def search(self, calls: list[dict[str, Any]]) -> list[list[str]]:
        found = []
        for call in calls:
            prefix = call.pop("prefix")
            found.append([i.key for i in self.store.search(prefix, **call)])
            call["prefix"] = prefix
        return found

    async def close(self) -> None:
        if self.closer is not None:
            self.closer()


def lg_sqlite(path: Path, index: IndexConfig | None, vec: bool) -> LangGraph | None:
    from langgraph.store.sqlite import SqliteStore

    if vec:
        try:
            import pysqlite3.dbapi2 as driver  # type: ignore[import-not-found]
        except ImportError:
            return None
    else:
        import sqlite3 as driver
    conn = driver.connect(str(path), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn, index=dict(index) if index else None)  # type: ignore[arg-type]
    store.setup()
    return LangGraph("lg-sqlite-vec" if vec else "lg-sqlite", store, conn.close)


def lg_memory(index: IndexConfig | None) -> LangGraph:
    from langgraph.store.memory import InMemoryStore

    return LangGraph("lg-memory", InMemoryStore(index=dict(index) if index else None))  # type: ignore[arg-type]


async def bench(
    size: int, args: argparse.Namespace, directory: Path
) -> dict[str, dict[str, float]]:
    """Every workload at one data-set size: {workload: {contender: value}}."""
    rng = random.Random(size)
    index = IndexConfig(dims=DIMS, embed=load_embedder(args.embedder), fields=["text"])
    plain = [
        Ours(directory / f"ours-{size}.db", None),
        lg_sqlite(directory / f"lg-{size}.db", None, False),
        lg_memory(None),
    ]
    semantic = [
        Ours(directory / f"ours-vec-{size}.db", index),
        lg_sqlite(directory / f"lgvec-{size}.db", index, True),
        lg_memory(index),
    ]
    groups = {"plain": [c for c in plain if c], "semantic": [c for c in semantic if c]}
    for group in groups.values():
        for contender in group:
            started = time.perf_counter()
            await contender.fill(size, args.namespaces)
            took = time.perf_counter() - started
            print(f"  filled {contender.name:<14} {size:>7,} in {took:6.1f}s", flush=True)
    namespaces = args.namespaces
    queries = [
        "which testing tool do they use",
        "favourite drink in the morning",
        "where do they travel",
        "how do they like answers",
    ]
    results: dict[str, dict[str, list[float]]] = {}

    def record(workload: str, name: str, value: float) -> None:
        results.setdefault(workload, {}).setdefault(name, []).append(value)

    for round_ in range(args.repeat):
        puts = [memory(size + round_ * 10_000 + n, namespaces) for n in range(args.puts)]
        keys = [memory(rng.randrange(size), namespaces)[:2] for _ in range(args.gets)]
        users = [("users", f"u{rng.randrange(namespaces)}") for _ in range(args.searches)]
        filtered = [{"prefix": u, "filter": {"kind": "preference"}, "limit": 10} for u in users]
        listing = [{"prefix": u, "limit": 10} for u in users]
        scoped = [
            {"prefix": u, "query": queries[i % 4], "limit": 10}
            for i, u in enumerate(users[: args.semantic])
        ]
        wide = [
            {"prefix": ("users",), "query": queries[i % 4], "limit": 10} for i in range(args.wide)
        ]
        for contender in groups["plain"]:
            started = time.perf_counter()
            await contender.put(puts)
            record("put", contender.name, timed(len(puts), started))
            started = time.perf_counter()
            await contender.get(keys)
            record("get", contender.name, timed(len(keys), started))
            started = time.perf_counter()
            await contender.search(filtered)
            record("search: filter, 1 user", contender.name, timed(len(filtered), started))
            started = time.perf_counter()
            await contender.search(listing)
            record("search: newest 10, 1 user", contender.name, timed(len(listing), started))
        for contender in groups["semantic"]:
            if round_ == 0:  # the first search of everything: ours reads every vector here
                started = time.perf_counter()
                await contender.search(wide[:1])
                record("semantic: all users, first", contender.name, timed(1, started))
            await contender.search(scoped[:3])  # warm up
            started = time.perf_counter()
            await contender.search(scoped)
            record("semantic: 1 user", contender.name, timed(len(scoped), started))
            started, done = time.perf_counter(), 0
            for call in wide:  # a slow contender stops after --budget seconds
                await contender.search([call])
                done += 1
                if time.perf_counter() - started > args.budget:
                    break
            record("semantic: all users", contender.name, timed(done, started))
    for group in groups.values():
        for contender in group:
            await contender.close()
    return {w: {n: statistics.median(v) for n, v in by.items()} for w, by in results.items()}


def table(all_results: dict[int, dict[str, dict[str, float]]]) -> str:
    names = ["ours", "lg-sqlite", "lg-sqlite-vec", "lg-memory"]
    lines = [
        "| size | workload | "
        + " | ".join(f"{n} ops/s" for n in names)
        + " | ours/lg-sqlite | ours/lg-memory |",
        "|---:|---|" + "---:|" * (len(names) + 2),
    ]
    for size, results in all_results.items():
        for workload, by in results.items():
            cells = [f"{by[n]:,.0f}" if n in by else "n/a" for n in names]
            sqlite_peer = by.get("lg-sqlite", by.get("lg-sqlite-vec"))
            ratio = f"{by['ours'] / sqlite_peer:.2f}x" if sqlite_peer else "n/a"
            memory_ratio = f"{by['ours'] / by['lg-memory']:.2f}x" if "lg-memory" in by else "n/a"
            lines.append(
                f"| {size:,} | {workload} | " + " | ".join(cells) + f" | {ratio} | {memory_ratio} |"
            )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[int, dict[str, dict[str, float]]]:
    all_results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        for size in args.sizes:
            print(f"size {size:,} in {args.namespaces:,} namespaces", flush=True)
            all_results[size] = await bench(size, args, Path(tmp))
    return all_results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--namespaces", default=1000, type=int)
    parser.add_argument("--repeat", default=3, type=int)
    parser.add_argument("--puts", default=500, type=int, help="durable puts per round")
    parser.add_argument("--gets", default=5000, type=int)
    parser.add_argument("--searches", default=1000, type=int, help="filter/listing searches")
    parser.add_argument("--semantic", default=300, type=int, help="one-user semantic searches")
    parser.add_argument("--wide", default=20, type=int, help="all-users semantic searches")
    parser.add_argument("--budget", default=10.0, type=float, help="seconds per slow workload")
    parser.add_argument("--embedder", choices=["hashing", "local"], default="hashing")
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    all_results = asyncio.run(main(args))
    print()
    print(table(all_results))
    if args.json:
        Path(args.json).write_text(
            json.dumps({str(k): v for k, v in all_results.items()}, indent=2)
        )


if __name__ == "__main__":
    cli()

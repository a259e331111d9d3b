"""Side-by-side benchmark: our ``SQLiteSession`` vs the SDK's, with raw ``sqlite3`` as the floor.

Usage: ``python benchmarks/run.py [--workloads chat,long_read] [--repeat N] [--quick] [--json F]``

Every workload runs on every contender in this one process, interleaved round-robin (ours, sdk,
raw, ours, sdk, raw, ...), each run on a fresh database file in a temporary directory that is
deleted afterwards. Both session classes run with their defaults: WAL and ``synchronous=FULL``.

``--backend sqlalchemy --url URL`` runs the same workloads on our ``SQLAlchemySession`` vs the
SDK's, with the raw driver as the floor (``sqlalchemy_suite.py``).

``--backend advanced`` runs chat, long_read, undo and branch on our ``AdvancedSQLiteSession`` vs
the SDK's (``agents.extensions.memory``), both with ``create_tables=True``; the floor is our
branch-aware SQL run inline on one connection with no session layer (``raw_advanced.py``).

``--backend advanced-sqlalchemy --url URL`` runs the same four workloads on our
``AdvancedSQLAlchemySession`` on URL vs the SDK's ``AdvancedSQLiteSession`` (on a SQLite file: the
only advanced class the SDK has), with our plain ``SQLAlchemySession`` on URL as the third column
(``advanced_sqlalchemy_suite.py``).

``--backend redis [--url redis://...]`` runs chat, concurrent, long_read, undo and growth on our
``RedisSession`` vs the SDK's, with the redis client running our store's commands as the floor
(``redis_suite.py``; default URL ``redis://127.0.0.1:6379/0``).

``--backend encrypted`` runs chat, concurrent, long_read and undo on our ``EncryptedSession`` over
our ``SQLiteSession`` vs the SDK's ``EncryptedSession`` over its ``SQLiteSession`` (same key, same
TTL), with our unencrypted ``SQLiteSession`` as the third column: the cost of encryption.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import agents
from agents.extensions.memory import AdvancedSQLiteSession as SDKAdvancedSQLiteSession
from agents.extensions.memory import EncryptedSession as SDKEncryptedSession
from raw_advanced import RawAdvancedSession
from raw_sqlite import RawSession
from report import NOISY, failures, noisy, summarize, table
from workloads import (
    ADVANCED_WORKLOADS,
    ENCRYPTED_WORKLOADS,
    QUICK,
    WORKLOADS,
    Factory,
    Result,
    Session,
)

import agent_sessions


class SharedStore:
    """Our sessions made from one ``SQLiteStore`` per file: one thread and group commit."""

    def __init__(self) -> None:
        self.stores: dict[str, agent_sessions.SQLiteStore] = {}

    def __call__(self, session_id: str, db_path: str) -> Session:
        store = self.stores.get(db_path)
        if store is None:
            store = self.stores[db_path] = agent_sessions.SQLiteStore(db_path)
        return store.session(session_id)

    def close(self) -> None:
        """Close every store made so far."""
        for store in self.stores.values():
            store.close()
        self.stores.clear()


CONTENDERS: dict[str, Factory] = {
    "ours": agent_sessions.SQLiteSession,
    "shared": SharedStore(),
    "sdk": agents.SQLiteSession,
    "raw": RawSession,
}


ADVANCED_CONTENDERS: dict[str, Factory] = {
    "ours": lambda sid, path: agent_sessions.AdvancedSQLiteSession(
        session_id=sid, db_path=path, create_tables=True
    ),
    "sdk": lambda sid, path: SDKAdvancedSQLiteSession(
        session_id=sid, db_path=path, create_tables=True
    ),
    "raw": RawAdvancedSession,
}
ADVANCED_COLUMNS = {"ours": "ours", "sdk": "SDK", "raw": "raw sqlite3, our SQL"}
ADVANCED_RATIOS = [
    ("ours/SDK", "ours", "sdk"),
    ("ours/raw", "ours", "raw"),
    ("raw/SDK", "raw", "sdk"),
]

KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="
"""A fixed Fernet key: both wrappers derive their per-session keys from it."""

ENCRYPTED_CONTENDERS: dict[str, Factory] = {
    "ours": lambda sid, path: agent_sessions.EncryptedSession(
        sid, agent_sessions.SQLiteSession(sid, path), KEY, ttl=600
    ),
    "sdk": lambda sid, path: SDKEncryptedSession(
        sid, agents.SQLiteSession(sid, path), KEY, ttl=600
    ),
    "plain": agent_sessions.SQLiteSession,
}
ENCRYPTED_COLUMNS = {"ours": "ours, encrypted", "sdk": "SDK, encrypted", "plain": "ours, plain"}
ENCRYPTED_RATIOS = [("ours/SDK", "ours", "sdk"), ("ours/plain", "ours", "plain")]

_ALL_WORKLOADS = WORKLOADS | ADVANCED_WORKLOADS


async def _run_once(workload: str, make: Factory, db_path: str, params: dict[str, Any]) -> Result:
    """One run; every session the workload made is closed at the end, whatever happens."""
    opened: list[Session] = []

    def tracked(session_id: str, path: str) -> Session:
        session = make(session_id, path)
        opened.append(session)
        return session

    try:
        return await _ALL_WORKLOADS[workload](tracked, db_path, **params)
    finally:
        for session in opened:
            session.close()
        if isinstance(make, SharedStore):
            make.close()


def run_workload(
    workload: str,
    repeat: int,
    params: dict[str, Any],
    tmp_root: str | None,
    contenders: dict[str, Factory] = CONTENDERS,
) -> dict[str, list[Result]]:
    """All repeats of one workload, interleaved across contenders, each on a fresh file."""
    runs: dict[str, list[Result]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, make in contenders.items():
            gc.collect()
            with tempfile.TemporaryDirectory(prefix="agent-sessions-bench-", dir=tmp_root) as tmp:
                db_path = str(Path(tmp) / "bench.db")  # -wal/-shm go with the directory
                runs[name].append(asyncio.run(_run_once(workload, make, db_path, params)))
    return runs


COLUMNS = {"ours": "ours", "shared": "ours, shared store", "sdk": "SDK", "raw": "raw sqlite3"}
RATIOS = [("ours/SDK", "ours", "sdk"), ("shared/SDK", "shared", "sdk"), ("ours/raw", "ours", "raw")]


def header(args: argparse.Namespace) -> dict[str, Any]:
    import sqlite3

    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "agent_sessions": agent_sessions.__version__,
        "openai_agents": version("openai-agents"),
        "platform": platform.platform(),
        "tmp_dir": args.tmp_dir or tempfile.gettempdir(),
        "repeat": args.repeat,
        "quick": args.quick,
    }


def _sqlite_suite(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    meta = header(args)
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    summaries: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        params = QUICK[name] if args.quick else {}
        summaries[name] = summarize(name, run_workload(name, args.repeat, params, args.tmp_dir))

    print()
    print("\n".join(table(summaries, COLUMNS, RATIOS)))
    return {"meta": meta, "results": summaries}, []


def _contender_suite(
    args: argparse.Namespace,
    names: list[str],
    contenders: dict[str, Factory],
    columns: dict[str, str],
    ratios: list[tuple[str, str, str]],
) -> dict[str, Any]:
    """Run the workloads on a set of contenders and print the table of medians and ratios."""
    meta = {"backend": args.backend, **header(args)}
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    summaries: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        params = QUICK[name] if args.quick else {}
        runs = run_workload(name, args.repeat, params, args.tmp_dir, contenders)
        summaries[name] = summarize(name, runs)

    print()
    print("\n".join(table(summaries, columns, ratios)))
    return {"meta": meta, "results": summaries}


SUITES: dict[str, tuple[dict[str, Factory], dict[str, str], list[tuple[str, str, str]], str]] = {
    "advanced": (
        ADVANCED_CONTENDERS,
        ADVANCED_COLUMNS,
        ADVANCED_RATIOS,
        "Both classes: AdvancedSQLiteSession(session_id=..., db_path=..., create_tables=True); "
        "branch rows are ms per create_branch_from_turn(2). raw runs our store's SQL inline on "
        "one sqlite3 connection (no worker thread, no session layer): raw/SDK is the most any "
        "session layer on this schema could reach at the same durability.",
    ),
    "encrypted": (
        ENCRYPTED_CONTENDERS,
        ENCRYPTED_COLUMNS,
        ENCRYPTED_RATIOS,
        "Encrypted: EncryptedSession(id, SQLiteSession(id, path), key, ttl=600), ours over ours "
        "and the SDK's over the SDK's; 'ours/plain' below 1 is the cost of encryption "
        "(0.67 means encrypted costs 1.5x plain).",
    ),
}
"""The suites that compare fixed contenders: their columns, ratios and the note printed below."""


def _table_suite(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    contenders, columns, ratios, note = SUITES[args.backend]
    return _contender_suite(args, names, contenders, columns, ratios), [note]


def _sqlalchemy_suite(
    args: argparse.Namespace, names: list[str]
) -> tuple[dict[str, Any], list[str]]:
    import sqlalchemy_suite as suite

    target = suite.Target.parse(args.url, args.engine_kwargs, args.tmp_dir)
    meta = suite.header(target, args.repeat, args.quick)
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    summaries: dict[str, dict[str, Any]] = {}
    journal: dict[str, str] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        params = QUICK[name] if args.quick else {}
        runs, errors = suite.run_workload(name, args.repeat, params, target, journal)
        summaries[name] = summarize(name, runs, errors)

    columns, ratios = suite.columns(target)
    print()
    print("\n".join(table(summaries, columns, ratios)))
    notes = []
    if journal:
        modes = ", ".join(f"{name} {mode}" for name, mode in journal.items())
        notes.append(f"SQLite journal_mode after the runs: {modes}.")
    if not target.raw:
        notes.append(f"No raw floor for {target.dialect}: the raw columns are left out.")
    if target.mysql:
        notes.append(
            "The SDK cannot create its tables on MySQL/MariaDB (VARCHAR without a length): "
            "they are created in our layout first."
        )
    meta["journal_mode"] = journal
    return {"meta": meta, "results": summaries}, notes


def _advanced_sqlalchemy_suite(
    args: argparse.Namespace, names: list[str]
) -> tuple[dict[str, Any], list[str]]:
    import sqlite3

    import advanced_sqlalchemy_suite as advanced
    import sqlalchemy_suite as suite

    target = suite.Target.parse(args.url, args.engine_kwargs, args.tmp_dir)
    meta = {"backend": f"advanced-sqlalchemy ({target.dialect})"}
    meta |= {
        k: v for k, v in suite.header(target, args.repeat, args.quick).items() if k != "backend"
    }
    meta["sqlite (SDK)"] = sqlite3.sqlite_version
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    summaries: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        params = QUICK[name] if args.quick else {}
        runs, errors = advanced.run_workload(name, args.repeat, params, target)
        summaries[name] = summarize(name, runs, errors)
    print()
    print("\n".join(table(summaries, advanced.COLUMNS, advanced.RATIOS)))
    note = (
        f"ours: AdvancedSQLAlchemySession.from_url on {target.shown()}; plain: our "
        "SQLAlchemySession.from_url there (no branches: n/a on branch rows); SDK: "
        "agents.extensions.memory.AdvancedSQLiteSession on a SQLite file (its only advanced "
        "class). ours/plain below 1 is what the branch bookkeeping costs (0.77 = 1.3x plain)."
    )
    return {"meta": meta, "results": summaries}, [note]


def _redis_suite(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    import redis_suite as suite

    url = args.url or "redis://127.0.0.1:6379/0"
    meta = suite.header(url, args.repeat, args.quick)
    print(" | ".join(f"{key} {value}" for key, value in meta.items()))
    summaries: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        params = QUICK[name] if args.quick else {}
        runs, errors = suite.run_workload(name, args.repeat, params, url)
        summaries[name] = summarize(name, runs, errors)
    print()
    print("\n".join(table(summaries, suite.COLUMNS, suite.RATIOS)))
    note = (
        "ours and SDK: RedisSession(id, redis_client=client, key_prefix=prefix), one client per "
        "run; raw: that client running our store's commands (LRANGE, our Lua scripts) with no "
        "session layer."
    )
    return {"meta": meta, "results": summaries}, [note]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workloads",
        help="comma-separated (default: every workload of the backend)",
    )
    parser.add_argument("--repeat", type=int, help="runs per contender (default 3, quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--json", type=Path, help="write medians and every run here")
    parser.add_argument("--tmp-dir", help="where the database files go (default: system temp)")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "sqlalchemy", "advanced", "advanced-sqlalchemy", "encrypted", "redis"),
        default="sqlite",
        help="sqlite: SQLiteSession (the default); sqlalchemy: SQLAlchemySession on --url; "
        "advanced: AdvancedSQLiteSession; advanced-sqlalchemy: AdvancedSQLAlchemySession on "
        "--url; encrypted: EncryptedSession; redis: RedisSession (--url, default local)",
    )
    parser.add_argument(
        "--url", help="async SQLAlchemy URL (with --backend sqlalchemy or advanced-sqlalchemy)"
    )
    parser.add_argument(
        "--engine-kwargs",
        type=json.loads,
        default={},
        help="JSON passed to create_async_engine for both classes, e.g. '{\"pool_size\": 20}'",
    )
    args = parser.parse_args(argv)
    available = {
        "advanced": ADVANCED_WORKLOADS,
        "advanced-sqlalchemy": ADVANCED_WORKLOADS,
        "encrypted": ENCRYPTED_WORKLOADS,
    }.get(args.backend, WORKLOADS)
    if args.workloads is None:
        args.workloads = ",".join(available)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(available)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    on_url = args.backend in ("sqlalchemy", "advanced-sqlalchemy")
    if on_url and not args.url:
        parser.error(f"--backend {args.backend} needs --url")
    if args.backend == "redis" and args.engine_kwargs:
        parser.error("--engine-kwargs goes with --backend sqlalchemy or advanced-sqlalchemy")
    if not on_url and args.backend != "redis" and (args.url or args.engine_kwargs):
        parser.error(
            "--url and --engine-kwargs go with --backend sqlalchemy or advanced-sqlalchemy"
        )

    try:
        suite = {
            "sqlite": _sqlite_suite,
            "sqlalchemy": _sqlalchemy_suite,
            "advanced": _table_suite,
            "advanced-sqlalchemy": _advanced_sqlalchemy_suite,
            "encrypted": _table_suite,
            "redis": _redis_suite,
        }[args.backend]
        report, notes = suite(args, names)
    except ValueError as exc:
        parser.error(str(exc))
    summaries = report["results"]
    unit = "ms" if args.backend.startswith("advanced") else "µs"
    print(
        f"\nRatios are speedups of ours: > 1 means ours is faster (for {unit} rows, theirs ÷ ours)."
    )
    for note in notes:
        print(note)
    noisy_cells = noisy(summaries) if args.repeat > 1 else []
    if noisy_cells:
        print(f"\nNoisy (spread > {NOISY:.0%}):\n" + "\n".join(f"- {n}" for n in noisy_cells))
    failed = failures(summaries)
    if failed:
        print("\nFailed runs:\n" + "\n".join(f"- {f}" for f in failed))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

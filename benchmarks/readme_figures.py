"""The README's performance table, measured: every figure from one run of this one command.

Usage: ``python benchmarks/readme_figures.py [--repeat 5] [--url postgresql+asyncpg://...]``

It runs each suite of ``run.py`` (SQLite, SQLAlchemy on PostgreSQL, AdvancedSQLiteSession,
AdvancedSQLAlchemySession on PostgreSQL, EncryptedSession, RedisSession on the local server) in a
subprocess with ``--json``, then
prints the README's table: for each row the median of the per-round ratios (each round runs
every contender once, interleaved, so a round's ratio compares runs made side by side) and, in
brackets, the lowest and highest round.
Nothing is copied from an earlier run: the table is only what this invocation measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

ROWS: list[tuple[str, str, str, str, str]] = [
    # (label, suite, workload, ours, theirs)
    ("`SQLiteSession` chat turn (`get_items` + `add_items`)", "sqlite", "chat", "ours", "sdk"),
    ("`SQLiteSession` chat, share of raw `sqlite3`", "sqlite", "chat", "ours", "raw"),
    ("`SQLiteSession`, 20 concurrent chats on one file", "sqlite", "concurrent", "ours", "sdk"),
    ("`SQLiteSession` newest 20 of 4,000 items", "sqlite", "long_read", "ours", "sdk"),
    ("`SQLiteSession` undo (`pop_item`)", "sqlite", "undo", "ours", "sdk"),
    ("`SQLAlchemySession` PostgreSQL chat", "postgres", "chat", "ours", "sdk"),
    ("`SQLAlchemySession` PostgreSQL chat, share of raw", "postgres", "chat", "ours", "raw"),
    ("`SQLAlchemySession` PostgreSQL, 20 at once", "postgres", "concurrent", "ours", "sdk"),
    ("`SQLAlchemySession` PostgreSQL `long_read`", "postgres", "long_read", "ours", "sdk"),
    ("`AdvancedSQLiteSession` chat", "advanced", "chat", "ours", "sdk"),
    ("`AdvancedSQLiteSession` `long_read`", "advanced", "long_read", "ours", "sdk"),
    (
        "`AdvancedSQLAlchemySession` PostgreSQL chat, vs the SDK's `AdvancedSQLiteSession`",
        "advanced-postgres",
        "chat",
        "ours",
        "sdk",
    ),
    (
        "`AdvancedSQLAlchemySession` PostgreSQL chat, share of our `SQLAlchemySession`",
        "advanced-postgres",
        "chat",
        "ours",
        "plain",
    ),
    ("`EncryptedSession` over `SQLiteSession` chat", "encrypted", "chat", "ours", "sdk"),
    ("`EncryptedSession` chat, share of unencrypted", "encrypted", "chat", "ours", "plain"),
    ("`RedisSession` chat", "redis", "chat", "ours", "sdk"),
    ("`RedisSession` chat, share of the raw client", "redis", "chat", "ours", "raw"),
    ("`RedisSession` newest 20 of 4,000 items", "redis", "long_read", "ours", "sdk"),
]
"""What the README prints; ``ours``/``theirs`` are contender names in ``run.py``'s JSON."""


def suite_args(suite: str, url: str) -> list[str]:
    """The ``run.py`` arguments of one suite."""
    return {
        "sqlite": ["--backend", "sqlite", "--workloads", "chat,concurrent,long_read,undo"],
        "postgres": [
            "--backend",
            "sqlalchemy",
            "--url",
            url,
            "--workloads",
            "chat,concurrent,long_read",
        ],
        "advanced": ["--backend", "advanced", "--workloads", "chat,long_read"],
        "advanced-postgres": [
            "--backend",
            "advanced-sqlalchemy",
            "--url",
            url,
            "--workloads",
            "chat",
        ],
        "encrypted": ["--backend", "encrypted", "--workloads", "chat"],
        "redis": ["--backend", "redis", "--workloads", "chat,long_read"],
    }[suite]


def run_suite(suite: str, repeat: int, url: str, out: Path, *, quick: bool) -> dict[str, Any]:
    """Run one suite in a subprocess and return its JSON report."""
    target = out / f"{suite}.json"
    command = [sys.executable, str(HERE / "run.py"), *suite_args(suite, url)]
    command += ["--repeat", str(repeat), "--json", str(target), *(["--quick"] if quick else [])]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our own script
    report: dict[str, Any] = json.loads(target.read_text())
    return report


def round_ratios(report: dict[str, Any], workload: str, ours: str, theirs: str) -> list[float]:
    """Ours over theirs for each round of one workload (higher is better for ours)."""
    entry = report["results"][workload]
    mine = [run["ops_per_s"] for run in entry[ours]["runs"]]
    other = [run["ops_per_s"] for run in entry[theirs]["runs"]]
    return [a / b for a, b in zip(mine, other, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds per suite")
    parser.add_argument("--url", default=PG_URL, help="the PostgreSQL URL of the SQLAlchemy rows")
    parser.add_argument("--json", type=Path, help="also write every suite's report here")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test only")
    args = parser.parse_args(argv)
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for suite in dict.fromkeys(row[1] for row in ROWS):
            reports[suite] = run_suite(suite, args.repeat, args.url, Path(tmp), quick=args.quick)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1))
    meta = reports["sqlite"].get("meta", {})
    print(f"| ({args.repeat} interleaved rounds; {', '.join(f'{k} {v}' for k, v in meta.items())})")
    print("| | ratio | lowest, highest round |")
    print("|---|---:|---:|")
    for label, suite, workload, ours, theirs in ROWS:
        ratios = round_ratios(reports[suite], workload, ours, theirs)
        share = theirs in {"raw", "plain"}
        median = statistics.median(ratios)
        cell = f"{median:.2f}" if share else f"{median:.2f}x"
        print(f"| {label} | {cell} | {min(ratios):.2f}, {max(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

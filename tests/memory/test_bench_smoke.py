"""The memory benchmark runs end to end on a tiny data set and prints its table."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("langgraph") is None,
    reason="the bench extra is not installed: pip install -e '.[bench]'",
)
def test_memory_benchmark_prints_every_workload(tmp_path: Path) -> None:
    """Prints one table row per workload, each with a figure for ours."""
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "memory_bench.py"), "--sizes", "300",
            "--namespaces", "10", "--repeat", "1", "--puts", "20", "--gets", "50",
            "--searches", "20", "--semantic", "10", "--wide", "2", "--tmp-dir", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 300 |")]
    workloads = [row.split("|")[2].strip() for row in rows]
    assert workloads == [
        "put",
        "get",
        "search: filter, 1 user",
        "search: newest 10, 1 user",
        "semantic: all users, first",
        "semantic: 1 user",
        "semantic: all users",
    ]
    assert all(row.split("|")[3].strip() not in ("", "n/a") for row in rows)

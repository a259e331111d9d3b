"""The Redis benchmark still runs end to end (its numbers are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import redis_url

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent.parent


def test_quick_redis_benchmark_reports_every_workload() -> None:
    """`run.py --backend redis --quick` reports each workload for ours, the SDK's and raw."""
    command = ["benchmarks/run.py", "--backend", "redis", "--url", redis_url(), "--quick"]
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    for workload in ("chat", "concurrent", "long_read", "undo", "growth"):
        assert f"| {workload}" in result.stdout
    assert "raw redis client" in result.stdout
    assert "ours/SDK" in result.stdout

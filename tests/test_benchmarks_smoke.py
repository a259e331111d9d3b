"""The benchmark harness still runs end to end (its numbers are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_benchmark_prints_every_workload(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick` finishes and reports each workload for all three contenders."""
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/run.py",
            "--quick",
            "--repeat",
            "1",
            "--tmp-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for workload in ("chat", "concurrent", "long_read", "undo", "growth"):
        assert f"| {workload}" in result.stdout
    assert "ours/SDK" in result.stdout
    assert list(tmp_path.iterdir()) == []  # every database file was removed

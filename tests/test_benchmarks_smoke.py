"""The benchmark harness still runs end to end (its numbers are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each benchmark runs in a subprocess

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


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backend", "workloads", "ratio"),
    [
        ("encrypted", ("chat", "concurrent", "long_read", "undo"), "ours/plain"),
        ("advanced", ("chat", "long_read", "undo", "branch"), "ours/SDK"),
    ],
)
def test_quick_benchmark_of_other_backends(
    tmp_path: Path, backend: str, workloads: tuple[str, ...], ratio: str
) -> None:
    """`benchmarks/run.py --backend B --quick` reports each of the backend's workloads."""
    tmp = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--backend", backend, "--quick", "--tmp-dir", tmp],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for workload in workloads:
        assert f"| {workload}" in result.stdout
    assert ratio in result.stdout
    assert list(tmp_path.iterdir()) == []

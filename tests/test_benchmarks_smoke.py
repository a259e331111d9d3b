"""The benchmark harness still runs end to end (its numbers are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sql_servers import database_url

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


def run_benchmark(script: str, *args: str) -> str:
    """Run ``benchmarks/<script>`` with ``args``; return what it printed (it must succeed)."""
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def test_quick_advanced_benchmark_on_a_url(tmp_path: Path, kind: str) -> None:
    """`--backend advanced-sqlalchemy --url URL --quick` reports ours, plain and the SDK's class."""
    db = tmp_path / "db"
    db.mkdir()
    url = database_url(kind, db)
    out = run_benchmark(
        "run.py", "--backend", "advanced-sqlalchemy", "--url", url, "--quick", "--tmp-dir", str(db)
    )
    for workload in ("chat", "long_read", "undo", "branch 1k", "branch 10k/1k"):
        assert f"| {workload}" in out
    assert "| ours, advanced | ours, plain | SDK advanced, SQLite | ours/SDK | ours/plain |" in out
    assert "| n/a |" in out  # plain sessions have no branches
    assert list(db.iterdir()) == []


@pytest.mark.slow
@pytest.mark.sqlite
def test_quick_advanced_growth_reports_each_measure_and_ratio(tmp_path: Path) -> None:
    """`advanced_growth.py --quick` times every measure at both sizes, with the ratio to 1k."""
    db, report = tmp_path / "db", tmp_path / "growth.json"
    db.mkdir()
    out = run_benchmark(
        "advanced_growth.py",
        "--quick",
        "--backends",
        "sqlite,aiosqlite",
        "--tmp-dir",
        str(db),
        "--json",
        str(report),
    )
    assert "| measure | AdvancedSQLiteSession | aiosqlite |" in out
    for label in ("get_items(20)", "create_branch_from_turn(2)", "create_branch_from_turn(newest)"):
        assert f"| {label} at 1k" in out
        assert f"| {label} at 4k" in out
        assert f"| {label} 4k/1k |" in out
    results = json.loads(report.read_text())["results"]
    assert set(results) == {"sqlite", "aiosqlite"}
    assert set(results["sqlite"]["read"]["median"]) == {"1000", "4000"}
    assert list(db.iterdir()) == []


def test_quick_provenance_benchmark_reports_the_ratio() -> None:
    """`provenance.py --quick` times chat with and without a run context and prints the ratio."""
    out = run_benchmark("provenance.py", "--quick")
    assert "chat with provenance / without on SQLiteSession file: median " in out
    assert "goal <= 1.15" in out


def test_quick_advanced_chat_benchmark_reports_the_ratio_and_its_halves() -> None:
    """`advanced_chat.py --quick` chats on both classes turn for turn and prints ours/plain."""
    out = run_benchmark("advanced_chat.py", "--quick")
    assert "chat ours/plain (advanced vs plain, turn for turn) on a SQLite file: median " in out
    assert "2 rounds of 2 x 5 turns; goal >= 0.77)" in out
    assert "per turn, median ms: advanced read " in out
    assert "; plain read " in out

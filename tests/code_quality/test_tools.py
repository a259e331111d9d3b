"""Linting, formatting and type checking, run as ordinary tests."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("agent_sessions", "tests", "benchmarks", "examples")
LINTED = [name for name in CHECKED if (ROOT / name).is_dir()]


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <tool>`` at the repository root, or skip if the tool is not installed."""
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed; install the dev extra: pip install -e '.[dev]'")
    return subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """The command and everything it printed, for the assertion message."""
    return f"$ {' '.join(result.args)}\n{result.stdout}{result.stderr}"


def test_ruff_check() -> None:
    """Passes ``ruff check`` with the rules chosen in pyproject.toml."""
    result = run_tool("ruff", "check", *LINTED)
    assert result.returncode == 0, report(result)


def test_ruff_format() -> None:
    """Is formatted as ``ruff format`` would format it."""
    result = run_tool("ruff", "format", "--check", *LINTED)
    assert result.returncode == 0, report(result)


def test_mypy_strict() -> None:
    """Passes ``mypy`` in the strict configuration of pyproject.toml (package and tests/typing)."""
    result = run_tool("mypy")
    assert result.returncode == 0, report(result)

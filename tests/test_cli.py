"""The ``agent-sessions`` command line, run for real in a subprocess, offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agent_sessions

TURNS = [
    "Hi! My name is Ada.",
    "What is the weather in Paris?",
    "What is my name?",
    "How many messages have I sent?",
]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param([sys.executable, "-m", "agent_sessions.cli"], id="python-m"),
        pytest.param(["agent-sessions"], id="entry-point"),
    ],
)
def command(request: pytest.FixtureRequest) -> list[str]:
    """The command that starts the CLI: ``python -m`` or the installed console script."""
    argv: list[str] = list(request.param)
    if argv == ["agent-sessions"]:
        found = shutil.which("agent-sessions")
        if found is None:
            pytest.skip("the agent-sessions console script is not on PATH (package not installed)")
        argv = [found]
    return argv


def run(
    command: list[str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with no API key, so the demo uses the offline model and never the network."""
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_version(command: list[str]) -> None:
    """Prints ``agent-sessions <version>`` and exits 0 for ``--version``."""
    result = run(command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"agent-sessions {agent_sessions.__version__}"


def test_no_arguments_is_a_usage_error(command: list[str]) -> None:
    """Prints the usage to stderr, nothing to stdout, and exits 2 without a command."""
    result = run(command)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: agent-sessions")
    assert "demo" in result.stderr
    assert result.stdout == ""


def test_unknown_command_is_a_usage_error(command: list[str]) -> None:
    """Exits 2 with a usage message for a command it does not know."""
    result = run(command, "no-such-command")
    assert result.returncode == 2
    assert "usage: agent-sessions" in result.stderr


@pytest.fixture(scope="module")
def demo(
    command: list[str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One run of ``demo --db <tmp>/d.db``, shared by the tests that only inspect it."""
    db = tmp_path_factory.mktemp("demo") / "d.db"
    return run(command, "demo", "--db", str(db)), db


def test_demo_holds_both_conversations(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Runs the offline demo, showing every turn of both conversations and the recalled name."""
    result, _ = demo
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Your name is Ada" in out
    assert "1. First conversation" in out
    assert "2. A brand-new SQLiteSession object" in out
    you = [line.split(">", 1)[1].strip() for line in out.splitlines() if "you   >" in line]
    assert you == TURNS
    assert sum("agent >" in line for line in out.splitlines()) == len(TURNS)
    assert "offline" in out.splitlines()[0]


async def test_demo_leaves_its_conversation_in_the_file(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Leaves the file it was given holding exactly the items it reports."""
    result, db = demo
    assert result.returncode == 0, result.stderr
    assert db.is_file()
    reported = re.search(r"(\d+) items are stored in", result.stdout)
    assert reported is not None, result.stdout
    session = agent_sessions.SQLiteSession("demo", db)
    try:
        items = await session.get_items()
    finally:
        session.close()
    assert len(items) > 0
    assert len(items) == int(reported[1])
    assert items[0] == {"role": "user", "content": TURNS[0]}


def test_demo_defaults_to_a_file_in_the_working_directory(
    command: list[str], tmp_path: Path
) -> None:
    """Creates ``agent_sessions_demo.db`` in the working directory when ``--db`` is not given."""
    result = run(command, "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "agent_sessions_demo.db").is_file()


def test_demo_is_repeatable(command: list[str], tmp_path: Path) -> None:
    """Prints the same output on a second run over the same file, since it clears its session."""
    db = tmp_path / "d.db"
    first = run(command, "demo", "--db", str(db))
    second = run(command, "demo", "--db", str(db))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout

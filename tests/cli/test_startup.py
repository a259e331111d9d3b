"""Start-up weight: the commands that need no agent never import the OpenAI Agents SDK.

Each test runs one fresh interpreter (about 0.1 s) and reads its ``sys.modules``; no test asserts
a time (docs/performance.md, "Import and start-up time", has the figures and the command).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import agent_sessions

SDK = ("agents", "openai")


def loaded_after(script: str, *args: str) -> tuple[list[str], str]:
    """Run ``script`` in a fresh interpreter; return the top-level packages then loaded, and stdout.

    The script's own output goes to stdout; the sorted package names are the last line of stderr.
    """
    probe = (
        script
        + "\nimport sys\n"
        + "print(__import__('json').dumps(sorted({m.split('.')[0] for m in sys.modules})),"
        + " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1]), result.stdout


MAIN = (
    "import sys\n"
    "from agent_sessions.cli import main\n"
    "status = main(sys.argv[1:])\n"
    "assert status == 0, status\n"
)
"""Runs the command line on its arguments in the probe interpreter."""


@pytest.mark.parametrize(
    ("command", "text"),
    [pytest.param(["ls"], "hello", id="ls"), pytest.param(["show", "user-1"], "hello", id="show")],
)
async def test_database_commands_on_a_sqlite_file_do_not_import_the_sdk(
    tmp_path: Path, command: list[str], text: str
) -> None:
    """Lists a SQLite file's sessions, or prints one, without the SDK or asyncpg."""
    path = tmp_path / "chats.db"
    session = agent_sessions.SQLiteSession("user-1", str(path))
    try:
        await session.add_items([{"role": "user", "content": text}])
    finally:
        session.close()
    name, *rest = command
    loaded, stdout = loaded_after(MAIN, name, str(path), *rest)
    assert ("user-1" if name == "ls" else text) in stdout
    assert not {*SDK, "asyncpg"} & set(loaded), loaded


def test_version_imports_neither_the_sdk_nor_a_driver() -> None:
    """``python -m agent_sessions --version`` loads no SDK, SQLAlchemy, driver or asyncio."""
    script = (
        "import runpy, sys\n"
        "sys.argv = ['agent_sessions', '--version']\n"
        "try:\n"
        "    runpy.run_module('agent_sessions', run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
    )
    loaded, stdout = loaded_after(script)
    assert stdout.strip() == f"agent-sessions {agent_sessions.__version__}"
    heavy = {*SDK, "sqlalchemy", "aiosqlite", "asyncpg", "cryptography", "asyncio"}
    assert not heavy & set(loaded), loaded

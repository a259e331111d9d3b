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
    """Run ``script`` in a fresh interpreter; return the modules then loaded, and stdout.

    The names are those of every module and each top-level package. The script's own output
    goes to stdout; the sorted names are the last line of stderr.
    """
    probe = (
        script
        + "\nimport sys\n"
        + "names = {*sys.modules, *(m.split('.')[0] for m in sys.modules)}\n"
        + "print(__import__('json').dumps(sorted(names)), file=sys.stderr)\n"
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


ASYNC_STACK = ("asyncpg", "aiosqlite", "greenlet", "sqlalchemy.ext.asyncio", "sqlalchemy.orm")
"""An async driver, and SQLAlchemy's asyncio extension with the ORM it imports."""


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        pytest.param(["ls"], "user-1", id="ls"),
        pytest.param(["show", "user-1"], "hello", id="show"),
        pytest.param(["stats"], "sessions         1", id="stats"),
    ],
)
async def test_database_commands_on_a_sqlite_file_load_no_sdk_and_no_async_driver(
    tmp_path: Path, command: list[str], shown: str
) -> None:
    """Lists, prints or measures a SQLite file without the SDK or any async database stack."""
    path = tmp_path / "chats.db"
    session = agent_sessions.SQLiteSession("user-1", str(path))
    try:
        await session.add_items([{"role": "user", "content": "hello"}])
    finally:
        session.close()
    name, *rest = command
    loaded, stdout = loaded_after(MAIN, name, str(path), *rest)
    assert shown in stdout
    assert not {*SDK, *ASYNC_STACK} & set(loaded), loaded


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

"""Every example runs offline, as a user would run it, and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str) -> str:
    """Run ``examples/<name>`` without an API key and return what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_branching_re_asks_turn_two_and_keeps_main(tmp_path: Path) -> None:
    """The branching example answers differently on the branch and leaves main as it was."""
    out = run_example("branching.py", str(tmp_path / "b.db"))
    assert "You told me you like trains over planes." in out
    assert "You told me you like planes, actually." in out
    assert "re-ask" in out
    assert " main     6 items, 3 user turns" in out
    assert "the last answer is still: 'You told me you like trains over planes.'" in out


def test_encrypted_ttl_hides_text_expires_rotates_and_shreds(tmp_path: Path) -> None:
    """The encryption example keeps names out of the file, expires, rotates and shreds."""
    out = run_example("encrypted_ttl.py", str(tmp_path))
    assert "'Ada' appears in the file: False" in out
    assert "I don't know your name yet." in out
    assert "purged 2 expired rows from the file" in out
    assert "with the new key alone: 4 items readable" in out
    assert "items readable from the backup: 0" in out
    assert (tmp_path / "keys.db").exists()

"""``agent-sessions ls --where KEY=VALUE`` and the metadata in ``ls --json`` and ``show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_sessions import SQLiteSession
from agent_sessions.cli import main


@pytest.fixture
async def db(tmp_path: Path) -> str:
    """A SQLite file with three sessions, two with metadata."""
    path = tmp_path / "ls.db"
    for sid, fields in (("a", {"plan": "pro", "n": 1}), ("b", {"plan": "free"}), ("c", {})):
        session = SQLiteSession(sid, path)
        await session.add_items([{"role": "user", "content": "hi"}])
        if fields:
            await session.update_metadata(**fields)
        session.close()
    return str(path)


def _ls_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["ls", *args, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_where_filters_and_json_shows_metadata(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--where keeps matching sessions (value as JSON, else text) and --json carries metadata."""
    document = _ls_json(capsys, db, "--where", "plan=pro")
    assert document["total"] == 1
    (entry,) = document["sessions"]  # type: ignore[misc]
    assert entry["session_id"] == "a"
    assert entry["metadata"] == {"plan": "pro", "n": 1}
    assert _ls_json(capsys, db, "--where", "n=1", "--where", "plan=free")["total"] == 0
    assert _ls_json(capsys, db, "--where", 'n="1"')["total"] == 0  # the string "1" is not 1


def test_show_prints_metadata(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The show command prints a session's metadata line."""
    assert main(["show", db, "b"]) == 0
    assert 'metadata: {"plan":"free"}' in capsys.readouterr().out


def test_bad_where_is_a_usage_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A --where without KEY=VALUE is refused by the parser with a clear message."""
    with pytest.raises(SystemExit) as exit_info:
        main(["ls", db, "--where", "plan"])
    assert exit_info.value.code == 2
    assert "use KEY=VALUE" in capsys.readouterr().err


def test_where_on_redis_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """On a Redis URL --where is refused with a clear error, never silently ignored."""
    assert main(["ls", "redis://127.0.0.1:6379/0", "--where", "plan=pro"]) == 1
    assert "--where is not supported on Redis" in capsys.readouterr().err

"""``agent-sessions show`` prints who wrote each item; ``ls --agent`` lists what an agent wrote."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from agent_sessions import EncryptedSession, RedisSession, SQLiteSession, as_run
from agent_sessions.cli import main
from tests.admin.test_provenance_admin import fill_two, message
from tests.redis_server import REDIS_URL, drop_prefix, redis_url, unique_prefix

KEY = Fernet.generate_key().decode()


async def _fill(path: Path) -> None:
    await fill_two(path)
    secret = SQLiteSession("t3", path)
    async with EncryptedSession("t3", secret, KEY, ttl=None) as encrypted:
        with as_run("job-3", agent_name="vault"):
            await encrypted.add_items([message("assistant", "the code is 1234")])


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite file: t1 (untagged, then triage's and billing's runs), t2 untagged, t3 sealed."""
    path = tmp_path / "p.db"
    asyncio.run(_fill(path))
    return str(path)


def _lines(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.sqlite
def test_show_prints_the_agent_of_each_item(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each row shows its agent ('-' untagged) and a line names each run before its items."""
    lines = _lines(capsys, "show", db, "t1")
    rows = [line for line in lines if line.startswith("#")]
    assert [row.split()[3] for row in rows] == ["-", "triage", "triage", "billing"]
    assert "run job-1:" in lines
    assert lines.index("run job-2:") == lines.index(rows[3]) - 1
    assert "plain" in rows[0]


@pytest.mark.sqlite
def test_show_of_untagged_rows_adds_no_column(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A session without provenance prints as before: no agent column, no run line."""
    lines = _lines(capsys, "show", db, "t2")
    (row,) = [line for line in lines if line.startswith("#")]
    assert row.split()[3] == "user"
    assert not any(line.startswith("run ") for line in lines)


@pytest.mark.sqlite
def test_show_json_carries_provenance(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives tagged items agent_name, run_id and run_position; untagged ones none."""
    items = json.loads("\n".join(_lines(capsys, "show", db, "t1", "--json")))["items"]
    assert "agent_name" not in items[0]
    assert [(i["agent_name"], i["run_id"], i["run_position"]) for i in items[1:]] == [
        ("triage", "job-1", 0),
        ("triage", "job-1", 1),
        ("billing", "job-2", 0),
    ]


@pytest.mark.sqlite
def test_show_of_an_encrypted_session_names_its_agent(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a key the row stays encrypted, and its clear-text agent name is shown."""
    lines = _lines(capsys, "show", db, "t3")
    (row,) = [line for line in lines if line.startswith("#")]
    assert row.split()[3:5] == ["vault", "encrypted"]
    assert "1234" not in "\n".join(lines)
    assert any(line.startswith("encrypted: 1 row(s)") for line in lines)


@pytest.mark.sqlite
def test_ls_agent_filters_and_combines_with_where(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ls --agent option keeps the sessions NAME wrote to, with --where too."""

    def listed(*args: str) -> tuple[list[str], int]:
        document = json.loads("\n".join(_lines(capsys, "ls", db, *args, "--json")))
        return [entry["session_id"] for entry in document["sessions"]], document["total"]

    assert listed("--agent", "triage") == (["t1"], 1)
    assert listed("--agent", "vault") == (["t3"], 1)
    assert listed("--agent", "triage", "--where", "plan=pro") == (["t1"], 1)
    assert listed("--agent", "vault", "--where", "plan=pro") == ([], 0)
    assert listed("--agent", "nobody") == ([], 0)


async def _redis_session(prefix: str) -> None:
    client = aioredis.from_url(redis_url())
    session = RedisSession("r", redis_client=client, key_prefix=prefix)
    await session.add_items([message("user", "plain")])
    with as_run("job-r", agent_name="triage"):
        await session.add_items([message("assistant", "tagged")])
    await client.aclose()


async def _drop(prefix: str) -> None:
    client = aioredis.from_url(redis_url())
    await drop_prefix(client, prefix)
    await client.aclose()


@pytest.mark.redis
def test_show_on_redis_prints_agents(capsys: pytest.CaptureFixture[str]) -> None:
    """On a Redis URL show prints the agent column and the run line too."""
    prefix = unique_prefix()
    asyncio.run(_redis_session(prefix))
    try:
        lines = _lines(capsys, "show", f"{REDIS_URL}?key_prefix={prefix}", "r")
        rows = [line for line in lines if line.startswith("#")]
        assert "run job-r:" in lines
        assert "triage" in rows[1]
        assert rows[0].split()[1] == "-"  # no time, no agent: Redis keeps none for it
    finally:
        asyncio.run(_drop(prefix))

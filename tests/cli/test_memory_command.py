"""``agent-sessions memory``: namespaces, one memory, recall's search, export and TTL purge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent_sessions import SQLiteSession
from agent_sessions.cli import main
from agent_sessions.memory import MemoryStore
from tests.memory.conftest import drop_table, unique_table
from tests.sql_servers import database_url

ALICE, BOB = ("users", "alice"), ("users", "bob")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in this process; return its status, stdout and stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def _fill(store: MemoryStore) -> None:
    async with store:
        await store.put(ALICE, "style", {"text": "prefers detailed explanations"})
        await store.put(ALICE, "gone", {"text": "a passing note"}, ttl=0.01)
        await store.put(BOB, "tea", {"text": "drinks green tea"}, ttl=3600)
    await asyncio.sleep(0.05)


@pytest.fixture
def memory_file(tmp_path: Path) -> str:
    """A SQLite memory store: alice has one live and one expired memory, bob one with a TTL."""
    path = tmp_path / "memory.db"
    asyncio.run(_fill(MemoryStore(path, index=None)))
    return str(path)


@pytest.mark.sqlite
def test_ls_counts_live_and_expired_per_namespace(
    memory_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lists each namespace with its live and expired counts, as a table and as JSON."""
    status, out, _ = run(capsys, "memory", "ls", memory_file)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["namespace", "memories", "expired", "last", "write"]
    assert lines[1].split()[:3] == ["users/alice", "1", "1"]
    assert lines[2].split()[:3] == ["users/bob", "1", "0"]
    assert lines[-1] == "2 namespaces, 2 live memories"
    status, out, _ = run(capsys, "memory", "ls", memory_file, "--json", "--prefix", "users/bob")
    document = json.loads(out)
    assert [(n["namespace"], n["memories"]) for n in document["namespaces"]] == [
        (["users", "bob"], 1)
    ]


@pytest.mark.sqlite
def test_show_prints_value_and_expiry(memory_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Shows a memory's value and its expiry: never, a TTL, or expired; unknown keys fail."""
    status, out, _ = run(capsys, "memory", "show", memory_file, "users/alice", "style")
    assert status == 0
    assert "expires: never" in out
    assert '"text": "prefers detailed explanations"' in out
    _, out, _ = run(capsys, "memory", "show", memory_file, "users/alice", "gone")
    assert "(expired)" in out
    _, out, _ = run(capsys, "memory", "show", memory_file, '["users", "bob"]', "tea", "--json")
    document = json.loads(out)
    assert document["ttl"] == 3600
    assert document["expired"] is False
    assert document["value"] == {"text": "drinks green tea"}
    status, _, err = run(capsys, "memory", "show", memory_file, "users/alice", "nope")
    assert status == 1
    assert "no memory 'nope'" in err


@pytest.mark.sqlite
def test_search_answers_as_recall(memory_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Finds the README's memory for its query; with no match it lists the newest, as recall."""
    status, out, _ = run(
        capsys, "memory", "search", memory_file, "users/alice", "how should I explain?"
    )
    assert status == 0
    assert out.splitlines() == [
        "matches (keyword search):",
        "- [style] 1.00 prefers detailed explanations",
    ]
    _, out, _ = run(capsys, "memory", "search", memory_file, "users/alice", "zebra", "--json")
    document = json.loads(out)
    assert document["matched"] is False
    assert [m["key"] for m in document["memories"]] == ["style"]  # the expired one never shows


@pytest.mark.sqlite
def test_export_writes_live_memories(
    memory_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writes one JSON line per live memory, to a new file only its owner can read."""
    target = tmp_path / "memories.jsonl"
    status, out, _ = run(capsys, "memory", "export", memory_file, "-o", str(target))
    assert status == 0
    assert out.strip() == f"exported 2 memories to {target}"
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(d["namespace"], d["key"]) for d in lines] == [
        (["users", "alice"], "style"),
        (["users", "bob"], "tea"),
    ]
    assert target.stat().st_mode & 0o777 == 0o600
    status, _, err = run(capsys, "memory", "export", memory_file, "-o", str(target))
    assert status == 1
    assert "--force" in err


@pytest.mark.sqlite
def test_purge_deletes_expired_only(memory_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A dry run counts the expired memories and keeps them; a purge deletes them alone."""
    status, out, _ = run(capsys, "memory", "purge", memory_file, "--dry-run", "--json")
    assert (status, json.loads(out)) == (0, {"expired": 1, "deleted": 0, "dry_run": True})
    _, out, _ = run(capsys, "memory", "ls", memory_file, "--json")
    assert sum(n["expired"] for n in json.loads(out)["namespaces"]) == 1
    _, out, _ = run(capsys, "memory", "purge", memory_file)
    assert out.strip().endswith("deleted 1 expired memories")
    _, out, _ = run(capsys, "memory", "ls", memory_file, "--json")
    counts = [(n["memories"], n["expired"]) for n in json.loads(out)["namespaces"]]
    assert counts == [(1, 0), (1, 0)]


@pytest.mark.sqlite
def test_read_commands_never_create(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is an error and stays missing; a session file says it has no memories."""
    missing = tmp_path / "none.db"
    status, _, err = run(capsys, "memory", "ls", str(missing))
    assert status == 1
    assert "no such file" in err
    assert not missing.exists()
    chats = tmp_path / "chats.db"

    async def chat() -> None:
        async with SQLiteSession("s", chats) as session:
            await session.add_items([{"role": "user", "content": "hi"}])

    asyncio.run(chat())
    status, _, err = run(capsys, "memory", "ls", str(chats))
    assert status == 1
    assert "has no memory table agent_memories" in err
    assert "see agent-sessions ls" in err


@pytest.mark.sqlite
def test_session_ls_on_a_memory_store_points_at_memory_ls(
    memory_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agent-sessions ls` on a memory-store file says what it is and which command reads it."""
    status, _, err = run(capsys, "ls", memory_file)
    assert status == 1
    assert "is a memory store (table agent_memories), not a session database" in err
    assert f"agent-sessions memory ls {memory_file}" in err


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_every_command_on_a_url(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ls, show, search, export and purge work on a SQLAlchemy URL and a named table."""
    url, table = database_url(kind, tmp_path), unique_table()
    cli_url = url.replace("+asyncpg", "").replace("+aiomysql", "")
    if kind == "sqlite":
        cli_url = url  # sqlite:// would be the sync driver's spelling; both are accepted

    async def fill() -> None:
        engine = create_async_engine(url)
        await _fill(MemoryStore.from_engine(engine, table=table, index=None))
        await engine.dispose()

    asyncio.run(fill())
    try:
        base = ("--table", table)
        status, out, _ = run(capsys, "memory", "ls", cli_url, *base, "--json")
        assert status == 0
        assert [n["memories"] for n in json.loads(out)["namespaces"]] == [1, 1]
        _, out, _ = run(capsys, "memory", "show", cli_url, "users/bob", "tea", *base, "--json")
        assert json.loads(out)["ttl"] == 3600
        _, out, _ = run(capsys, "memory", "search", cli_url, "users/alice", "explain", *base)
        assert "[style]" in out
        _, out, _ = run(capsys, "memory", "export", cli_url, *base)
        assert len(out.splitlines()) == 2
        _, out, _ = run(capsys, "memory", "purge", cli_url, *base, "--json")
        assert json.loads(out)["deleted"] == 1
    finally:

        async def cleanup() -> None:
            engine = create_async_engine(url)
            await drop_table(engine, table)
            await engine.dispose()

        asyncio.run(cleanup())


def test_memory_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent-sessions memory` alone is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["memory"])
    assert caught.value.code == 2

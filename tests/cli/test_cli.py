"""The ``agent-sessions`` command line, run for real in a subprocess, offline."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import agent_sessions
from tests.conftest import count_rows_sqlite, require_server, write_raw_sqlite
from tests.sql_servers import POSTGRES_URL, drop_tables, unique_tables

pytestmark = pytest.mark.slow  # every command runs in a subprocess

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


def cli_env() -> dict[str, str]:
    """The environment the CLI runs in: no API key (offline model, no network), UTF-8 output."""
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run(
    command: list[str], *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with no API key, so the demo uses the offline model and never the network."""
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(),
        cwd=cwd,
        input=stdin,
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


# The database commands ---------------------------------------------------------------------
#
# These run the installed console script (or ``python -m`` when it is not installed) once per
# case, not once per entry point: each start costs about a second.

COMMANDS = ["ls", "show", "search", "export", "import", "migrate", "stats", "purge", "demo", "chat"]
TURN = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "type": "function_call",
        "call_id": "c1",
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    },
    {"type": "function_call_output", "call_id": "c1", "output": "Sunny and 21 °C in Paris."},
    {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny, 21 °C."}]},
]


@pytest.fixture(scope="module")
def cli() -> list[str]:
    """The ``agent-sessions`` console script, or ``python -m agent_sessions.cli`` without it."""
    found = shutil.which("agent-sessions")
    return [found] if found else [sys.executable, "-m", "agent_sessions.cli"]


def run_many(cli: list[str], cases: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent commands at once (each start is slow, the work is not)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run(cli, *args), cases))


def age_sqlite(path: Path, session_id: str, days: int) -> None:
    """Make a session's record and rows look ``days`` old, as SQLite's clock counts."""
    with sqlite3.connect(path) as conn:
        ago = f"-{days} days"
        conn.execute(
            "UPDATE agent_sessions SET created_at = datetime('now', ?), "
            "updated_at = datetime('now', ?) WHERE session_id = ?",
            (ago, ago, session_id),
        )
        conn.execute(
            "UPDATE agent_messages SET created_at = datetime('now', ?) WHERE session_id = ?",
            (ago, session_id),
        )
    conn.close()


async def sample(path: Path) -> Path:
    """A store: "ada" (two turns), "bob" (one turn and a corrupt row), "old" (40 days idle)."""
    for session_id, items in (
        ("ada", [{"role": "user", "content": "Hi, I'm Ada"}, *TURN]),
        ("bob", TURN),
        ("old", TURN[:1]),
    ):
        async with agent_sessions.SQLiteSession(session_id, path) as session:
            await session.add_items(items)  # type: ignore[arg-type]
    write_raw_sqlite(path, "bob", '{"role": "user", "content": "cut sh')
    age_sqlite(path, "old", 40)
    return path


def file_digest(
    path: Path, sessions: str = "agent_sessions", messages: str = "agent_messages"
) -> str:
    """SHA-256 over every session's id and its rows' texts in order, read with plain sqlite3."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(path)
    try:
        ids = [row[0] for row in conn.execute(f"SELECT session_id FROM {sessions} ORDER BY 1")]
        for session_id in ids:
            digest.update(f"\x00session {session_id}\x00".encode())
            for (data,) in conn.execute(
                f"SELECT message_data FROM {messages} WHERE session_id = ? ORDER BY id",
                (session_id,),
            ):
                digest.update(data.encode() + b"\x00")
    finally:
        conn.close()
    return digest.hexdigest()


def test_every_command_has_help(cli: list[str]) -> None:
    """Prints usage and a description for ``--help`` of every command, and exits 0."""
    results = run_many(cli, [[command, "--help"] for command in COMMANDS])
    for command, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: agent-sessions {command}"), command
        assert "options:" in result.stdout, command


async def test_ls_lists_sessions_newest_first(cli: list[str], tmp_path: Path) -> None:
    """Lists sessions as a table, most recently active first, with counts and a total."""
    db = await sample(tmp_path / "s.db")
    result = run(cli, "ls", str(db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "ITEMS", "SIZE", "FIRST", "ACTIVITY", "LAST", "ACTIVITY"]
    assert [line.split()[:2] for line in lines[1:4]] == [["bob", "5"], ["ada", "5"], ["old", "1"]]
    assert lines[-1] == "3 sessions"


async def test_ls_json_filters_by_age(cli: list[str], tmp_path: Path) -> None:
    """Prints JSON with ``--json``, and ``--older-than`` keeps only idle sessions."""
    db = await sample(tmp_path / "s.db")
    result = run(cli, "ls", str(db), "--json", "--older-than", "30d")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert listed["total"] == 1
    assert [s["session_id"] for s in listed["sessions"]] == ["old"]
    assert listed["sessions"][0]["items"] == 1


async def test_show_renders_the_conversation(cli: list[str], tmp_path: Path) -> None:
    """Shows roles, tool calls and outputs in order, and a corrupt row as undecodable."""
    db = await sample(tmp_path / "s.db")
    ada, bob = run_many(cli, [["show", str(db), "ada"], ["show", str(db), "bob"]])
    assert ada.returncode == bob.returncode == 0, ada.stderr + bob.stderr
    kinds = [line.split()[3] for line in ada.stdout.splitlines() if line.startswith("#")]
    assert kinds == ["user", "user", "tool", "tool", "assistant"]
    assert 'get_weather({"city":"Paris"})' in ada.stdout
    assert "Sunny and 21 °C in Paris." in ada.stdout
    assert "Sunny, 21 °C." in ada.stdout
    assert "undecodable" in bob.stdout.splitlines()[-1]


async def test_show_limit_and_json(cli: list[str], tmp_path: Path) -> None:
    """``--limit N`` keeps the newest N items, and ``--json`` gives them decoded."""
    db = await sample(tmp_path / "s.db")
    shown, as_json = run_many(
        cli, [["show", str(db), "ada", "--limit", "2"], ["show", str(db), "ada", "--json"]]
    )
    assert shown.returncode == as_json.returncode == 0, shown.stderr + as_json.stderr
    assert "(the newest 2 of 5 items)" in shown.stdout
    assert sum(line.startswith("#") for line in shown.stdout.splitlines()) == 2
    document = json.loads(as_json.stdout)
    assert [entry["item"] for entry in document["items"]][1:] == TURN
    assert document["session"]["items"] == 5


async def test_export_import_export_is_byte_identical(cli: list[str], tmp_path: Path) -> None:
    """Exports, imports into a new file, and exports again to the same bytes (stdout too)."""
    db = await sample(tmp_path / "s.db")
    first, second, copy = tmp_path / "1.jsonl", tmp_path / "2.jsonl", tmp_path / "copy.db"
    exported, to_stdout = run_many(
        cli, [["export", str(db), "-o", str(first)], ["export", str(db)]]
    )
    assert exported.returncode == to_stdout.returncode == 0, exported.stderr + to_stdout.stderr
    assert "exported 3 sessions (11 items)" in exported.stdout
    imported = run(cli, "import", str(copy), str(first))
    assert imported.returncode == 0, imported.stderr
    again = run(cli, "export", str(copy), "-o", str(second))
    assert again.returncode == 0, again.stderr
    assert second.read_bytes() == first.read_bytes()
    assert to_stdout.stdout.encode() == first.read_bytes()


async def test_import_refuses_existing_sessions_unless_told(cli: list[str], tmp_path: Path) -> None:
    """Refuses to import over existing sessions (exit 1); ``--skip-existing`` keeps them."""
    db = await sample(tmp_path / "s.db")
    out = tmp_path / "e.jsonl"
    assert run(cli, "export", str(db), "ada", "-o", str(out)).returncode == 0
    refused, skipped = run_many(
        cli, [["import", str(db), str(out)], ["import", str(db), str(out), "--skip-existing"]]
    )
    assert refused.returncode == 1
    assert "already exists" in refused.stderr
    assert "--replace" in refused.stderr
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped 1 existing" in skipped.stdout


async def test_stats_reports_size_counts_and_growth(cli: list[str], tmp_path: Path) -> None:
    """Reports the file size, sessions, items, the largest sessions and items per day."""
    db = await sample(tmp_path / "s.db")
    result = run(cli, "stats", str(db), "--days", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^sessions\s+3$", out, re.MULTILINE)
    assert re.search(r"^items\s+11 \(", out, re.MULTILINE)
    assert re.search(r"^size on disk\s+\d", out, re.MULTILINE)
    assert "largest sessions" in out
    assert "items written per day (last 3 days" in out


async def test_purge_dry_run_then_purge(cli: list[str], tmp_path: Path) -> None:
    """``--dry-run`` lists the idle session and keeps it; without it, only that one goes."""
    db = await sample(tmp_path / "s.db")
    dry = run(cli, "purge", str(db), "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[1].split()[0] == "old"
    assert "dry run: would purge 1 session" in dry.stdout
    assert count_rows_sqlite(db, "old") == 1
    purged = run(cli, "purge", str(db), "--older-than", "30d")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1 session (1 item," in purged.stdout
    assert count_rows_sqlite(db, "old") == 0
    assert count_rows_sqlite(db, "ada") == 5


def test_chat_undoes_the_last_exchange(cli: list[str], tmp_path: Path) -> None:
    """Chats through stdin; /undo removes the last exchange and /history shows the rest."""
    db = tmp_path / "chat.db"
    script = "Hi! My name is Ada.\nWhat is the weather in Paris?\n/undo\n/history\n/quit\n"
    result = run(cli, "chat", str(db), "--session", "t", stdin=script)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "agent> Nice to meet you, Ada" in out
    assert "undid the last exchange (4 items):" in out
    assert "  tool call: get_weather(" in out
    history = out.split("history (2 items):")[1]
    assert "user: Hi! My name is Ada." in history
    assert "Paris" not in history
    assert out.rstrip().endswith("bye")
    assert count_rows_sqlite(db, "t") == 2


async def test_bad_input_is_one_line_and_a_non_zero_exit(cli: list[str], tmp_path: Path) -> None:
    """Reports each bad input on one line of stderr, without a traceback, and exits 1 or 2."""
    db = await sample(tmp_path / "s.db")
    cases = [
        (["ls", str(tmp_path / "missing.db")], 1, "no such database file"),
        (["show", str(db), "ghost"], 1, "no session 'ghost'"),
        (["ls", "nosuchdb://user@host/db"], 1, "invalid database URL"),
        (["ls", "postgresql://postgres@127.0.0.1:1/test"], 1, "cannot reach the database"),
        (["import", str(db), str(tmp_path / "missing.jsonl")], 1, "no such export file"),
        (["purge", str(db), "--older-than", "soon"], 2, "invalid age 'soon'"),
        (["ls", str(db), "--sessions-table", "x;y"], 2, "not a valid identifier"),
    ]
    results = run_many(cli, [args for args, _, _ in cases])
    for (args, status, message), result in zip(cases, results, strict=True):
        assert result.returncode == status, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert result.stdout == "", args
        if status == 1:
            assert result.stderr.count("\n") == 1, (args, result.stderr)
    assert not (tmp_path / "missing.db").exists()


def fill_sqlite(path: Path, sessions: dict[str, int]) -> int:
    """Write sessions of n rows each straight into an SDK-layout file; return the row count."""
    agent_sessions.SQLiteSession("init", path).close()  # creates the tables
    padding = "about a hundred characters of chat text, as a typical user message might be"
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO agent_sessions (session_id) VALUES (?)", [(s,) for s in sessions]
        )
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
            (
                (sid, f'{{"role":"user","content":"{n} of {sid}: {padding}"}}')
                for sid, count in sessions.items()
                for n in range(count)
            ),
        )
    conn.close()
    return sum(sessions.values())


@pytest.mark.postgres
@pytest.mark.slow
async def test_migrates_100k_items_sqlite_to_postgres_and_back(
    cli: list[str], tmp_path: Path
) -> None:
    """Moves 100,000 items SQLite -> PostgreSQL -> SQLite with every row intact."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    source, back = tmp_path / "source.db", tmp_path / "back.db"
    sessions = {f"user-{n:03}": 1000 for n in range(50)} | {"long": 50_000}
    assert fill_sqlite(source, sessions) == 100_000
    pg_sessions, pg_messages = unique_tables()
    to_pg = ["--dst-sessions-table", pg_sessions, "--dst-messages-table", pg_messages]
    from_pg = ["--sessions-table", pg_sessions, "--messages-table", pg_messages]
    defaults = ["--dst-sessions-table", "agent_sessions", "--dst-messages-table", "agent_messages"]
    engine = create_async_engine(POSTGRES_URL)
    try:
        there = run(cli, "migrate", str(source), POSTGRES_URL, *to_pg)
        assert there.returncode == 0, there.stderr
        assert "51 sessions, 100,000 items copied" in there.stdout
        again = run(cli, "migrate", str(source), POSTGRES_URL, *to_pg)
        assert again.returncode == 0, again.stderr
        assert "copied 0, already identical 51" in again.stdout
        home = run(cli, "migrate", POSTGRES_URL, str(back), *from_pg, *defaults)
        assert home.returncode == 0, home.stderr
        assert "100,000 items copied" in home.stdout
    finally:
        await drop_tables(engine, pg_sessions, pg_messages)
        await engine.dispose()
    assert file_digest(back) == file_digest(source)
    # The measured times, for the record: `pytest -s` shows them.
    print(there.stdout.splitlines()[0], home.stdout.splitlines()[0], sep="\n")  # noqa: T201


@pytest.mark.slow
def test_an_interrupted_migrate_resumes(cli: list[str], tmp_path: Path) -> None:
    """A migrate killed midway is run again: finished sessions are skipped, the rest copied."""
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    fill_sqlite(source, {f"s{n:03}": 200 for n in range(300)})
    command = [*cli, "migrate", str(source), str(target), "--batch-size", "50", "--quiet"]
    process = subprocess.Popen(
        command, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        done_before_kill = wait_for_sessions(target, process)
    finally:
        process.kill()
        process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, "the migrate finished before it could be killed"
    resumed = run(cli, "migrate", str(source), str(target))
    assert resumed.returncode == 0, resumed.stderr
    identical = int(re.search(r"already identical (\d+)", resumed.stdout)[1])  # type: ignore[index]
    copied = int(re.search(r"copied (\d+),", resumed.stdout)[1])  # type: ignore[index]
    assert identical >= done_before_kill
    assert copied >= 1
    assert identical + copied == 300
    assert file_digest(target) == file_digest(source)


def wait_for_sessions(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """Poll a migrate's destination until a few sessions are committed; return how many."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                (count,) = conn.execute("SELECT count(*) FROM agent_sessions").fetchone()
            finally:
                conn.close()
        except sqlite3.OperationalError:  # not created yet
            count = 0
        if count >= 3:
            return int(count)
        time.sleep(0.01)
    raise AssertionError("the migrate committed no sessions in time")


async def test_counts_of_one_are_singular(cli: list[str], tmp_path: Path) -> None:
    """Reports of one session and one item say "1 session" and "1 item", never "1 sessions"."""
    db = tmp_path / "one.db"
    async with agent_sessions.SQLiteSession("solo", db) as session:
        await session.add_items([{"role": "user", "content": "hello"}])
    exported, migrated = run_many(
        cli,
        [
            ["export", str(db), "-o", str(tmp_path / "one.jsonl")],
            ["migrate", str(db), str(tmp_path / "copy.db")],
        ],
    )
    assert exported.returncode == migrated.returncode == 0, exported.stderr + migrated.stderr
    assert "exported 1 session (1 item) to" in exported.stdout
    assert ": 1 session, 1 item copied" in migrated.stdout
    assert "1 sessions" not in exported.stdout + migrated.stdout


def test_a_file_that_is_not_sqlite_says_so(cli: list[str], tmp_path: Path) -> None:
    """``ls`` on a text file says the file is not a SQLite database, naming it."""
    notes = tmp_path / "README.md"
    notes.write_text("# not a database\n" * 200)
    listed = run(cli, "ls", str(notes))
    assert listed.returncode == 1
    assert f"{notes} is not a SQLite database" in listed.stderr

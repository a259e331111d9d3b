"""Every example runs offline, as a user would run it, and prints what it promises."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import require_server
from tests.sql_servers import POSTGRES_URL

pytestmark = pytest.mark.slow  # each example runs in a subprocess

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str, stdin: str = "") -> str:
    """Run ``examples/<name>`` without an API key, feeding it ``stdin``; return what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_branching_transcript(out: str) -> None:
    """The branching example's key lines, whatever backend it ran on."""
    assert "You told me you like trains over planes." in out
    assert "You told me you like planes, actually." in out
    assert "branch 're-ask', made from turn 2" in out
    assert "   main     6 items, 3 user turns, 298 tokens" in out
    assert " * re-ask   6 items, 3 user turns, 267 tokens" in out
    assert "the last answer is still: 'You told me you like trains over planes.'" in out


def test_branching_re_asks_turn_two_and_keeps_main(tmp_path: Path) -> None:
    """The branching example answers differently on the branch and leaves main as it was."""
    out = run_example("branching.py", str(tmp_path / "b.db"))
    assert "backend: AdvancedSQLiteSession on b.db" in out
    assert_branching_transcript(out)


def test_branching_runs_on_a_temporary_file_by_default() -> None:
    """Without arguments the branching example runs on a temporary SQLite file."""
    out = run_example("branching.py")
    assert "backend: AdvancedSQLiteSession on branching.db" in out
    assert_branching_transcript(out)


@pytest.mark.postgres
def test_branching_on_postgresql() -> None:
    """With --url the branching example runs on PostgreSQL and removes its session after."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    out = run_example("branching.py", "--url", POSTGRES_URL)
    assert f"backend: AdvancedSQLAlchemySession on {POSTGRES_URL}" in out
    assert_branching_transcript(out)
    removed = re.search(r"removed session '([^']+)' and its branches from the database", out)
    assert removed is not None, out
    tables = ("agent_messages", "agent_sessions", "agent_messages_structure")
    tables += ("agent_messages_branches", "agent_messages_turn_usage")
    assert asyncio.run(count_postgres_rows([removed.group(1)], tables)) == (0,) * len(tables)


def test_encrypted_ttl_hides_text_expires_rotates_and_shreds(tmp_path: Path) -> None:
    """The encryption example keeps names out of the file, expires, rotates and shreds."""
    out = run_example("encrypted_ttl.py", str(tmp_path))
    assert "'Ada' appears in the file: False" in out
    assert "I don't know your name yet." in out
    assert "purged 2 expired rows from the file" in out
    assert "with the new key alone: 4 items readable" in out
    assert "items readable from the backup: 0" in out
    assert (tmp_path / "keys.db").exists()


def run_chat(tmp_path: Path, lines: list[str], *args: str) -> str:
    """Pipe ``lines`` into the chat_undo example on a fresh file and return its transcript."""
    return run_example(
        "chat_undo.py", str(tmp_path / "chat.db"), *args, stdin="".join(f"{x}\n" for x in lines)
    )


def section(out: str, start: str, end: str | None = None) -> str:
    """The part of ``out`` from the first ``start`` up to the next ``end`` (or the end)."""
    assert start in out, out
    rest = out[out.index(start) :]
    return rest if end is None or end not in rest else rest[: rest.index(end)]


def test_quickstart_recalls_the_name_in_a_new_process(tmp_path: Path) -> None:
    """The quickstart's second process reopens the file and still knows the name."""
    out = run_example("quickstart.py", str(tmp_path / "q.db"))
    first = section(out, "part 1", "part 2")
    second = section(out, "part 2")
    assert "agent > Nice to meet you, Ada! I'll remember that." in first
    assert "agent > Your name is Ada." in first
    pids = re.findall(r"part \d, process (\d+)", out)
    assert len(pids) == 2
    assert pids[0] != pids[1]
    assert "reopened q.db (4 items)" in second
    assert "agent > Your name is Ada." in second
    assert "agent > You have sent 4 messages so far, counting this one." in second


def test_quickstart_runs_on_a_temporary_file_by_default() -> None:
    """Without a path, both processes share one temporary file that outlives the child."""
    out = run_example("quickstart.py")
    assert "reopened quickstart.db (4 items)" in out
    assert "agent > Your name is Ada." in section(out, "part 2")


def assert_handoff_transcript(out: str) -> None:
    """The handoff example's key lines, whatever backend it ran on."""
    first = section(out, "part 1", "part 2")
    assert "triage      > Nice to meet you, Ada! I'll remember that." in first
    handoff = section(first, "you         > I was charged twice")
    assert handoff.splitlines()[1:3] == [
        "    (handoff: triage -> billing)",
        "  billing     > (offline) You said: I was charged twice, please pass me to billing. "
        "[You are the billing desk]",
    ]
    assert "billing     > Your name is Ada." in first
    assert '(billing called lookup_invoice({"number": 1042}))' in first
    assert "billing     > The lookup_invoice tool returned: invoice 1042: EUR 42.00" in first
    second = section(out, "part 2")
    assert "support     > Nice to meet you, Grace! I'll remember that." in second
    assert "billing     > Your name is Grace." in second
    assert "billing     > The lookup_invoice tool returned: invoice 1043: EUR 19.90, paid" in second
    assert "support     > You have sent 4 messages so far, counting this one." in second
    assert "the support desk sees 10 items, the billing desk sees 10" in second
    records = section(first, "who said what (get_records):").splitlines()[1:7]
    assert [line.split()[3:] for line in records] == [
        ["(you)", "user"],
        ["triage", "assistant"],
        ["(you)", "user"],
        ["triage", "function_call"],
        ["triage", "function_call_output"],
        ["billing", "assistant"],
    ]
    retried = section(out, "part 3")
    assert "after attempt 1: 4 items, 1 user message stored" in retried
    assert "after attempt 2: 7 items, 1 user message stored" in retried


def test_shared_session_handoff_to_billing_and_shared_history(tmp_path: Path) -> None:
    """Triage hands off to billing in one run, and agents on one session see all of it."""
    out = run_example("shared_session_handoff.py", str(tmp_path / "h.db"))
    assert "backend: SQLiteSession objects from one SQLiteStore on h.db" in out
    assert_handoff_transcript(out)


@pytest.mark.postgres
def test_shared_session_handoff_on_postgresql() -> None:
    """With --url the handoff example runs on PostgreSQL and removes its sessions after."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    out = run_example("shared_session_handoff.py", "--url", POSTGRES_URL)
    assert f"backend: SQLAlchemySession on {POSTGRES_URL}" in out
    assert_handoff_transcript(out)
    removed = re.search(r"removed sessions '([^']+)', '([^']+)', '([^']+)' from the database", out)
    assert removed is not None, out
    assert asyncio.run(count_postgres_rows(list(removed.groups()))) == (0, 0)


async def count_postgres_rows(
    session_ids: list[str], tables: tuple[str, ...] = ("agent_messages", "agent_sessions")
) -> tuple[int, ...]:
    """Rows left for ``session_ids`` in each of the default PostgreSQL ``tables``."""
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.connect() as conn:
            counts = []
            for table in tables:
                query = text(f"SELECT count(*) FROM {table} WHERE session_id = ANY(:ids)")
                counts.append(int((await conn.execute(query, {"ids": session_ids})).scalar_one()))
    finally:
        await engine.dispose()
    return tuple(counts)


def test_chat_undo_removes_the_last_exchange_and_keeps_the_first(tmp_path: Path) -> None:
    """/undo takes back the whole second exchange; /history shows only the first one."""
    out = run_chat(
        tmp_path,
        ["Hi! My name is Ada.", "What is my name?", "/undo", "/history", "/quit", "ignored"],
    )
    assert "agent> Your name is Ada." in out
    assert (
        "you> /undo\n"
        "undid the last exchange (2 items):\n"
        "  you: What is my name?\n"
        "  agent: Your name is Ada.\n"
    ) in out
    assert section(out, "you> /history", "you> /quit").splitlines()[1:] == [
        "history (2 items):",
        "   1. you: Hi! My name is Ada.",
        "      agent: Nice to meet you, Ada! I'll remember that.",
    ]
    assert out.endswith("you> /quit\nbye\n")


def test_chat_undo_takes_back_tool_calls_and_refuses_branches(tmp_path: Path) -> None:
    """One /undo removes a turn's tool call and output too; the plain backend has no branches."""
    out = run_chat(
        tmp_path,
        ["What is the weather in Paris?", "/undo", "/undo", "/branch 1", "/branches"],
    )
    assert "agent> The get_weather tool returned: Paris: sunny, 21 C" in out
    assert (
        "undid the last exchange (4 items):\n"
        "  you: What is the weather in Paris?\n"
        '  tool call: get_weather({"city": "Paris"})\n'
        "  tool output: Paris: sunny, 21 C\n"
        "  agent: The get_weather tool returned: Paris: sunny, 21 C\n"
        "you> /undo\n"
        "nothing to undo\n"
    ) in out
    refusal = "this backend (SQLiteSession) does not support branches"
    assert out.count(refusal) == 2
    assert out.endswith("bye\n")  # the end of input ends the chat like /quit


def test_chat_undo_advanced_branches_from_turn_one(tmp_path: Path) -> None:
    """With --advanced, /branch 1 starts an empty branch and main keeps both turns."""
    out = run_chat(
        tmp_path,
        [
            "Hi! My name is Ada.",
            "What is my name?",
            "/branch 1",
            "What is my name?",
            "/branches",
            "/switch main",
            "/history",
        ],
        "--advanced",
    )
    assert "(AdvancedSQLiteSession, 0 items)" in out
    branch = re.search(r"now on branch '([^']+)': it keeps the 0 items before user turn 1", out)
    assert branch is not None, out
    assert "agent> I don't know your name yet." in section(out, "you> /branch 1")
    assert section(out, "you> /branches", "you> /switch").splitlines()[1:] == [
        "    main (user turns: 2, items: 4)",
        f"  * {branch.group(1)} (user turns: 1, items: 2)",
    ]
    history = section(out, "you> /history")
    assert "history on branch 'main' (4 items):" in history
    assert "   2. you: What is my name?" in history
    assert "agent: Your name is Ada." in history


def test_chat_undo_on_a_branch_leaves_main_alone(tmp_path: Path) -> None:
    """/undo on a branch removes only what that branch shows; main keeps every turn."""
    out = run_chat(
        tmp_path,
        [
            "Hi! My name is Ada.",
            "What is my name?",
            "/branch 2 retry",
            "How many messages have I sent?",
            "/undo",
            "/undo",
            "/switch main",
            "/history",
        ],
        "--advanced",
    )
    assert "now on branch 'retry': it keeps the 2 items before user turn 2" in out
    assert "undid the last exchange (2 items):\n  you: How many messages have I sent?" in out
    # The branch shows only turn 1, so the second undo takes that, never main's turn 2.
    on_branch = section(out, "you> /branch 2 retry", "you> /switch")
    assert "undid the last exchange (2 items):\n  you: Hi! My name is Ada." in on_branch
    assert "you: What is my name?" not in on_branch
    history = section(out, "you> /history")
    assert "history on branch 'main' (4 items):" in history
    assert "   2. you: What is my name?" in history


def test_chat_undo_on_main_keeps_what_a_branch_inherits(tmp_path: Path) -> None:
    """/undo on main removes a turn a branch was made after; the branch keeps it."""
    out = run_chat(
        tmp_path,
        [
            "Hi! My name is Ada.",
            "What is my name?",
            "/branch 2 retry",
            "/switch main",
            "/undo",
            "/undo",
            "/switch retry",
            "/history",
        ],
        "--advanced",
    )
    assert "undid the last exchange (2 items):\n  you: What is my name?" in out
    assert "undid the last exchange (2 items):\n  you: Hi! My name is Ada." in out
    history = section(out, "you> /switch retry")
    assert "history on branch 'retry' (2 items):" in history
    assert "   1. you: Hi! My name is Ada." in history


def test_preferences_memory_carries_a_note_to_the_next_session_only_for_its_user(
    tmp_path: Path,
) -> None:
    """A note the agent saves in one session is recalled in the user's next one, not by others."""
    out = run_example("preferences_memory.py", str(tmp_path / "m.db"))
    note = "detailed explanations with code examples suit me best."
    first = section(out, "ada, conversation 1", "ada, conversation 2")
    assert "memory ('users', 'ada'): nothing saved yet" in first
    assert "agent  > The remember tool returned: Saved note note-" in first
    assert "memory ('users', 'ada'): 2 note(s) stored" in first  # the name, then the note
    second = section(out, "ada, conversation 2", "bob, conversation 1")
    assert "session 'user:ada:chat:2'" in second
    assert "memory ('users', 'ada'): 2 note(s) loaded" in second
    recall = second.split("you    > What do you recall about me?\n  agent  > ")[1]
    assert recall.startswith("The recall tool returned:")
    assert note in recall.split("you    >")[0]
    assert "agent  > I don't know your name yet." in second  # only the note carried over
    other = section(out, "bob, conversation 1")
    assert "memory ('users', 'bob'): nothing saved yet" in other
    assert "No notes about the user have been saved yet." in other
    assert "detailed" not in other


def _support(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start the customer-support example on ``tmp_path``'s file, its tools logged there."""
    environ = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    environ.update(SUPPORT_TOOL_LOG=str(tmp_path / "tools.log"), **env)
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "customer_support.py"),
            str(tmp_path / "s.db"),
            *args,
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _support_done(tmp_path: Path, *args: str) -> str:
    child = _support(tmp_path, *args)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return out


def _kill(child: subprocess.Popen[str], ready: Any) -> None:
    """SIGKILL ``child`` once ``ready()`` holds."""
    deadline = time.monotonic() + 120
    while not ready():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.kill()
    child.communicate(timeout=30)


def test_customer_support_demo_isolates_compacts_prunes_and_forks(tmp_path: Path) -> None:
    """Three customers stay apart, a long chat is compacted, an old one pruned, one forked."""
    out = _support_done(tmp_path, "demo")
    assert "each remembers only its own customer: True" in out
    assert "compacted: 24 items -> 9 (first: system)" in out
    assert "pruned: 2 turns, 8 items removed" in out
    assert "turn 2: 2 items at" in out
    assert "['My name is Ada.', 'My name is Ada Lovelace.']" in out


def test_customer_support_refund_waits_through_a_kill_and_is_approved(tmp_path: Path) -> None:
    """A refund paused for approval survives SIGKILL; a new process approves it, once."""
    child = _support(tmp_path, "refund", "zoe", "--hang")
    assert child.stdout is not None
    assert child.stdout.readline().startswith("waiting for approval: refund")
    _kill(child, lambda: True)
    out = _support_done(tmp_path, "approve", "zoe")
    assert "approved: The refund tool returned: refund of purchase 4242 sent" in out
    assert "history: 4 items: user, function_call, function_call_output, assistant" in out
    assert "refund=1" in out


def test_customer_support_crash_in_a_tool_resumes_without_redoing_lookup(tmp_path: Path) -> None:
    """Killed inside escalate, the resumed turn finishes and the look-up ran only once."""
    log = tmp_path / "tools.log"
    child = _support(tmp_path, "crash", "yan", SUPPORT_SLOW_ESCALATION="1")
    _kill(child, lambda: log.exists() and "escalate:start" in log.read_text())
    out = _support_done(tmp_path, "resume", "yan")
    assert "resumed: The escalate tool returned: case C-7 opened" in out
    assert "history: 6 items" in out
    assert "tool runs: lookup=1 refund=0 escalate=1" in out


def test_customer_support_without_arguments_tours_everything() -> None:
    """With no arguments it runs the demo, then a kill-and-approve and a kill-and-resume."""
    out = run_example("customer_support.py")
    assert "each remembers only its own customer: True" in out
    approved = section(out, "== a refund waits", "== a process is killed")
    assert "| approved: The refund tool returned: refund of purchase 4242 sent" in approved
    resumed = section(out, "== a process is killed")
    assert "| resumed: The escalate tool returned: case C-7 opened" in resumed
    assert "| tool runs: lookup=1 refund=1 escalate=1" in resumed

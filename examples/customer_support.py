"""A customer-support agent whose conversations survive restarts, crashes and long histories.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set. With no arguments it
tours everything in a fresh temporary folder, killing and restarting its own processes:

    python examples/customer_support.py

Every command works on one SQLite file of ``AdvancedSQLiteSession`` conversations, one per customer:

    python examples/customer_support.py DB demo              # customers at once, compaction,
                                                             # pruning, turns and a fork
    python examples/customer_support.py DB refund CUSTOMER   # pauses for a human's approval
    python examples/customer_support.py DB approve CUSTOMER  # a new process approves, finishes
    python examples/customer_support.py DB crash CUSTOMER    # killed inside the escalate tool...
    python examples/customer_support.py DB resume CUSTOMER   # ...resumed without redoing lookup

``refund --hang`` and ``crash`` (with SUPPORT_SLOW_ESCALATION=1) keep the process alive so it can
be killed (``kill -9``); the next command picks the conversation up from the database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents import Agent, RunConfig, Runner, function_tool
from agents.items import TResponseInputItem

from agent_sessions import AdvancedSQLiteSession, CompactingSession
from agent_sessions.durable import run_durably
from agent_sessions.offline import OfflineModel

ONLINE = bool(os.environ.get("OPENAI_API_KEY"))
CONFIG = RunConfig(tracing_disabled=not ONLINE)
LOG = Path(os.environ.get("SUPPORT_TOOL_LOG", "support-tools.log"))


def _number(text: str) -> str:
    found = re.search(r"\d+", text)
    return found.group() if found else text


def _ran(tool: str) -> None:
    with LOG.open("a", encoding="utf-8") as file:
        file.write(tool + "\n")


def runs(tool: str) -> int:
    """How many times ``tool`` ran, in every process of this demo."""
    return LOG.read_text(encoding="utf-8").splitlines().count(tool) if LOG.exists() else 0


@function_tool
def lookup(number: str) -> str:
    """Find the shipping status of a purchase by its number."""
    _ran("lookup")
    return f"purchase {_number(number)} left the warehouse yesterday"


@function_tool(needs_approval=True)
def refund(number: str) -> str:
    """Give the money back for a purchase; a supervisor approves it first."""
    _ran("refund")
    return f"refund of purchase {_number(number)} sent"


@function_tool
def escalate(reason: str) -> str:
    """Hand the case to a supervisor, who answers within a day."""
    _ran("escalate:start")
    if os.environ.get("SUPPORT_SLOW_ESCALATION"):
        time.sleep(120)  # the demo kills the process here
    _ran("escalate")
    return "case C-7 opened"


def support_agent() -> Agent[Any]:
    """The support agent: look-ups, refunds that need approval, escalation."""
    model: Any = "gpt-4.1-mini" if ONLINE else OfflineModel(chain_tools=True)
    return Agent(
        name="Support",
        instructions="You are a concise customer-support agent. Use the tools.",
        model=model,
        tools=[lookup, refund, escalate],
    )


def open_session(db: str, customer: str) -> AdvancedSQLiteSession:
    """One customer's conversation: its own session in the shared file."""
    return AdvancedSQLiteSession(session_id=customer, db_path=db, create_tables=True)


async def ask(session: Any, text: str, who: str = "you") -> str:
    """One turn through the Runner; prints and returns the answer."""
    result = await Runner.run(support_agent(), text, session=session, run_config=CONFIG)
    print(f"  {who:>5} > {text}\n  agent > {result.final_output}")
    return str(result.final_output)


async def summarize(items: list[TResponseInputItem]) -> list[TResponseInputItem]:
    """A summariser without a model: one system note naming what the turns were about."""
    users = [str(i.get("content")) for i in items if i.get("role") == "user"]
    note = f"Summary of {len(users)} earlier requests: " + "; ".join(u[:30] for u in users)
    return [{"role": "system", "content": note}]


async def demo(db: str) -> None:
    """Customers at once, compaction, pruning, and time travel on one file."""
    print("== three customers at once (one session each)")
    names = ["Ada", "Bob", "Cy"]
    sessions = [open_session(db, n.lower()) for n in names]
    await asyncio.gather(
        *(ask(s, f"My name is {n}.", n) for s, n in zip(sessions, names, strict=True))
    )
    answers = await asyncio.gather(*(ask(s, "What is my name?", "?") for s in sessions))
    isolated = answers == [f"Your name is {n}." for n in names]
    print(f"  each remembers only its own customer: {isolated}")

    print("== a long conversation, compacted")
    long = open_session(db, "dana")
    compacting = CompactingSession(long, summarizer=summarize, keep_last_turns=2)
    for number in range(1, 7):
        await ask(compacting, f"Please lookup {1000 + number}")
    before = len(await long.get_items())
    await compacting.compact(force=True)
    after = await long.get_items()
    print(f"  compacted: {before} items -> {len(after)} (first: {after[0].get('role')})")

    print("== pruning an old conversation in place")
    old = open_session(db, "erin")
    for number in range(1, 5):
        await ask(old, f"Please lookup {2000 + number}")
    report = await old.prune(keep_last_turns=2)
    print(f"  pruned: {report.removed_turns} turns, {report.removed_items} items removed")

    print("== turns with metadata, and a fork before turn 2")
    ada = sessions[0]
    for entry in await ada.history():
        when, preview = entry["created_at"], entry["preview"]
        print(f"  turn {entry['turn']}: {entry['items']} items at {when}: {preview}")
    branch = await ada.fork(turn=2)
    await ask(ada, "My name is Ada Lovelace.", "Ada")
    turns = [entry["preview"] for entry in await ada.history()]
    print(f"  on branch {branch!r}: {turns}")
    for session in [*sessions, long, old]:
        await session.aclose()


async def command(db: str, what: str, customer: str, hang: bool) -> None:
    """The restart-safe commands: refund/approve and crash/resume."""
    session = open_session(db, customer)
    agent = support_agent()
    if what == "refund":
        result = await run_durably(agent, "Please refund 4242", session=session, run_config=CONFIG)
        for item in result.interruptions:
            print(f"waiting for approval: {item.tool_name} {item.raw_item.arguments}")  # type: ignore[union-attr]
        sys.stdout.flush()
        if hang:
            await asyncio.sleep(600)
    elif what == "approve":
        state = await session.load_pending_run(agent)
        if state is None:
            raise SystemExit(f"{customer} has no run waiting for approval")
        for item in state.get_interruptions():
            state.approve(item)
        result = await run_durably(agent, state, session=session, run_config=CONFIG)
        print(f"approved: {result.final_output}")
    elif what == "crash":
        await run_durably(
            agent, "Please lookup 77, then escalate", session=session, run_config=CONFIG
        )
    elif what == "resume":
        result = await run_durably(agent, None, session=session, run_config=CONFIG)
        print(f"resumed: {result.final_output}")
    items = await session.get_items()
    kinds = [str(i.get("role") or i.get("type")) for i in items]
    print(f"history: {len(items)} items: {', '.join(kinds)}")
    print(f"tool runs: lookup={runs('lookup')} refund={runs('refund')} escalate={runs('escalate')}")
    await session.aclose()


def _child(db: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """This script again, in a new process, on the same file."""
    return subprocess.Popen(  # noqa: S603 - this very script, with fixed arguments
        [sys.executable, __file__, db, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> None:
    out, _ = child.communicate(timeout=300)
    print("".join(f"  | {line}\n" for line in out.splitlines()), end="")
    if child.returncode:
        raise SystemExit(f"the step failed with exit code {child.returncode}")


def _kill_when(child: subprocess.Popen[str], ready: Any) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the process to kill ended or hung first")
        time.sleep(0.05)
    child.kill()  # SIGKILL: no cleanup, as in a crash or an OOM kill
    child.wait()


def tour() -> None:
    """Everything, in a fresh temporary folder: the demo, then two kills and restarts."""
    global LOG  # noqa: PLW0603 - the tour logs its tools in its own folder, children too
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "support.db")
        os.environ["SUPPORT_TOOL_LOG"] = log = str(Path(folder) / "tools.log")
        LOG = Path(log)
        asyncio.run(demo(db))
        LOG.unlink(missing_ok=True)  # count only the tool runs of the restarts below
        print("== a refund waits for approval; its process is killed while it waits")
        waiting = _child(db, "refund", "zoe", "--hang")
        assert waiting.stdout is not None
        print(f"  | {waiting.stdout.readline().rstrip()}")
        _kill_when(waiting, lambda: True)
        print("  killed with SIGKILL; a new process loads the pending run and approves it:")
        _finish(_child(db, "approve", "zoe"))
        print("== a process is killed inside the escalate tool, after the lookup ran")
        crashing = _child(db, "crash", "yan", SUPPORT_SLOW_ESCALATION="1")
        _kill_when(
            crashing,
            lambda: "escalate:start" in Path(log).read_text() if Path(log).exists() else False,
        )
        print("  killed with SIGKILL; a new process resumes the turn (lookup is not run again):")
        _finish(_child(db, "resume", "yan"))


def main() -> None:
    """Parse the command line and run one command (the tour without arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", nargs="?", help="the SQLite file (omit both for the tour)")
    parser.add_argument(
        "command", nargs="?", choices=["demo", "refund", "approve", "crash", "resume"]
    )
    parser.add_argument("customer", nargs="?", default="zoe")
    parser.add_argument("--hang", action="store_true", help="stay alive after pausing")
    args = parser.parse_args()
    if args.db is None:
        tour()
    elif args.command is None:
        parser.error("give a command after the database file (or no arguments for the tour)")
    elif args.command == "demo":
        asyncio.run(demo(args.db))
    else:
        asyncio.run(command(args.db, args.command, args.customer, args.hang))


if __name__ == "__main__":
    main()

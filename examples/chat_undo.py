"""A terminal chat with undo: ``/undo`` takes back the last exchange in one transaction.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/chat_undo.py [path/to/file.db] [--advanced]
    printf 'Hi! My name is Ada.\\n/undo\\n/history\\n' | python examples/chat_undo.py

Type a message to talk to the agent, or a command (``/help`` lists them). Give a file to keep the
chat between runs. ``--advanced`` uses ``AdvancedSQLiteSession``, which adds branches: ``/branch N``
starts a new branch just before user turn N, as if the conversation had gone another way there.
Input may be piped: each line read is echoed after the prompt, so the output reads as a transcript.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from agents import Agent, RunConfig, Runner, TResponseInputItem, function_tool

from agent_sessions import AdvancedSQLiteSession, SQLiteSession
from agent_sessions.offline import resolve_model

SESSION_ID = "chat"

ChatSession = SQLiteSession | AdvancedSQLiteSession
Command = Callable[[ChatSession, str], Awaitable[list[str]]]

HELP = [
    "commands:",
    "  /undo            take back the last exchange (your message and everything after it)",
    "  /history         show the conversation, user turns numbered",
    "  /clear           delete the conversation (--advanced: the current branch; main: all)",
    "  /branch N [name] start a branch just before user turn N and switch to it (--advanced)",
    "  /branches        list the branches (--advanced)",
    "  /switch NAME     switch to another branch (--advanced)",
    "  /quit            leave (so does end of input)",
]


@function_tool
def get_weather(city: str) -> str:
    """Get the weather forecast for a city.

    Args:
        city: The city, e.g. "Paris".
    """
    return f"{city}: sunny, 21 C"


def text_of(item: TResponseInputItem) -> str:
    """The text of a message item, whether its content is a string or a list of parts."""
    content = item.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def describe(item: TResponseInputItem) -> str:
    """One line for an item: who said what, or which tool was called and what it returned."""
    kind = item.get("type", "message")
    if kind == "function_call":
        return f"tool call: {item.get('name')}({item.get('arguments')})"
    if kind == "function_call_output":
        return f"tool output: {item.get('output')}"
    role = item.get("role")
    if kind == "message" and role is not None:
        return f"{'you' if role == 'user' else 'agent'}: {text_of(item)}"
    return f"({kind} item)"


async def say(session: ChatSession, agent: Agent[None], text: str) -> list[str]:
    """Send a message to the agent on the session and return its answer."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    return [f"agent> {result.final_output}"]


async def undo(session: ChatSession, _: str) -> list[str]:
    """Remove the newest user message and everything after it, atomically."""
    try:
        removed = await session.pop_turn()
    except ValueError as exc:  # on a branched session: the turn is shared with a branch
        return [f"cannot undo: {exc}"]
    if not removed:
        return ["nothing to undo"]
    return [f"undid the last exchange ({len(removed)} items):"] + [
        f"  {describe(item)}" for item in removed
    ]


async def history(session: ChatSession, _: str) -> list[str]:
    """The conversation, with user turns numbered as ``/branch`` counts them."""
    items = await session.get_items()
    where = ""
    if isinstance(session, AdvancedSQLiteSession):
        where = f" on branch {await session.current_branch()!r}"
    if not items:
        return [f"(the conversation{where} is empty)"]
    lines, turn = [f"history{where} ({len(items)} items):"], 0
    for item in items:
        if item.get("role") == "user":
            turn += 1
            lines.append(f"  {turn:>2}. {describe(item)}")
        else:
            lines.append(f"      {describe(item)}")
    return lines


async def clear(session: ChatSession, _: str) -> list[str]:
    """Delete the conversation (with branches: the current branch; on main, all of them)."""
    what = "the conversation"
    if isinstance(session, AdvancedSQLiteSession):
        current = await session.current_branch()
        what = "the conversation and its branches" if current == "main" else f"branch {current!r}"
    try:
        await session.clear_session()
    except ValueError as exc:  # other branches were made from this one
        return [f"cannot clear: {exc}"]
    return [f"cleared {what}"]


def without_branches(session: ChatSession) -> list[str]:
    """The answer to a branch command on a backend that has no branches."""
    return [
        f"this backend ({type(session).__name__}) does not support branches; "
        "run with --advanced to use AdvancedSQLiteSession"
    ]


async def branch(session: ChatSession, argument: str) -> list[str]:
    """Start a branch just before user turn N, and switch to it."""
    if not isinstance(session, AdvancedSQLiteSession):
        return without_branches(session)
    turn, _, name = argument.partition(" ")
    if not turn.isdigit():
        return ["usage: /branch N [name]  (N is a user turn number from /history)"]
    try:
        created = await session.create_branch_from_turn(int(turn), name.strip() or None)
    except ValueError as exc:
        return [f"cannot branch: {exc}"]
    kept = len(await session.get_items())
    return [f"now on branch {created!r}: it keeps the {kept} items before user turn {turn}"]


async def branches(session: ChatSession, _: str) -> list[str]:
    """List the branches, marking the current one."""
    if not isinstance(session, AdvancedSQLiteSession):
        return without_branches(session)
    return [
        f"  {'*' if info['is_current'] else ' '} {info['branch_id']} "
        f"(user turns: {info['user_turns']}, items: {info['message_count']})"
        for info in await session.list_branches()
    ]


async def switch(session: ChatSession, argument: str) -> list[str]:
    """Switch to another branch."""
    if not isinstance(session, AdvancedSQLiteSession):
        return without_branches(session)
    try:
        await session.switch_to_branch(argument.strip())
    except ValueError as exc:
        return [f"cannot switch: {exc}"]
    return [f"now on branch {argument.strip()!r}"]


async def show_help(_session: ChatSession, _: str) -> list[str]:
    """List the commands."""
    return HELP


COMMANDS: dict[str, Command] = {
    "/undo": undo,
    "/history": history,
    "/clear": clear,
    "/branch": branch,
    "/branches": branches,
    "/switch": switch,
    "/help": show_help,
}


async def handle(session: ChatSession, agent: Agent[None], line: str) -> list[str]:
    """Answer one line of input: run a command, or send a message to the agent.

    Returns:
        The lines to print.
    """
    text = line.strip()
    if not text:
        return []
    if not text.startswith("/"):
        return await say(session, agent, text)
    name, _, argument = text.partition(" ")
    command = COMMANDS.get(name)
    if command is None:
        return [f"unknown command {name}; /help lists the commands"]
    return await command(session, argument.strip())


async def read_line(interactive: bool) -> str | None:
    """Read one line from stdin without blocking the loop; None at end of input.

    A terminal gets a prompt; piped input is echoed after the prompt instead, so the output
    reads as a transcript. ``input()`` waits on a daemon thread, so Ctrl-C at the prompt ends
    the program at once (a worker thread of ``asyncio.to_thread`` would be waited for).
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not answer.done():  # not cancelled by Ctrl-C meanwhile
            answer.set_result(value)

    def read() -> None:
        try:
            value: str | None = input("you> " if interactive else "")
        except EOFError:
            value = None
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(deliver, value)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    line = await answer
    if line is None:
        if interactive:
            print()
    elif not interactive:
        print(f"you> {line}")
    return line


async def main(db_path: Path, advanced: bool) -> None:
    """Chat until /quit or the end of input."""
    agent = Agent(
        name="assistant",
        instructions="Answer briefly.",
        tools=[get_weather],
        model=resolve_model(),
    )
    session: ChatSession = (
        AdvancedSQLiteSession(session_id=SESSION_ID, db_path=db_path)
        if advanced
        else SQLiteSession(SESSION_ID, db_path)
    )
    async with session:
        count = len(await session.get_items())
        print(f"chat {SESSION_ID!r} in {db_path.name} ({type(session).__name__}, {count} items)")
        print("type a message, or /help for the commands")
        while (line := await read_line(sys.stdin.isatty())) is not None:
            if line.strip() in ("/quit", "/exit"):
                break
            for output in await handle(session, agent, line):
                print(output)
    print("bye")


def cli() -> None:
    """Parse the arguments and start the chat."""
    parser = argparse.ArgumentParser(description="A terminal chat with undo.")
    parser.add_argument("db_path", nargs="?", type=Path, help="SQLite file (default: temporary)")
    parser.add_argument(
        "--advanced", action="store_true", help="use AdvancedSQLiteSession, which has branches"
    )
    args = parser.parse_args()
    try:
        if args.db_path is not None:
            asyncio.run(main(args.db_path, args.advanced))
        else:
            with tempfile.TemporaryDirectory() as directory:
                asyncio.run(main(Path(directory) / "chat.db", args.advanced))
    except KeyboardInterrupt:  # Ctrl-C: the session was closed on the way out
        print("\nbye")


if __name__ == "__main__":
    cli()

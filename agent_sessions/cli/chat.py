"""``agent-sessions chat``: a terminal chat whose last exchange can be taken back with /undo.

The conversation lives in a session of ours (``SQLiteSession`` on a file, or
``SQLAlchemySession`` on a URL), so it survives a restart. ``/undo`` calls ``pop_turn()``, which
removes the newest user message and everything after it in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from agents import RunConfig, Runner

from ..admin.db import locate
from ..admin.render import counted
from ..admin.show import describe_item
from ..admin.text import one_line, printable
from ..backends.sqlite import SQLiteSession
from ..core import StoreSession
from ..schema import TableNames
from .demo import is_online, make_agent

__all__ = ["DEFAULT_CHAT_DB", "run_chat"]

DEFAULT_CHAT_DB = "agent_sessions_chat.db"
HELP = [
    "/undo     take back the last exchange (your message and everything after it)",
    "/history  show the conversation",
    "/clear    delete the conversation",
    "/quit     leave (so does Ctrl-D)",
]

_PROMPT = "you> "
Out = Callable[[str], None]


def open_session(target: str, session_id: str, tables: TableNames) -> StoreSession:
    """A session on a SQLite file (created if missing) or on a database URL (tables created)."""
    if "://" not in target:
        return SQLiteSession(session_id, target, tables.sessions, tables.messages)
    where = locate(target)
    # Imported here: SQLAlchemy sessions are only paid for by URL chats.
    from ..backends.sqlalchemy import SQLAlchemySession  # noqa: PLC0415

    return SQLAlchemySession.from_url(
        session_id,
        url=where.url.render_as_string(hide_password=False),
        create_tables=True,
        sessions_table=tables.sessions,
        messages_table=tables.messages,
    )


async def _read_line(interactive: bool, out: Out) -> str | None:
    """Read a line of stdin without blocking the loop; None at the end of input.

    A terminal gets a prompt; piped input is echoed after it instead, so the output reads as a
    transcript. ``input()`` waits on a daemon thread: on Ctrl-C the program ends at once
    instead of waiting for a worker thread that is stuck in ``input()``.
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not answer.done():
            answer.set_result(value)

    def read() -> None:
        try:
            value: str | None = input(_PROMPT if interactive else "")
        except EOFError:
            value = None
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, value)

    threading.Thread(target=read, name="agent-sessions-stdin", daemon=True).start()
    line = await answer
    if line is not None and not interactive:
        out(f"{_PROMPT}{line}")
    return line


def _line(item: Any) -> str:
    entry = describe_item(item)
    return printable(f"{entry.label}: {entry.body}")


async def _undo(session: StoreSession, out: Out) -> None:
    try:
        removed = await session.pop_turn()
    except ValueError as exc:  # a branched advanced session refuses to drop shared history
        out(f"cannot undo: {exc}")
        return
    if not removed:
        out("nothing to undo")
        return
    out(f"undid the last exchange ({counted(len(removed), 'item')}):")
    for item in removed:
        out(f"  {_line(item)}")


async def _history(session: StoreSession, out: Out) -> None:
    items = await session.get_items()
    if not items:
        out("(the conversation is empty)")
        return
    out(f"history ({counted(len(items), 'item')}):")
    for item in items:
        out(f"  {_line(item)}")


async def _clear(session: StoreSession, out: Out) -> None:
    await session.clear_session()
    out("cleared the conversation")


async def _help(session: StoreSession, out: Out) -> None:
    for line in HELP:
        out(line)


_COMMANDS: dict[str, Callable[[StoreSession, Out], Awaitable[None]]] = {
    "/undo": _undo,
    "/history": _history,
    "/clear": _clear,
    "/help": _help,
}


async def run_chat(
    target: str,
    session_id: str,
    tables: TableNames | None = None,
    out: Out = print,
    *,
    offline: bool = False,
) -> None:
    """Chat on stdin and stdout until ``/quit`` or the end of input.

    Args:
        target: A SQLite file (created if missing) or a database URL (tables created).
        session_id: The conversation to continue or start.
        tables: The table names.
        out: Where to print each line.
        offline: Use the local model even when ``OPENAI_API_KEY`` is set.

    Raises:
        openai.APIError: the OpenAI model could not be reached or refused the request.
    """
    online = is_online(offline)
    agent = make_agent(offline)
    interactive = sys.stdin.isatty()
    async with open_session(target, session_id, tables or TableNames()) as session:
        count = len(await session.get_items())
        model = "OpenAI" if online else "offline"
        out(
            f"chat '{one_line(session_id)}' in {one_line(locate(target).label)} "
            f"({type(session).__name__}, "
            f"{counted(count, 'item')}, {model} model); /help lists the commands"
        )
        while (line := await _read_line(interactive, out)) is not None:
            text = line.strip()
            if text in ("/quit", "/exit"):
                break
            if not text:
                continue
            command = _COMMANDS.get(text.split()[0]) if text.startswith("/") else None
            if command is not None:
                await command(session, out)
            elif text.startswith("/"):
                out(f"unknown command {text.split()[0]}; /help lists the commands")
            else:
                config = RunConfig(tracing_disabled=not online)
                result = await Runner.run(agent, text, session=session, run_config=config)
                out(f"agent> {printable(str(result.final_output))}")
    out("bye")

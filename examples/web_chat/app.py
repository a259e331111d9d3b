"""A small web chat whose conversations live in a SQLite file, through agent_sessions.

The page shows one conversation: its messages, a text box, an Undo button that takes back the
last exchange, and the stored conversations to switch between (or a new id to start one).
It runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    pip install '.[web]'
    python examples/web_chat/app.py --port 8000 --db chats.db
    WEB_CHAT_DB=chats.db uvicorn --app-dir examples/web_chat app:app --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import uvicorn
from agents import Agent, RunConfig, Runner
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from agent_sessions import SQLiteSession, SQLiteStore
from agent_sessions.offline import resolve_model

DB_VARIABLE = "WEB_CHAT_DB"
DEFAULT_DB = "web_chat.db"
STATIC = Path(__file__).resolve().parent / "static"
SESSION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TEXT = 4000
RUN_CONFIG = RunConfig(tracing_disabled=True)  # keep the conversation on this machine


@dataclass
class Conversation:
    """One conversation's open session, and a lock so its turns and undos never interleave."""

    session: SQLiteSession
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Chats:
    """Every conversation of one database file: one session per id, all closed by ``aclose``."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        # One store for all conversations: one worker thread, and concurrent writes share a commit.
        self.store = SQLiteStore(self.db_path)
        self.agent: Agent[None] = Agent(
            name="assistant", instructions="Answer briefly.", model=resolve_model()
        )
        self._open: dict[str, Conversation] = {}

    def get(self, session_id: str) -> Conversation:
        """Return the conversation with this id, opening its session on first use."""
        if session_id not in self._open:
            self._open[session_id] = Conversation(self.store.session(session_id))
        return self._open[session_id]

    def stored_ids(self) -> list[str]:
        """The ids stored in the file, most recently active first (a blocking read)."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as conn:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE name = 'agent_sessions'")
            if tables.fetchone() is None:  # the store has not created its tables yet
                return []
            rows = conn.execute(
                "SELECT session_id FROM agent_sessions ORDER BY updated_at DESC, session_id"
            ).fetchall()
        return [session_id for (session_id,) in rows]

    async def aclose(self) -> None:
        """Close every session, then the database file."""
        for conversation in self._open.values():
            await conversation.session.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> Chats:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def visible(items: Sequence[Mapping[str, object]]) -> list[dict[str, str]]:
    """The user and assistant messages as ``{"role", "text"}``; tool calls are left out."""
    shown = []
    for item in items:
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant") or item.get("type", "message") != "message":
            continue
        if isinstance(content, list):  # parts such as {"type": "output_text", "text": ...}
            parts = [p for p in content if isinstance(p, dict)]
            content = "".join(str(p.get("text") or p.get("refusal") or "") for p in parts)
        shown.append({"role": str(role), "text": str(content)})
    return shown


def conversation_of(request: Request) -> Conversation:
    """The conversation named in the URL.

    Raises:
        HTTPException: 400, the id is not 1 to 64 letters, digits, "_", "." or "-".
    """
    session_id = request.path_params["session_id"]
    if not SESSION_ID.fullmatch(session_id):
        raise HTTPException(400, 'a conversation id is 1 to 64 letters, digits, "_", "." or "-"')
    chats: Chats = request.state.chats
    return chats.get(session_id)


async def history(conversation: Conversation, **extra: object) -> JSONResponse:
    """The conversation's visible messages, as every endpoint below returns them."""
    items = await conversation.session.get_items()
    return JSONResponse({"messages": visible(items), **extra})


async def http_error(_: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error as ``{"error": ...}``, which the page shows as it is."""
    if not isinstance(exc, HTTPException):
        raise exc
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def page(_: Request) -> FileResponse:
    """GET /: the chat page."""
    return FileResponse(STATIC / "index.html")


async def list_sessions(request: Request) -> JSONResponse:
    """GET /api/sessions: the stored conversation ids, most recently active first."""
    chats: Chats = request.state.chats
    return JSONResponse({"sessions": await asyncio.to_thread(chats.stored_ids)})


async def get_messages(request: Request) -> JSONResponse:
    """GET /api/sessions/{id}/messages: the conversation so far."""
    conversation = conversation_of(request)
    return await history(conversation)


async def post_message(request: Request) -> JSONResponse:
    """POST /api/sessions/{id}/messages with {"text": ...}: run one turn of the agent."""
    conversation = conversation_of(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise HTTPException(400, f'send {{"text": "..."}} with 1 to {MAX_TEXT} characters')
    chats: Chats = request.state.chats
    async with conversation.lock:
        await Runner.run(chats.agent, text, session=conversation.session, run_config=RUN_CONFIG)
        return await history(conversation)


async def undo(request: Request) -> JSONResponse:
    """POST /api/sessions/{id}/undo: remove the last exchange, all of it or nothing."""
    conversation = conversation_of(request)
    async with conversation.lock:
        removed = await conversation.session.pop_turn()
        return await history(conversation, removed=len(removed))


ROUTES = [
    Route("/", page),
    Route("/api/sessions", list_sessions),
    Route("/api/sessions/{session_id}/messages", get_messages, methods=["GET"]),
    Route("/api/sessions/{session_id}/messages", post_message, methods=["POST"]),
    Route("/api/sessions/{session_id}/undo", undo, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def create_app(db_path: str | Path) -> Starlette:
    """Build the app; it opens ``db_path`` at startup and closes every session at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Chats]]:
        async with Chats(db_path) as chats:
            yield {"chats": chats}  # handed to every request as request.state.chats

    return Starlette(
        routes=ROUTES, exception_handlers={HTTPException: http_error}, lifespan=lifespan
    )


app = create_app(os.environ.get(DB_VARIABLE, DEFAULT_DB))
"""For ``uvicorn app:app``; nothing is opened until the server starts."""


def main() -> None:
    """Serve the chat on the address and database file given on the command line."""
    parser = argparse.ArgumentParser(description="Serve a small web chat on agent_sessions.")
    parser.add_argument(
        "--db",
        type=Path,
        default=Path(os.environ.get(DB_VARIABLE, DEFAULT_DB)),
        help=f"SQLite file of the conversations (default: ${DB_VARIABLE} or ./{DEFAULT_DB})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = parser.parse_args()
    print(f"web chat on http://{args.host}:{args.port}/ with conversations in {args.db}")
    uvicorn.run(create_app(args.db), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

"""Remember what a user prefers from one conversation to the next, and only for that user.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/preferences_memory.py [path/to/file.db]

One SQLite file holds both the conversations (a session each, in a SQLiteStore) and the
long-term memory (a MemoryStore, in its own table). Each user's agent gets ``remember``,
``recall`` and ``forget`` tools bound to that user's namespace, ``("users", <name>)``, and
instructions that carry the notes saved in earlier conversations.

- Conversation 1 (Ada, session A): Ada asks the agent to remember how she likes answers; the
  model calls ``remember`` and the note is stored under ``("users", "ada")``.
- Conversation 2 (Ada, a new session B): the note is loaded into the agent's instructions, and
  when Ada asks, the model calls ``recall`` and answers from it. Nothing else carries over: the
  new session does not know her name.
- Conversation 3 (Bob): his tools only see ``("users", "bob")``, where nothing was saved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from agents import Agent, RunConfig, Runner

from agent_sessions import SQLiteStore
from agent_sessions.memory import MemoryStore, memory_instructions, memory_tools
from agent_sessions.offline import resolve_model


def namespace(user: str) -> tuple[str, ...]:
    """Where a user's notes live; the tools made for this user never leave it."""
    return ("users", user)


def agent_for(store: MemoryStore, user: str) -> Agent[None]:
    """An assistant with memory tools and memory-carrying instructions for one user."""
    return Agent(
        name="assistant",
        instructions=memory_instructions(store, namespace(user), "Answer briefly."),
        tools=memory_tools(store, namespace(user)),
        model=resolve_model(),
    )


async def show_notes(store: MemoryStore, user: str, when: str) -> None:
    """Print the notes stored for ``user``."""
    notes = await store.search(namespace(user), limit=20)
    if not notes:
        print(f"  memory {namespace(user)}: nothing saved yet")
        return
    print(f"  memory {namespace(user)}: {len(notes)} note(s) {when}")
    for note in notes:
        print(f"    [{note.key}] {note.value.get('text')}")


async def conversation(
    sessions: SQLiteStore, store: MemoryStore, user: str, number: int, messages: list[str]
) -> None:
    """Hold one conversation of ``user`` on a fresh session."""
    session_id = f"user:{user}:chat:{number}"
    online = bool(os.environ.get("OPENAI_API_KEY"))
    agent = agent_for(store, user)
    print(f"\n{user}, conversation {number} (session {session_id!r})")
    await show_notes(store, user, "loaded")
    async with sessions.session(session_id) as chat:
        for text in messages:
            result = await Runner.run(
                agent, text, session=chat, run_config=RunConfig(tracing_disabled=not online)
            )
            print(f"  you    > {text}")
            print(f"  agent  > {result.final_output}")
    await show_notes(store, user, "stored")


async def start_over(sessions: SQLiteStore, store: MemoryStore, users: list[str]) -> None:
    """Forget the example's earlier run, when a file is given again."""
    for user in users:
        for note in await store.search(namespace(user), limit=1000):
            await store.delete(note.namespace, note.key)
        for number in (1, 2):
            async with sessions.session(f"user:{user}:chat:{number}") as session:
                await session.clear_session()


async def main(db_path: Path) -> None:
    """Ada saves a preference, then opens a new conversation; Bob has a conversation too."""
    print(f"{db_path.name}: one session per conversation, one memory namespace per user")
    async with SQLiteStore(db_path) as sessions, MemoryStore(db_path) as store:
        await start_over(sessions, store, ["ada", "bob"])
        await conversation(
            sessions,
            store,
            "ada",
            1,
            [
                "Hi! My name is Ada.",
                "Please remember for next time: detailed explanations with code examples suit "
                "me best.",
            ],
        )
        await conversation(
            sessions, store, "ada", 2, ["What do you recall about me?", "What is my name?"]
        )
        await conversation(sessions, store, "bob", 1, ["What do you recall about me?"])


def cli() -> None:
    """Parse the arguments and run the example."""
    parser = argparse.ArgumentParser(description="Preferences remembered across conversations.")
    parser.add_argument("db_path", nargs="?", type=Path, help="SQLite file (default: temporary)")
    args = parser.parse_args()
    if args.db_path is not None:
        asyncio.run(main(args.db_path))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "memory.db"))


if __name__ == "__main__":
    cli()

"""Remember what a user prefers from one conversation to the next, and only for that user.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/preferences_memory.py [path/to/file.db]

Every conversation has a session of its own; each user also has a profile session,
``user:<name>:profile``, in the same SQLiteStore file. When the user states a preference ("I
prefer ..."), the app copies that message into the profile. When a new conversation starts, the
app passes the profile's messages to the agent ahead of the first message, marked as remembered.
They are stored with that conversation, so its later turns see them too. Nothing else carries
over: the new conversation does not know what else was said in the old one.

This is a sketch of the idea, kept simple on purpose: a keyword test decides what counts as a
preference, and the profile only grows (no edits, merging or forgetting).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
from pathlib import Path

from agents import Agent, RunConfig, Runner, TResponseInputItem

from agent_sessions import SQLiteSession, SQLiteStore
from agent_sessions.offline import resolve_model

PREFERENCE = re.compile(r"\bI (?:really )?(?:prefer|like|love)\b|\bmy favou?rite\b", re.I)
REMEMBERED = "(remembered from an earlier conversation) "


def profile_id(user: str) -> str:
    """The session id of a user's profile: what they asked us to remember, in their words."""
    return f"user:{user}:profile"


def user_message(text: str) -> TResponseInputItem:
    """A user message item, as Runner stores it."""
    return {"role": "user", "content": text}


def is_preference(text: str) -> bool:
    """Whether a message states a preference worth keeping (statements only, not questions)."""
    return bool(PREFERENCE.search(text)) and not text.rstrip().endswith("?")


async def load_profile(profile: SQLiteSession) -> list[TResponseInputItem]:
    """The profile's messages, marked as remembered, to put ahead of a new conversation."""
    return [
        user_message(REMEMBERED + str(item.get("content")))
        for item in await profile.get_items()
        if item.get("role") == "user"
    ]


async def remember(profile: SQLiteSession, text: str) -> bool:
    """Keep a stated preference in the profile; False if it is not one or is already there."""
    item = user_message(text)
    if not is_preference(text) or item in await profile.get_items():
        return False
    await profile.add_items([item])
    return True


async def conversation(
    store: SQLiteStore, agent: Agent[None], user: str, number: int, messages: list[str]
) -> None:
    """Hold one conversation of ``user`` on a fresh session, with their profile loaded first."""
    session_id = f"user:{user}:chat:{number}"
    online = bool(os.environ.get("OPENAI_API_KEY"))
    async with store.session(profile_id(user)) as profile, store.session(session_id) as chat:
        remembered = await load_profile(profile)
        print(f"\n{user}, conversation {number} (session {session_id!r})")
        count = f"{len(remembered)} remembered message(s)" if remembered else "nothing remembered"
        print(f"  profile {profile_id(user)!r}: {count}")
        for item in remembered:
            print(f"  memory > {item.get('content')}")
        for index, text in enumerate(messages):
            # Only the first message carries the memory; the session keeps it from then on.
            new_input = [*remembered, user_message(text)] if index == 0 else text
            result = await Runner.run(
                agent, new_input, session=chat, run_config=RunConfig(tracing_disabled=not online)
            )
            print(f"  you    > {text}")
            print(f"  agent  > {result.final_output}")
            if await remember(profile, text):
                print(f"           (saved to {profile_id(user)!r})")


async def main(db_path: Path) -> None:
    """Ada states a preference, then opens a new conversation; Bob has a conversation too."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    print(f"{db_path.name}: one profile session per user, one session per conversation")
    async with SQLiteStore(db_path) as store:
        for user in ("ada", "bob"):  # a file given again: start over
            for session_id in (profile_id(user), f"user:{user}:chat:1", f"user:{user}:chat:2"):
                async with store.session(session_id) as session:
                    await session.clear_session()
        await conversation(
            store,
            agent,
            "ada",
            1,
            ["Hi! My name is Ada.", "I prefer trains over planes.", "What do I prefer?"],
        )
        await conversation(store, agent, "ada", 2, ["What do I prefer?", "What is my name?"])
        await conversation(store, agent, "bob", 1, ["What do I prefer?"])


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

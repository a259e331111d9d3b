"""Keep a conversation encrypted at rest, let old turns expire, rotate the key, and shred a user.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/encrypted_ttl.py [path/to/directory]

In production, load the master key from a secret manager (``Fernet.generate_key()`` makes one)
and keep the key store file away from the data file and its backups.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

from agents import Agent, RunConfig, Runner
from cryptography.fernet import Fernet

from agent_sessions import EncryptedSession, SQLiteSession
from agent_sessions.offline import resolve_model

OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()


class Clock:
    """A clock the example can move forward, to show expiry without waiting."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def open_session(
    folder: Path, keys: str | list[str], clock: Clock, user: str = "ada"
) -> EncryptedSession:
    """An encrypted session over a plain SQLite file, with its data key in a separate file."""
    return EncryptedSession(
        user,
        SQLiteSession(user, folder / "chats.db"),
        keys,
        ttl=3600,
        key_store=folder / "keys.db",
        clock=clock,
    )


async def ask(session: EncryptedSession, agent: Agent[None], text: str) -> None:
    """Run one turn and print the exchange."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    print(f"  you   > {text}")
    print(f"  agent > {result.final_output}")


def raw_rows(db_path: Path, user: str) -> list[str]:
    """What an attacker holding the data file sees."""
    with sqlite3.connect(db_path) as conn:
        query = "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id"
        rows = [row[0] for row in conn.execute(query, (user,))]
    conn.close()
    return rows


async def main(folder: Path) -> None:
    """Talk, look at the file, let time pass, rotate the key, then shred the user."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    clock = Clock()
    async with open_session(folder, OLD_KEY, clock) as session:
        await session.clear_session()
        print("a conversation, encrypted before it reaches the file:")
        await ask(session, agent, "Hi! My name is Ada.")
        clock.now += 3000
        await ask(session, agent, "I prefer trains over planes.")
        rows = raw_rows(folder / "chats.db", "ada")
        print(f"\nthe file holds {len(rows)} rows like: {rows[0][:72]}...")
        print(f"'Ada' appears in the file: {any('Ada' in row for row in rows)}")

        clock.now += 1000
        print("\nan hour after the first turn, it has expired (ttl=3600):")
        await ask(session, agent, "What is my name?")
        print(f"purged {await session.purge_expired()} expired rows from the file")

    print("\nrotating: the new key goes first, the old one stays for reading")
    async with open_session(folder, [NEW_KEY, OLD_KEY], clock) as session:
        rows = await session.reencrypt()
        print(f"ada's data key is now wrapped under the new key ({rows} rows re-encrypted)")
    async with open_session(folder, NEW_KEY, clock) as session:
        items = await session.get_items()
        print(f"with the new key alone: {len(items)} items readable")
        backup = folder / "backup.db"
        shutil.copy(folder / "chats.db", backup)
        await session.shred()
        print("\nshredded ada's data key: her rows are gone, and the backup copy is unreadable")
    async with EncryptedSession(
        "ada",
        SQLiteSession("ada", backup),
        NEW_KEY,
        ttl=None,
        key_store=folder / "keys.db",
        clock=clock,
    ) as restored:
        print(f"items readable from the backup: {len(await restored.get_items())}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        target.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(target))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))

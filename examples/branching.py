"""Re-ask a question differently on a branch, and compare both branches with their token usage.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/branching.py [path/to/file.db]
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from agents import Agent, RunConfig, Runner

from agent_sessions import AdvancedSQLiteSession
from agent_sessions.offline import resolve_model


async def ask(session: AdvancedSQLiteSession, agent: Agent[None], text: str) -> None:
    """Run one turn, record its token usage, and print the exchange."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    await session.store_run_usage(result)
    print(f"  you   > {text}")
    print(f"  agent > {result.final_output}")


async def main(db_path: Path) -> None:
    """Hold a three-turn conversation, branch from turn 2, re-ask it, and list both branches."""
    agent = Agent(name="assistant", instructions="Answer briefly.", model=resolve_model())
    async with AdvancedSQLiteSession(session_id="trip", db_path=db_path) as session:
        await session.clear_session()
        print("main branch:")
        await ask(session, agent, "Hi! My name is Ada.")
        await ask(session, agent, "I prefer trains over planes.")
        await ask(session, agent, "What do I prefer?")

        branch = await session.create_branch_from_turn(2, "re-ask")
        print(f"\nbranch {branch!r}, made from turn 2 (turn 1 is kept, no rows copied):")
        await ask(session, agent, "I prefer planes, actually.")
        await ask(session, agent, "What do I prefer?")

        print("\nbranches:")
        for info in await session.list_branches():
            usage = await session.get_session_usage(info["branch_id"])
            tokens = usage["total_tokens"] if usage else 0
            mark = "*" if info["is_current"] else " "
            print(
                f" {mark} {info['branch_id']:<8} {info['message_count']} items, "
                f"{info['user_turns']} user turns, {tokens} tokens"
            )
        await session.switch_to_branch("main")
        last = (await session.get_items(1))[0]
        print(f"\nback on main, the last answer is still: {answer_text(last)!r}")


def answer_text(item: object) -> str:
    """The text of an assistant message item (its content is a list of output parts)."""
    content = item.get("content") if isinstance(item, dict) else None
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "branching.db"))

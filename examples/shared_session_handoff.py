"""Several agents on one conversation: a handoff inside one run, then two desks taking turns.

Runs offline on the deterministic OfflineModel unless OPENAI_API_KEY is set:

    python examples/shared_session_handoff.py [path/to/file.db]
    python examples/shared_session_handoff.py --url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Part 1: a triage agent hands the customer to a billing agent (the SDK's ``handoffs=``) within
one ``Runner.run``; the next turns go to whichever agent answered last; then ``get_records()``
shows which agent said what, in which run. Part 2: a support agent and the billing agent answer
in turn through two session objects on one session id, as two services would, and each sees
everything the other was told. Part 3: a job runs under ``as_run(job id)`` and is run again
(a retry after a timeout): its input is not stored twice. With ``--url`` the conversations
live in that database (through ``SQLAlchemySession``) under fresh session ids, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from agents import Agent, HandoffOutputItem, RunConfig, Runner, ToolCallItem, function_tool
from sqlalchemy.engine import make_url

from agent_sessions import SQLAlchemySession, SQLiteStore, StoreSession, as_run
from agent_sessions.offline import resolve_model

OpenSession = Callable[[str], StoreSession]
"""Opens a session object on a session id; every call returns a new object."""

INVOICES = {1042: "EUR 42.00, charged twice on 3 March", 1043: "EUR 19.90, paid"}


@function_tool
def lookup_invoice(number: int) -> str:
    """Look up an invoice by its number.

    Args:
        number: The invoice number, e.g. 1042.
    """
    return f"invoice {number}: {INVOICES.get(number, 'not found')}"


def build_agents() -> tuple[Agent[None], Agent[None], Agent[None]]:
    """The triage, billing and support agents; triage can hand off to billing."""
    model = resolve_model()
    billing = Agent(
        name="billing",
        instructions="You are the billing desk. Use lookup_invoice for questions about invoices.",
        handoff_description="Answers questions about invoices, refunds and payments.",
        tools=[lookup_invoice],
        model=model,
    )
    triage = Agent(
        name="triage",
        instructions="You are the front desk. Hand billing questions to the billing agent.",
        handoffs=[billing],
        model=model,
    )
    support = Agent(name="support", instructions="You are the support desk.", model=model)
    return triage, billing, support


async def turn(agent: Agent[None], session: StoreSession, text: str) -> Agent[None]:
    """Run one turn, print who answered (and any handoff or tool call), return that agent."""
    online = bool(os.environ.get("OPENAI_API_KEY"))
    result = await Runner.run(
        agent, text, session=session, run_config=RunConfig(tracing_disabled=not online)
    )
    print(f"  you         > {text}")
    for item in result.new_items:
        if isinstance(item, HandoffOutputItem):
            print(f"    (handoff: {item.source_agent.name} -> {item.target_agent.name})")
        elif isinstance(item, ToolCallItem):
            call = item.raw_item
            name, arguments = getattr(call, "name", "?"), getattr(call, "arguments", "")
            print(f"    ({item.agent.name} called {name}({arguments}))")
    print(f"  {result.last_agent.name:<11} > {result.final_output}")
    return result.last_agent


async def handoff_in_one_run(open_session: OpenSession, session_id: str) -> None:
    """Part 1: triage hands off to billing inside one run; billing sees what triage was told."""
    triage, _, _ = build_agents()
    print(f"part 1: a handoff inside one Runner.run, on session {session_id!r}")
    async with open_session(session_id) as session:
        agent = await turn(triage, session, "Hi! My name is Ada.")
        agent = await turn(agent, session, "I was charged twice, please pass me to billing.")
        print("  (the next turns go to the agent that answered last)")
        agent = await turn(agent, session, "What is my name?")
        agent = await turn(agent, session, "Please check invoice 1042.")
        print(f"  {len(await session.get_items())} items on the session")
        await who_said_what(session)


async def who_said_what(session: StoreSession) -> None:
    """Print each stored item with the agent and run that wrote it (``get_records``)."""
    print("  who said what (get_records):")
    runs: dict[str, int] = {}
    for record in await session.get_records():
        item = record.item
        kind = item.get("role") or item.get("type", "?")
        run = (
            "-" if record.run_id is None else f"run {runs.setdefault(record.run_id, len(runs) + 1)}"
        )
        agent = record.agent_name or "(you)"
        print(f"    {run:<6} #{record.position!s:<2} {agent:<8} {kind}")


async def retried_run(open_session: OpenSession, session_id: str) -> None:
    """Part 3: one job run twice under its job id (a retry): history gains no duplicate input."""
    _, billing, _ = build_agents()
    print(f"\npart 3: a job retried under as_run('refund-7'), on session {session_id!r}")
    async with open_session(session_id) as session:
        for attempt in (1, 2):
            with as_run("refund-7"):
                await turn(billing, session, "Please check invoice 1042.")
            items = await session.get_items()
            users = sum(1 for item in items if item.get("role") == "user")
            print(f"  after attempt {attempt}: {len(items)} items, {users} user message stored")


async def desks_take_turns(open_session: OpenSession, session_id: str) -> None:
    """Part 2: support and billing answer in turn, each through its own session object."""
    _, billing, support = build_agents()
    print(f"\npart 2: support and billing take turns on session {session_id!r}")
    async with open_session(session_id) as support_desk, open_session(session_id) as billing_desk:
        await turn(support, support_desk, "Hi! My name is Grace.")
        await turn(billing, billing_desk, "What is my name?")
        await turn(billing, billing_desk, "Please check invoice 1043.")
        await turn(support, support_desk, "How many messages have I sent?")
        seen = len(await support_desk.get_items()), len(await billing_desk.get_items())
        print(f"  the support desk sees {seen[0]} items, the billing desk sees {seen[1]}")


async def run_both(open_session: OpenSession, ids: tuple[str, str, str], *, clean_up: bool) -> None:
    """Run both parts; with ``clean_up``, remove the sessions after, else empty them before."""
    if not clean_up:  # a file given again: start both conversations over
        for session_id in ids:
            async with open_session(session_id) as session:
                await session.clear_session()
    try:
        await handoff_in_one_run(open_session, ids[0])
        await desks_take_turns(open_session, ids[1])
        await retried_run(open_session, ids[2])
    finally:
        if clean_up:
            for session_id in ids:
                async with open_session(session_id) as session:
                    await session.clear_session()
            print(f"\nremoved sessions {', '.join(map(repr, ids))} from the database")


async def main(db_path: Path, url: str | None) -> None:
    """Open the backend (a SQLite file, or the database at ``url``) and run both parts."""
    if url is None:
        print(f"backend: SQLiteSession objects from one SQLiteStore on {db_path.name}\n")
        async with SQLiteStore(db_path) as store:
            await run_both(store.session, ("ticket-1", "ticket-2", "job-1"), clean_up=False)
        return

    def open_session(session_id: str) -> StoreSession:
        return SQLAlchemySession.from_url(session_id, url=url, create_tables=True)

    print(f"backend: SQLAlchemySession on {make_url(url).render_as_string(hide_password=True)}\n")
    tag = uuid.uuid4().hex[:8]  # fresh ids, so runs sharing the database never meet
    ids = (f"ticket-1-{tag}", f"ticket-2-{tag}", f"job-1-{tag}")
    await run_both(open_session, ids, clean_up=True)


def cli() -> None:
    """Parse the arguments and run the example."""
    parser = argparse.ArgumentParser(description="Several agents on one conversation.")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("db_path", nargs="?", type=Path, help="SQLite file (default: temporary)")
    where.add_argument("--url", help="an async SQLAlchemy URL, e.g. postgresql+asyncpg://...")
    args = parser.parse_args()
    if args.db_path is not None or args.url is not None:
        asyncio.run(main(args.db_path, args.url))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "handoff.db", None))


if __name__ == "__main__":
    cli()

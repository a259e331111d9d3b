"""Two app servers branching one session at once: the tree stays whole and nothing is lost.

Two child processes (:func:`server`), each with its own engine, share one session id on
PostgreSQL (and MariaDB) and for ``STEPS`` steps pick at random: append a turn, create a
branch from a turn, switch branches, pop an item, delete one of their own branches, or read.
The current branch belongs to the session, so each server's writes land wherever the other
last switched. What each server can know for sure is logged: the items it had acknowledged,
the items its pops returned, and the view of each of its own branches once it switched away
(nobody else switches to a server's own branches, so from then on that view must not change,
whatever the other server does to the branch's ancestors). Afterwards the parent checks the
tables and every branch through the public API (:func:`check_tree`).
"""

from __future__ import annotations

import asyncio
import json
import random
import traceback
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_sessions import AdvancedSQLAlchemySession
from tests.reliability.conftest import SqlTarget, server_params

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SERVERS = 2
STEPS = 300
SESSION = "shared"
PAD = "y" * 60
MAIN = "main"
_NOT_A_TURN = "does not contain a user message"
"""How a branch from a turn that a concurrent pop or switch took away is refused."""


# In the children ------------------------------------------------------------------------------


def tag_of(item: Mapping[str, Any]) -> str:
    """The ``server:add:index`` tag an item of :func:`turn` carries."""
    if "call_id" in item:
        return str(item["call_id"])
    return str(item["content"]).split("|")[0]


def turn(server_no: int, add: int, size: int) -> list[dict[str, Any]]:
    """One turn of ``size`` items (2 or 4), each tagged: user, [call, output,] assistant."""
    tags = [f"{server_no}:{add}:{i}" for i in range(size)]
    items: list[dict[str, Any]] = [{"role": "user", "content": f"{tags[0]}|{PAD}"}]
    if size == 4:
        items.append(
            {"type": "function_call", "call_id": tags[1], "name": "lookup", "arguments": "{}"}
        )
        items.append({"type": "function_call_output", "call_id": tags[2], "output": "ok"})
    items.append({"role": "assistant", "content": f"{tags[-1]}|{PAD}"})
    return items


@dataclass
class Log:
    """What one server knows for sure, reported to the parent as JSON."""

    errors: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    popped: list[str] = field(default_factory=list)
    frozen: dict[str, list[str]] = field(default_factory=dict)
    """The view of each own branch no longer current (stable until switched to again)."""
    deleted: dict[str, list[str]] = field(default_factory=dict)
    """The view of each own branch at its deletion."""
    created: list[str] = field(default_factory=list)
    refused: int = 0
    """Branch creations refused because the turn had gone meanwhile (a legitimate race)."""


def view_error(tags: list[str]) -> str | None:
    """What is wrong with a branch's view: a duplicate, or a server's items out of order."""
    if len(tags) != len(set(tags)):
        return f"duplicate items in a view: {tags}"
    last: dict[str, tuple[int, int]] = {}
    for tag in tags:
        server_no, add, index = tag.split(":")
        key = (int(add), int(index))
        if server_no in last and key <= last[server_no]:
            return f"server {server_no}'s items out of order in a view: {tags}"
        last[server_no] = key
    return None


class Server:
    """One app server's loop over its own engine; see the module docstring."""

    def __init__(self, number: int, session: AdvancedSQLAlchemySession, seed: int) -> None:
        self.number = number
        self.session = session
        self.rng = random.Random(seed)
        self.log = Log()
        self.adds = 0
        self.thawed: str | None = None
        """The own branch this server last made current: it may still be current."""

    async def view(self, branch: str) -> list[str]:
        """The tags a branch shows, oldest first."""
        return [tag_of(item) for item in await self.session.get_items(branch_id=branch)]

    async def left(self, now_current: str) -> None:
        """Record the view of the own branch that was thawed, now that ``now_current`` is."""
        if self.thawed is not None and self.thawed != now_current:
            self.log.frozen[self.thawed] = await self.view(self.thawed)
        self.thawed = now_current if now_current != MAIN else None

    async def append(self) -> None:
        """Add one turn to whatever branch is current; log its items once acknowledged."""
        items = turn(self.number, self.adds, self.rng.choice((2, 4)))
        self.adds += 1
        await self.session.add_items(items)  # type: ignore[arg-type]
        self.log.acknowledged.extend(tag_of(item) for item in items)

    async def create(self) -> None:
        """Branch from a random turn of the current branch (the turn may go meanwhile)."""
        turns = len(await self.session.get_conversation_turns())
        if turns == 0:
            return
        name = f"p{self.number}-{len(self.log.created)}"
        try:
            await self.session.create_branch_from_turn(self.rng.randint(1, turns), name)
        except ValueError as exc:
            if _NOT_A_TURN not in str(exc):
                raise
            self.log.refused += 1
            return
        self.log.created.append(name)
        await self.left(name)

    async def switch(self) -> None:
        """Switch to main or to one of this server's own branches."""
        mine = [*self.log.frozen, *([self.thawed] if self.thawed else [])]
        target = self.rng.choice(mine) if mine and self.rng.random() < 0.5 else MAIN
        await self.session.switch_to_branch(target)
        self.log.frozen.pop(target, None)
        await self.left(target)

    async def pop(self) -> None:
        """Pop the current branch's newest item; log what came back."""
        item = await self.session.pop_item()
        if item is not None:
            self.log.popped.append(tag_of(item))  # type: ignore[arg-type]

    async def delete(self) -> None:
        """Delete one of this server's branches it left, checking its view first."""
        if not self.log.frozen:
            return
        branch = self.rng.choice(sorted(self.log.frozen))
        seen = await self.view(branch)
        if seen != self.log.frozen[branch]:
            before = self.log.frozen[branch]
            self.log.errors.append(f"{branch} changed while frozen: {before} -> {seen}")
        self.log.deleted[branch] = self.log.frozen.pop(branch)
        await self.session.delete_branch(branch)

    async def read(self) -> None:
        """Read the current branch and the branch list; check what can be checked mid-run."""
        problem = view_error([tag_of(item) for item in await self.session.get_items()])
        if problem:
            self.log.errors.append(problem)
        listed = {info["branch_id"]: info for info in await self.session.list_branches()}
        for branch, tags in self.log.frozen.items():
            count = listed[branch]["message_count"] if branch in listed else None
            if count != len(tags):
                self.log.errors.append(f"{branch} lists {count} items, its view had {len(tags)}")

    async def run(self, steps: int) -> None:
        """Take ``steps`` random steps, then switch to main and record the last own branch."""
        actions = [
            (self.append, 40),
            (self.create, 12),
            (self.switch, 15),
            (self.pop, 12),
            (self.delete, 8),
            (self.read, 13),
        ]
        calls, weights = zip(*actions, strict=True)
        for _ in range(steps):
            action = self.rng.choices(calls, weights)[0]
            try:
                await action()
            except Exception:  # noqa: BLE001 - reported; the server goes on
                self.log.errors.append(traceback.format_exc())
        await self.session.switch_to_branch(MAIN)
        await self.left(MAIN)


def server(
    url: str, tables: tuple[str, str], number: int, *, steps: int, start: Any, report: str
) -> None:
    """Run one app server (its own engine) on the shared session, then write its :class:`Log`."""
    start.wait(60)
    log = Log()
    try:
        log = asyncio.run(_serve(url, tables, number, steps))
    except BaseException:  # noqa: BLE001 - anything at all is reported to the test
        log.errors.append(traceback.format_exc())
    Path(report).write_text(json.dumps(vars(log)))


async def _serve(url: str, tables: tuple[str, str], number: int, steps: int) -> Log:
    engine = create_async_engine(url)
    session = AdvancedSQLAlchemySession(
        SESSION, engine=engine, sessions_table=tables[0], messages_table=tables[1]
    )
    one = Server(number, session, seed=1000 + number)
    try:
        await one.run(steps)
    finally:
        await session.aclose()
        await engine.dispose()
    return one.log


# In the parent --------------------------------------------------------------------------------


@dataclass
class Tables:
    """The session's rows, read raw after the servers exited."""

    messages: dict[int, str]
    """Message id -> item tag."""
    structure: list[tuple[int, str, str, int, int | None]]
    """(message_id, branch_id, message_type, sequence_number, user_turn_number)."""
    branches: dict[str, tuple[str | None, int]]
    """Branch -> (parent_id, inherit_below)."""
    current: str | None


async def read_tables(engine: AsyncEngine, messages_table: str) -> Tables:
    """Every row of the shared session in the messages table and its branch tables."""
    m, params = messages_table, {"s": SESSION}
    async with engine.connect() as conn:

        async def rows(sql: str) -> list[Any]:
            return list(await conn.execute(text(sql), params))

        messages = {
            int(mid): tag_of(json.loads(data))
            for mid, data in await rows(f"SELECT id, message_data FROM {m} WHERE session_id = :s")
        }
        structure = [
            (int(r[0]), r[1], r[2], int(r[3]), r[4])
            for r in await rows(
                "SELECT message_id, branch_id, message_type, sequence_number, user_turn_number "
                f"FROM {m}_structure WHERE session_id = :s"
            )
        ]
        branches = {
            b: (p, int(c))
            for b, p, c in await rows(
                f"SELECT branch_id, parent_id, inherit_below FROM {m}_branches "
                "WHERE session_id = :s"
            )
        }
        current = await rows(f"SELECT branch_id FROM {m}_current WHERE session_id = :s")
    return Tables(messages, structure, branches, current[0][0] if current else None)


def walk(tables: Tables, branch: str) -> list[tuple[int, str | None, int | None]]:
    """A branch's view from the tables alone: (message id, type, stored turn), oldest first.

    Its own records, then its parent's view below its cutoff, and so on up to ``main``, with
    the smallest cutoff so far applied (the model the store implements, written again here).
    """
    own: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
    for mid, owner, kind, _seq, user_turn in tables.structure:
        own[owner].append((mid, kind, user_turn))
    found: list[tuple[int, str | None, int | None]] = []
    before, seen = 2**63, set()
    name: str | None = branch
    while name is not None and name not in seen and name in tables.branches:
        seen.add(name)
        found += [row for row in own[name] if row[0] < before]
        parent, cutoff = tables.branches[name]
        before, name = min(before, cutoff), parent
    return sorted(found)


def check_records(tables: Tables) -> list[str]:
    """Items and their records: each stored once, held by a branch, naming what exists."""
    problems = []
    tags = list(tables.messages.values())
    if len(tags) != len(set(tags)):
        problems.append("an item is stored twice")
    held = defaultdict(list)
    for mid, branch, _kind, _seq, _turn in tables.structure:
        held[mid].append(branch)
        if mid not in tables.messages:
            problems.append(f"a record of {branch!r} names missing message {mid}")
        if branch not in tables.branches:
            problems.append(f"a record of message {mid} names missing branch {branch!r}")
    if any(len(set(owners)) != len(owners) for owners in held.values()):
        problems.append("a branch holds one message twice")
    unheld = sorted(set(tables.messages) - set(held))
    if unheld:
        problems.append(f"messages no branch holds (they would show on main): {unheld}")
    return problems


def check_branches(tables: Tables) -> list[str]:
    """The tree: every branch leads to main, and its records are in order and numbered."""
    problems = []
    if MAIN not in tables.branches or tables.branches[MAIN][0] is not None:
        problems.append("main is missing or has a parent")
    if tables.current is not None and tables.current not in tables.branches:
        problems.append(f"the current branch {tables.current!r} does not exist")
    for branch, (parent, _cutoff) in tables.branches.items():
        chain, name = [branch], parent
        while name is not None and name not in chain and name in tables.branches:
            chain.append(name)
            name = tables.branches[name][0]
        if branch != MAIN and chain[-1] != MAIN:
            problems.append(f"{branch!r} does not lead to main: {chain} then {name!r}")
        own = sorted((mid, seq) for mid, b, _k, seq, _t in tables.structure if b == branch)
        seqs = [seq for _mid, seq in own]
        if seqs != sorted(set(seqs)):
            problems.append(f"{branch!r}'s sequence numbers do not follow its ids: {own}")
        users = [turn for _mid, kind, turn in walk(tables, branch) if kind == "user"]
        if users != list(range(1, len(users) + 1)):
            problems.append(f"{branch!r}'s user turns are numbered {users}")
    return problems


async def check_tree(engine: AsyncEngine, tables_pair: tuple[str, str], logs: list[Log]) -> None:
    """Every acknowledged item is accounted for, and every branch shows what the tables say."""
    tables = await read_tables(engine, tables_pair[1])
    problems = check_records(tables) + check_branches(tables)
    session = AdvancedSQLAlchemySession(
        SESSION, engine=engine, sessions_table=tables_pair[0], messages_table=tables_pair[1]
    )
    try:
        listed = {info["branch_id"]: info for info in await session.list_branches()}
        if set(listed) != set(tables.branches):
            problems.append(f"list_branches gives {set(listed)}, the tables {set(tables.branches)}")
        frozen = {b: v for log in logs for b, v in log.frozen.items()}
        deleted = {b: v for log in logs for b, v in log.deleted.items()}
        shown: set[int] = set()
        for branch, info in listed.items():
            api = [
                tag_of(item)
                for item in await session.get_items(branch_id=branch)  # type: ignore[arg-type]
            ]
            walked = walk(tables, branch)
            shown.update(mid for mid, _kind, _turn in walked)
            if api != [tables.messages[mid] for mid, _kind, _turn in walked]:
                problems.append(f"get_items({branch!r}) differs from the tables")
            users = sum(kind == "user" for _mid, kind, _turn in walked)
            if (info["message_count"], info["user_turns"]) != (len(walked), users):
                problems.append(f"list_branches counts {branch!r} wrong: {info}")
            if view_error(api):
                problems.append(f"{branch!r}: {view_error(api)}")
            if branch != MAIN and frozen.get(branch) != api:
                problems.append(f"{branch!r} changed: left as {frozen.get(branch)}, now {api}")
            await session.get_conversation_turns(branch)
        if set(deleted) & set(listed):
            problems.append(f"deleted branches still listed: {set(deleted) & set(listed)}")
        if shown != set(tables.messages):
            problems.append(f"stored items no branch shows: {set(tables.messages) - shown}")
    finally:
        await session.aclose()
    acknowledged = {tag for log in logs for tag in log.acknowledged}
    stored = set(tables.messages.values())
    may_go = {tag for log in logs for tag in log.popped} | {t for v in deleted.values() for t in v}
    lost = acknowledged - stored - may_go
    if lost:
        problems.append(f"{len(lost)} acknowledged item(s) lost: {sorted(lost)[:10]}")
    if stored - acknowledged:
        problems.append(f"items nobody acknowledged: {sorted(stored - acknowledged)[:10]}")
    assert problems == [], "\n".join(problems)


def run_servers(
    context: ForkServerContext,
    url: str,
    tables: tuple[str, str],
    tmp_path: Path,
    child: Any = server,
) -> list[Log]:
    """Start the servers together, wait for them, and return their logs."""
    start = context.Event()
    reports = [tmp_path / f"server-{n}.json" for n in range(SERVERS)]
    procs = [
        context.Process(
            target=child,
            args=(url, tables, n),
            kwargs={"steps": STEPS, "start": start, "report": str(reports[n])},
        )
        for n in range(SERVERS)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(240)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert [proc.exitcode for proc in procs] == [0] * SERVERS
    return [Log(**json.loads(report.read_text())) for report in reports]


def summary(logs: Iterable[Log]) -> dict[str, int]:
    """How much each kind of step did, across the servers (to see the test did something)."""
    logs = list(logs)
    return {
        "acknowledged": sum(len(log.acknowledged) for log in logs),
        "popped": sum(len(log.popped) for log in logs),
        "created": sum(len(log.created) for log in logs),
        "deleted": sum(len(log.deleted) for log in logs),
        "refused": sum(log.refused for log in logs),
    }


@pytest.mark.slow
@pytest.mark.parametrize("sql_target", server_params(), indirect=True)
async def test_two_servers_branch_one_session(
    forkserver: ForkServerContext, sql_target: SqlTarget, tmp_path: Path
) -> None:
    """Two processes x 300 random steps on one session: no loss, no duplicate, a whole tree.

    Appends, branches from turns, switches, pops and branch deletions from two engines at
    once; afterwards every acknowledged item is stored unless a pop returned it or it was in
    a deleted branch, no item is stored twice, every record names an existing message and
    branch, every branch leads to main, each branch a server left shows what it showed then,
    and get_items and list_branches agree with the tables on every branch.
    """
    pair = sql_target.tables
    setup = AdvancedSQLAlchemySession(
        "setup",
        engine=sql_target.engine,
        create_tables=True,
        sessions_table=pair[0],
        messages_table=pair[1],
    )
    await setup.get_items()  # the tables exist before the servers start
    await setup.aclose()
    url = sql_target.target.where
    logs = await asyncio.to_thread(run_servers, forkserver, url, pair, tmp_path)
    errors = [error for log in logs for error in log.errors]
    assert errors == [], f"{len(errors)} error(s), the first:\n{errors[0]}"
    done = summary(logs)
    assert done["created"] > 10, done
    assert done["deleted"] > 5, done
    assert done["popped"] > 10, done
    await check_tree(sql_target.engine, pair, logs)

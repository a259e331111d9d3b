"""What ``show`` reports of an advanced session: its branches and its token usage, typed.

The numbers come from the advanced sessions' own branch logic (``Chain``, over the same
statements), so they are what ``list_branches()``, ``get_session_usage()`` and
``get_turn_usage()`` of ``AdvancedSQLiteSession`` or ``AdvancedSQLAlchemySession`` return on the
same tree. Nothing is written: a SQLite file is read over a read-only ``sqlite3`` connection
(tables a file the SDK's class wrote lacks are read as empty TEMP tables, which live with the
connection), a server in one ``REPEATABLE READ`` snapshot.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..schema import TableNames
from ..serialization import JsonCodec
from .db import Database
from .tree import TreeNames, complete, find_tree

if TYPE_CHECKING:
    from ..backends.advanced.db import Connection as BranchConnection
    from ..backends.advanced.sql import AdvancedStatements

__all__ = ["BranchSummary", "BranchTree", "TurnUsageRecord", "UsageTotals", "read_branch_tree"]

_JSON = JsonCodec()


@dataclass(frozen=True)
class UsageTotals:
    """Token usage summed over a branch or a whole session.

    Attributes:
        requests: Model requests made.
        input_tokens: Tokens sent to the model.
        output_tokens: Tokens the model produced.
        total_tokens: Input and output tokens together, as the model reported them.
        turns: How many user turns have usage recorded.
    """

    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    turns: int

    def to_dict(self) -> dict[str, int]:
        """The totals with the keys ``get_session_usage()`` returns."""
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "total_turns": self.turns,
        }


@dataclass(frozen=True)
class TurnUsageRecord:
    """The usage ``store_run_usage`` recorded for one user turn of one branch.

    Attributes:
        turn: The user turn (1-based, on its branch).
        requests: Model requests made in the turn.
        input_tokens: Tokens sent to the model.
        output_tokens: Tokens the model produced.
        total_tokens: Input and output tokens together.
        input_tokens_details: The model's breakdown of input tokens; None if absent.
        output_tokens_details: The model's breakdown of output tokens; None if absent.
    """

    turn: int
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, Any] | None
    output_tokens_details: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        """The record with the keys of each entry of ``get_turn_usage()``."""
        return {
            "user_turn_number": self.turn,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "input_tokens_details": self.input_tokens_details,
            "output_tokens_details": self.output_tokens_details,
        }


@dataclass(frozen=True)
class BranchSummary:
    """One branch of a session.

    Attributes:
        branch_id: The branch's id (``main`` for the one every session starts on).
        parent_id: The branch it was made from; None for ``main`` and for branches the SDK's
            class made (they hold every item they show).
        items: Items in its visible history, inherited ones included.
        user_turns: User messages in its visible history.
        created_at: When it was made (``YYYY-MM-DD HH:MM:SS``, the database's clock); None for
            a ``main`` that has no record yet.
        current: Whether it is the session's current branch.
        usage: Its usage summed over its turns; None if none was recorded.
        turns: Its usage turn by turn, oldest first.
    """

    branch_id: str
    parent_id: str | None
    items: int
    user_turns: int
    created_at: str | None
    current: bool
    usage: UsageTotals | None
    turns: list[TurnUsageRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The branch as ``list_branches()`` lists it, with its parent and usage added."""
        return {
            "branch_id": self.branch_id,
            "parent_id": self.parent_id,
            "message_count": self.items,
            "user_turns": self.user_turns,
            "created_at": self.created_at,
            "is_current": self.current,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "turn_usage": [turn.to_dict() for turn in self.turns],
        }


@dataclass(frozen=True)
class BranchTree:
    """An advanced session's branches and token usage, as ``SessionDatabase.branch_tree`` reads.

    Attributes:
        current: The current branch.
        branches: Every branch: ``main`` first, then in the order they were made.
        usage: Usage summed over every branch; None if none was recorded.
    """

    current: str
    branches: list[BranchSummary]
    usage: UsageTotals | None

    def to_dict(self) -> dict[str, Any]:
        """The tree as JSON-ready values (``show --json``)."""
        return {
            "current_branch": self.current,
            "branches": [branch.to_dict() for branch in self.branches],
            "usage": None if self.usage is None else self.usage.to_dict(),
        }

    def legacy_view(self) -> dict[str, Any]:
        """``{"branches": list_branches(), "usage": get_session_usage()}``, as they return them."""
        listed = [
            {
                "branch_id": b.branch_id,
                "message_count": b.items,
                "user_turns": b.user_turns,
                "created_at": b.created_at,
                "is_current": b.current,
            }
            for b in self.branches
        ]
        return {"branches": listed, "usage": None if self.usage is None else self.usage.to_dict()}


def _totals(row: tuple[Any, ...]) -> UsageTotals | None:
    """Summed usage from a ``SUM(...), COUNT(*)`` row; None if no row was summed."""
    if row[0] is None:
        return None
    requests, inputs, outputs, total, turns = (int(value or 0) for value in row)
    return UsageTotals(requests, inputs, outputs, total, turns)


def _details(stored: object) -> dict[str, Any] | None:
    if not isinstance(stored, str):
        return None
    try:
        return cast(dict[str, Any], _JSON.decode(stored))
    except ValueError:
        return None


def _read(conn: BranchConnection, sql: AdvancedStatements, session_id: str) -> BranchTree:
    """Read a session's tree with the advanced sessions' statements, in one snapshot."""
    from ..backends.advanced.chain import Chain  # noqa: PLC0415
    from ..backends.advanced.sql import MAIN  # noqa: PLC0415

    sid, chain = session_id, Chain(sql, _JSON)
    current = chain.head(conn, sid).branch
    found = list(conn.execute(sql.branches, {"session": sid}))
    if all(row[0] != MAIN for row in found):
        found.insert(0, (MAIN, None, 0))
    branches = []
    for branch, created_at, _order in found:
        head = chain.resolve(conn, sid, branch)
        items, users = chain.size(conn, sid, head)
        turns = [
            TurnUsageRecord(
                turn=int(r[0]),
                requests=int(r[1] or 0),
                input_tokens=int(r[2] or 0),
                output_tokens=int(r[3] or 0),
                total_tokens=int(r[4] or 0),
                input_tokens_details=_details(r[5]),
                output_tokens_details=_details(r[6]),
            )
            for r in conn.execute(sql.turn_usage, (sid, branch))
        ]
        branches.append(
            BranchSummary(
                branch_id=str(branch),
                parent_id=head.parent,
                items=items,
                user_turns=users,
                created_at=None if created_at is None else str(created_at),
                current=branch == current,
                usage=_totals(tuple(conn.execute(sql.branch_usage, (sid, branch)).fetchone())),
                turns=turns,
            )
        )
    usage = _totals(tuple(conn.execute(sql.session_usage, (sid,)).fetchone()))
    return BranchTree(current, branches, usage)


def _statements(names: TableNames, tree: TreeNames, dialect: str) -> AdvancedStatements:
    from ..backends.advanced.flavor import flavor_of  # noqa: PLC0415
    from ..backends.advanced.sql import AdvancedStatements  # noqa: PLC0415

    sql = AdvancedStatements(names, flavor_of(dialect))
    sql.bind(shared=tree.shared)
    return sql


def _read_file(path: Path, names: TableNames, tree: TreeNames, session_id: str) -> BranchTree:
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30
    )
    try:
        sql = _statements(names, tree, "sqlite")
        _stand_in_for_missing(conn, sql)
        conn.execute("BEGIN")  # one snapshot for every query
        return _read(conn, sql, session_id)
    finally:
        conn.close()


def _stand_in_for_missing(conn: sqlite3.Connection, sql: AdvancedStatements) -> None:
    """Give this connection empty TEMP copies of the pair's tables the file lacks."""
    present = {str(row[0]).lower() for row in conn.execute("SELECT name FROM sqlite_master")}
    for statement in sql.ddl(sql.n):
        head = statement.split("(", 1)[0].split()
        if head[:2] == ["CREATE", "TABLE"] and head[-1].lower() not in present:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))


async def read_branch_tree(db: Database, session_id: str) -> BranchTree | None:
    """A session's branches and usage; None if the database has no branch tables."""
    tree = await find_tree(db)
    if tree is None:
        return None
    if db.path is not None:
        return await asyncio.to_thread(_read_file, db.path, db.names, tree.names, session_id)
    if not complete(tree):
        return None  # pragma: no cover - a server's tables are made together
    from ..backends.advanced.bridge import Bridge, StatementCache  # noqa: PLC0415

    sql, cache = _statements(db.names, tree.names, db.dialect), StatementCache()
    async with db.snapshot_engine().connect() as conn:
        if db.is_sqlite:
            await conn.exec_driver_sql("BEGIN")
        return await conn.run_sync(lambda sync: _read(Bridge(sync, cache), sql, session_id))

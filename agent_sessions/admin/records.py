"""A session's branch tree as records that name items by index, and back into rows.

Export, import and migrate move a tree without its database ids, which differ between
databases: an item is named by its index in the session's items (oldest first), and a branch's
cutoff (it inherits its parent's items with ids below it) by the index of the first item it does
not inherit (null: all of them, later ones too). :func:`tree_records` turns a session's rows
into such records, and :func:`write_tree` turns records back into rows under the destination's
ids. The mapping keeps every comparison the branch logic makes (a cutoff against an item's id,
or against the id of a row added later), so the tree reads the same on the destination.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, insert, select

from ..serialization import JsonCodec
from .db import Database, canonical_time, parse_time
from .engine import Connection
from .rows import Digest
from .tree import TreeTables, delete_tree

__all__ = ["NO_CUTOFF", "RawTree", "read_tree", "tree_digest", "tree_records", "write_tree"]

NO_CUTOFF = 2**63 - 1
"""A cutoff no id reaches: the branch inherits all of its parent's items, later ones too.

The value of ``agent_sessions.backends.advanced.segments.NO_CUTOFF`` (importing it would load
the Agents SDK, which an export never needs)."""
_JSON = JsonCodec()


_USAGE_COLUMNS = (
    "branch_id",
    "user_turn_number",
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_tokens_details",
    "output_tokens_details",
)
_USAGE_KEYS = (
    "branch_id",
    "turn",
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_tokens_details",
    "output_tokens_details",
)


class RawTree(NamedTuple):
    """A session's branch rows, with database ids, each list in the order it was written."""

    branches: list[tuple[str, str | None, int, Any]]
    """Branch, parent, cutoff id and creation time, in creation order."""
    records: list[tuple[int, str, str, int, int | None, int | None, str | None, Any]]
    """Item id, branch, item type, sequence number, turn, branch turn, tool name, time."""
    usage: list[tuple[Any, ...]]
    """Branch, turn, requests, input, output and total tokens, both details, time."""
    reserved: list[str]
    """Every branch id the session ever used, in code point order."""
    generation: int | None
    """How often the session was cleared (None: no row)."""
    current: str | None
    """The current branch (None: no row, which means ``main``)."""


async def read_tree(tree: TreeTables, conn: Connection, session_id: str) -> RawTree:
    """Read a session's branch rows (call it in the snapshot its items are read in)."""
    sid = session_id

    async def rows(table: Table, *columns: Any, order: Any = None) -> list[Any]:
        if not tree.has(table):
            return []
        query = select(*columns).where(table.c.session_id == sid)
        if order is not None:
            query = query.order_by(order)
        return list(await conn.execute(query))

    b, st, us = tree.branches, tree.structure, tree.usage
    branches = await rows(
        b, b.c.branch_id, b.c.parent_id, b.c.inherit_below, b.c.created_at, order=tree.order
    )
    records = await rows(
        st,
        st.c.message_id,
        st.c.branch_id,
        st.c.message_type,
        st.c.sequence_number,
        st.c.user_turn_number,
        st.c.branch_turn_number,
        st.c.tool_name,
        st.c.created_at,
        order=st.c.id,
    )
    usage = await rows(
        us,
        *(us.c[name] for name in _USAGE_COLUMNS),
        us.c.created_at,
        order=us.c.id,
    )
    reserved = await rows(tree.reservations, tree.reservations.c.branch_id)
    generation = await rows(tree.generations, tree.generations.c.generation)
    current = await rows(tree.current, tree.current.c.branch_id)
    return RawTree(
        [(str(r[0]), None if r[1] is None else str(r[1]), int(r[2]), r[3]) for r in branches],
        [(int(r[0]), str(r[1]), str(r[2]), int(r[3]), *r[4:]) for r in records],
        [tuple(r) for r in usage],
        sorted(str(r[0]) for r in reserved),
        int(generation[0][0]) if generation else None,
        str(current[0][0]) if current else None,
    )


def _whole(value: Any) -> int | None:
    return None if value is None else int(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def tree_records(raw: RawTree, ids: Sequence[int]) -> list[dict[str, Any]]:
    """A session's tree as export records: items and cutoffs by index, never by id.

    ``ids`` are the ids of the session's items, ascending (the items exported). A record of
    an item the session no longer holds is left out: it shows nothing on any branch.
    """
    records: list[dict[str, Any]] = []
    for branch, parent, below, created in raw.branches:
        cutoff = None if below >= NO_CUTOFF else bisect_left(ids, below)
        records.append(
            {
                "type": "branch",
                "branch_id": branch,
                "parent_id": parent,
                "cutoff": cutoff,
                "created_at": canonical_time(created),
            }
        )
    index = {item_id: number for number, item_id in enumerate(ids)}
    for mid, branch, kind, seq, turn, branch_turn, tool, created in raw.records:
        if mid not in index:
            continue
        records.append(
            {
                "type": "record",
                "item": index[mid],
                "branch_id": branch,
                "message_type": kind,
                "sequence": seq,
                "turn": _whole(turn),
                "branch_turn": _whole(branch_turn),
                "tool_name": _text(tool),
                "created_at": canonical_time(created),
            }
        )
    for row in raw.usage:
        values = [str(row[0]), int(row[1]), *(_whole(v) for v in row[2:6])]
        values += [_text(v) for v in row[6:8]]  # JSON text (a SQLite JSON column: any value)
        record: dict[str, Any] = {"type": "usage"}
        record.update(zip(_USAGE_KEYS, values, strict=True))
        record["created_at"] = canonical_time(row[8])
        records.append(record)
    if raw.reserved or raw.generation is not None or raw.current is not None:
        records.append(
            {
                "type": "state",
                "current": raw.current,
                "generation": raw.generation,
                "reserved": raw.reserved,
            }
        )
    return records


def tree_digest(records: Sequence[dict[str, Any]]) -> Digest:
    """Count and SHA-256 of tree records without their times: what a migration verifies.

    Times are copied as they are, but not every database keeps them to the microsecond
    (MariaDB's ``TIMESTAMP``), so they are not compared, as items' times are not.
    """
    digest = Digest()
    for record in records:
        timeless = {key: value for key, value in record.items() if key != "created_at"}
        digest.add(_JSON.encode(cast(Any, timeless)))
    return digest


def _cutoff(index: int | None, ids: Sequence[int]) -> int:
    """The destination's cutoff id for a cutoff index (see the module's docstring)."""
    if index is None:
        return NO_CUTOFF
    if index < len(ids):
        return ids[index]
    # Past every item: above each of them, and at most any id a later row can get.
    return ids[-1] + 1 if ids else 0


async def write_tree(
    db: Database,
    tree: TreeTables,
    conn: Connection,
    session_id: str,
    records: Sequence[dict[str, Any]],
    *,
    ids: Sequence[int],
) -> None:
    """Write a session's tree records under the destination's item ids, in ``conn``'s transaction.

    Rows go in the order of the records, so the destination lists branches, and the branch
    of each item, as the source did. Any rows the session already had are deleted first.
    """
    await delete_tree(tree, conn, session_id)

    def stamp(value: str | None) -> Any:
        if value is None:
            return None
        return canonical_time(value) if db.is_sqlite else parse_time(value)

    rows: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        kind = record["type"]
        if kind == "branch":
            row = {
                "branch_id": record["branch_id"],
                "parent_id": record["parent_id"],
                "inherit_below": _cutoff(record["cutoff"], ids),
            }
        elif kind == "record":
            row = {
                "message_id": ids[record["item"]],
                "branch_id": record["branch_id"],
                "message_type": record["message_type"],
                "sequence_number": record["sequence"],
                "user_turn_number": record["turn"],
                "branch_turn_number": record["branch_turn"],
                "tool_name": record["tool_name"],
            }
        elif kind == "usage":
            row = {
                column: record[key] for column, key in zip(_USAGE_COLUMNS, _USAGE_KEYS, strict=True)
            }
        else:
            await _write_state(tree, conn, session_id, record)
            continue
        row["session_id"] = session_id
        row["created_at"] = stamp(record["created_at"])
        rows.setdefault(kind, []).append(row)
    for kind, table in (
        ("branch", tree.branches),
        ("record", tree.structure),
        ("usage", tree.usage),
    ):
        if rows.get(kind):
            await conn.execute(insert(table), rows[kind])


async def _write_state(
    tree: TreeTables, conn: Connection, session_id: str, record: dict[str, Any]
) -> None:
    """Write a session's current branch, clear generation and reserved branch ids."""
    if record["current"] is not None:
        await conn.execute(
            insert(tree.current), [{"session_id": session_id, "branch_id": record["current"]}]
        )
    if record["generation"] is not None:
        await conn.execute(
            insert(tree.generations),
            [{"session_id": session_id, "generation": record["generation"]}],
        )
    if record["reserved"]:
        await conn.execute(
            insert(tree.reservations),
            [{"session_id": session_id, "branch_id": branch} for branch in record["reserved"]],
        )

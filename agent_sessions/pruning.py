"""Pruning in place: a session keeps its newest turns, and the older ones go in one transaction.

A turn is a user message and every item after it up to the next user message; the items before
the first user message are the preamble. :func:`prune_session` keeps the newest
``keep_last_turns`` turns and removes the older ones whole, the preamble with them, except:

- ``system`` and ``developer`` items, wherever they are, when ``keep_system`` (the default);
- rows that cannot be decoded (corrupt, tampered, under a wrong key): never removed, counted in
  :attr:`PruneReport.kept_unreadable`;
- an older turn that holds one half of a tool call whose other half is kept (a
  ``function_call_output`` stored after the next user message, say): that turn is kept too, so a
  ``call_id`` never loses its partner.

On a plain store the removed rows are deleted by id (``rewrite``): the kept rows keep their ids,
their timestamps and their places. On a store with branches a row may be inherited by forks, so
deleting it would take it from them too; there the current branch's visible history is swapped
for the kept items (``replace_tail``, retried if a writer changed it meanwhile). The forks keep
what they showed, and the kept items are stored again on the branch: new row ids, new times, the
same text (an encrypted row stays sealed as it was), and the branch's recorded usage goes, as it
does when ``replace_items`` swaps a branch's history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from ._lifecycle import run_to_completion
from .errors import StorageError
from .serialization import Codec, SkipRow, logger
from .store import (
    MAX_LIMIT,
    ArchiveBatch,
    RowStore,
    Store,
    archives_own_rows,
    defining_class,
    is_user_message,
    swaps_own_rows,
)

__all__ = [
    "PrunableSession",
    "PruneReport",
    "check_keep_last_turns",
    "prune_session",
    "tool_pair",
    "turn_cut",
]

T = TypeVar("T")

_EVERY_ROW = MAX_LIMIT - 1
"""The widest ``tail`` window."""

_SWAP_TRIES = 20
"""How often a branch swap reads the history again when writers keep changing it."""

_YIELD_EVERY = 5_000
"""Rows classified between two yields to the loop."""

_KEPT_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, with ``dry_run``, would remove).

    Attributes:
        removed_items: Rows removed (expired ones included).
        removed_turns: Whole turns removed; the preamble is not a turn.
        kept_items: Rows the session holds afterwards, unreadable ones included.
        kept_unreadable: Rows of the pruned part kept only because they cannot be decoded.
        dry_run: Whether nothing was written.
    """

    removed_items: int
    removed_turns: int
    kept_items: int
    kept_unreadable: int = 0
    dry_run: bool = False


class PrunableSession(Protocol):
    """What :func:`prune_session` needs of a session: a ``StoreSession`` has it all."""

    @property
    def session_id(self) -> str:
        """The conversation to prune."""
        ...

    @property
    def store(self) -> Store:
        """Where its rows live."""
        ...

    @property
    def _codec(self) -> Codec:
        """How its rows decode (the session's own codec, encrypting or not)."""
        ...


class _Kind(Enum):
    USER = "user"
    KEPT_ROLE = "system or developer"
    OTHER = "other"
    EXPIRED = "expired"
    UNREADABLE = "unreadable"


class _Row(NamedTuple):
    kind: _Kind
    pair: str | None
    """What ties the row to its partner (a tool call's ``call_id``), if anything."""


class _Plan(NamedTuple):
    removed: list[int]
    """Positions of the rows to remove, oldest first."""
    removed_turns: int
    kept_unreadable: int


def check_keep_last_turns(keep_last_turns: object) -> int:
    """Return ``keep_last_turns`` if it is an ``int`` of at least 1 (``bool`` refused).

    Raises:
        TypeError: it is not an ``int``.
        ValueError: it is below 1 (the latest user message is never removed).
    """
    if isinstance(keep_last_turns, bool) or not isinstance(keep_last_turns, int):
        raise TypeError(
            f"keep_last_turns must be an int >= 1, got {type(keep_last_turns).__name__}"
        )
    if keep_last_turns < 1:
        raise ValueError(
            f"keep_last_turns must be >= 1 (the latest user message is never removed), "
            f"got {keep_last_turns}"
        )
    return keep_last_turns


def tool_pair(item: Mapping[str, Any]) -> str | None:
    """What ties an item to its other half, or None: a tool call's id, an MCP approval's id."""
    kind = item.get("type")
    if kind == "mcp_approval_request":
        return f"mcp:{item.get('id')}"
    if kind == "mcp_approval_response":
        return f"mcp:{item.get('approval_request_id')}"
    call_id = item.get("call_id")
    return f"call:{call_id}" if isinstance(call_id, str) else None


def _classify(codec: Codec, text: str) -> _Row:
    try:
        item: object = codec.decode(text)
    except SkipRow:  # sound but past its time: it goes with its turn
        return _Row(_Kind.EXPIRED, None)
    except (ValueError, TypeError, RecursionError):
        return _Row(_Kind.UNREADABLE, None)
    if not isinstance(item, Mapping):  # a codec of someone else's may return anything
        return _Row(_Kind.UNREADABLE, None)
    role = item.get("role")
    if is_user_message(cast("Any", item)):
        kind = _Kind.USER
    elif role in _KEPT_ROLES:
        kind = _Kind.KEPT_ROLE
    else:
        kind = _Kind.OTHER
    return _Row(kind, tool_pair(item))


async def _classify_all(codec: Codec, texts: Sequence[str]) -> list[_Row]:
    rows: list[_Row] = []
    for start in range(0, len(texts), _YIELD_EVERY):
        if start:
            await asyncio.sleep(0)  # a long history never holds the loop
        rows += [_classify(codec, text) for text in texts[start : start + _YIELD_EVERY]]
    return rows


def turn_cut(users: Sequence[bool], pairs: Sequence[str | None], keep_last_turns: int) -> int:
    """Where the newest ``keep_last_turns`` turns start, moved back past any split tool call.

    Args:
        users: Whether each item, oldest first, is a user message (where a turn begins).
        pairs: Each item's :func:`tool_pair`.
        keep_last_turns: How many turns to keep.

    Returns:
        The index of the first kept item; 0 when everything is kept. The turn holding the other
        half of a kept item's tool call is kept whole (or the preamble, before any turn).
    """
    starts = [i for i, user in enumerate(users) if user]
    if len(starts) <= keep_last_turns:
        return 0
    cut = starts[-keep_last_turns]
    while cut:
        kept = {pair for pair in pairs[cut:] if pair is not None}
        linked = next((i for i in range(cut) if pairs[i] in kept), None)
        if linked is None:
            return cut
        cut = max((start for start in starts if start <= linked), default=0)
    return cut


def _cut(rows: Sequence[_Row], keep_last_turns: int) -> int:
    """Where the kept part starts: the newest turns, moved back past any split tool call."""
    users = [row.kind is _Kind.USER for row in rows]
    return turn_cut(users, [row.pair for row in rows], keep_last_turns)


def _plan(rows: Sequence[_Row], keep_last_turns: int, keep_system: bool) -> _Plan:
    cut = _cut(rows, keep_last_turns)
    removed: list[int] = []
    unreadable = 0
    for i, row in enumerate(rows[:cut]):
        if row.kind is _Kind.UNREADABLE:
            unreadable += 1
        elif not (keep_system and row.kind is _Kind.KEPT_ROLE):
            removed.append(i)
    turns = sum(1 for row in rows[:cut] if row.kind is _Kind.USER)
    return _Plan(removed, turns, unreadable)


def _report(plan: _Plan, total: int, session_id: str, *, dry_run: bool) -> PruneReport:
    if plan.kept_unreadable:
        logger.warning(
            "prune kept %d undecodable row(s) of session %r in the part it pruned",
            plan.kept_unreadable,
            session_id,
        )
    return PruneReport(
        removed_items=len(plan.removed),
        removed_turns=plan.removed_turns,
        kept_items=total - len(plan.removed),
        kept_unreadable=plan.kept_unreadable,
        dry_run=dry_run,
    )


async def _settled(awaitable: Awaitable[T]) -> T:
    """Await a write to its end even if the caller is cancelled meanwhile, then re-raise."""
    result, cancelled = await run_to_completion(awaitable)
    if cancelled:
        raise asyncio.CancelledError
    return result


def _rows_are_history(store: Store) -> bool:
    """Whether ``store.rows`` lists exactly what ``store.read`` returns (no branch layout).

    The class that defines ``rows`` must define ``read`` too: a subclass that lays rows out in
    branches reads them differently, and its ``rows`` also holds what forks inherit.
    """
    owner = defining_class(type(store), "rows")
    return (
        isinstance(store, RowStore)
        and owner is not None
        and owner is defining_class(type(store), "read")
    )


async def prune_session(
    session: PrunableSession,
    *,
    keep_last_turns: int,
    keep_system: bool,
    dry_run: bool,
    archive: bool = False,
) -> PruneReport:
    """Remove a session's turns older than its newest ``keep_last_turns``, in one transaction.

    See the module docstring for what is kept; the latest user message never goes. A prune
    whose caller is cancelled leaves the old history or the pruned one. Counts are of the
    history as read just before the write; what concurrent writers add meanwhile is kept.

    Args:
        session: A ``StoreSession`` (core imports this module, so it is typed by what is used).
        keep_last_turns: How many of the newest turns to keep; at least 1.
        keep_system: Keep ``system`` and ``developer`` items of the pruned part.
        dry_run: Only report what would be removed.
        archive: Move the removed rows into the session's archive in the same transaction
            (batch kind ``"prune"``) instead of deleting them.

    Returns:
        What was removed, or with ``dry_run`` what would be.

    Raises:
        TypeError: ``keep_last_turns`` is not an int.
        ValueError: ``keep_last_turns`` is below 1.
        StorageError: the store can neither delete rows by id nor swap a history, ``archive``
            was asked of a store that keeps no archive (nothing is removed), or (with
            branches) writers kept changing the history.
    """
    keep = check_keep_last_turns(keep_last_turns)
    store = session.store
    if archive and not archives_own_rows(store):
        raise StorageError(
            f"prune(archive=True): {type(store).__name__} keeps no archive of its history; "
            "nothing was removed"
        )
    session_id = session.session_id
    codec = session._codec  # noqa: SLF001 - the session's own codec; core cannot be imported
    if _rows_are_history(store):
        row_store = cast(RowStore, store)
        found = await row_store.rows(session_id)
        plan = _plan(await _classify_all(codec, [t for _, t in found]), keep, keep_system)
        if plan.removed and not dry_run:
            changes = dict.fromkeys((found[i][0] for i in plan.removed), None)
            if archive and archives_own_rows(store):
                batch = ArchiveBatch("prune", [found[i][1] for i in plan.removed])
                await _settled(store.rewrite_archiving(session_id, changes, batch))
            else:
                await _settled(row_store.rewrite(session_id, changes))
        return _report(plan, len(found), session_id, dry_run=dry_run)
    if not swaps_own_rows(store):
        raise StorageError(f"{type(store).__name__} cannot prune a history in one transaction")
    swap_store = store  # narrowed to a SuffixStore by swaps_own_rows
    for _ in range(_SWAP_TRIES):
        found, _complete = await swap_store.tail(session_id, _EVERY_ROW)
        plan = _plan(await _classify_all(codec, [t for _, t in found]), keep, keep_system)
        if not plan.removed or dry_run:
            return _report(plan, len(found), session_id, dry_run=dry_run)
        gone = set(plan.removed)
        texts = [text for i, (_, text) in enumerate(found) if i not in gone]
        if archive and archives_own_rows(store):
            batch = ArchiveBatch("prune", [found[i][1] for i in plan.removed])
            swapped = await _settled(store.replace_tail_archiving(session_id, found, texts, batch))
        else:
            swapped = await _settled(swap_store.replace_tail(session_id, found, texts))
        if swapped:
            return _report(plan, len(found), session_id, dry_run=False)
    raise StorageError(
        f"prune on session {session_id!r}: the history kept changing ({_SWAP_TRIES} tries); "
        "nothing was removed"
    )

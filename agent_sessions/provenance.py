"""Who wrote each item: the run context a ``Runner`` passes, turned into per-row tags.

When every history method of a session accepts ``wrapper``, the SDK's ``Runner`` passes its
``RunContextWrapper`` to them. From it this module derives, for each row ``add_items`` stores:

- the **run id**: minted once per ``Runner.run`` call (kept on the run's wrapper, so a run
  resumed from its ``RunState`` in the same process keeps it), or the caller's own, stable
  across processes, given with :func:`as_run`;
- the **position**: the item's place among the run's items on that session (0, 1, ...);
- the **agent name**: the agent whose turn produced the item (the SDK's current agent span),
  None for the caller's input;
- a **digest** of the item, so that a retry (same run id, same positions, same items) stores
  nothing new while different items at a stored position are refused
  (:class:`~agent_sessions.errors.ProvenanceConflictError`).

Rows written without a wrapper (and outside :func:`as_run`) carry none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._lifecycle import run_to_completion
from .errors import ProvenanceConflictError
from .serialization import logger
from .store import MAX_LIMIT, ProvenanceStore, RowTag, StoredRecord

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = [
    "RunLedger",
    "SessionRecord",
    "as_run",
    "current_agent_name",
    "item_digests",
    "parse_time",
    "read_records",
    "run_ledger",
    "takes_wrapper",
    "write_tagged",
]

_MAX_RUN_ID = 255
_LEDGER_ATTRIBUTE = "_agent_sessions_run_ledger"


@dataclass
class RunLedger:
    """The positions one run has used on each session, and the batch held for a retry.

    Positions are reserved when a batch is offered, so concurrent writes of one run never share
    one. A batch whose ``add_items`` raised (cancelled, or the database failed with the outcome
    unknown) is held: offered again with the same items, it gets the same positions back (the
    store then keeps one copy); any other batch goes after it.

    Attributes:
        run_id: The run the rows belong to.
        agent_name: The agent to record when no agent span is current (None: look it up).
        minted: Whether ``run_id`` was minted here (no other process or attempt knows it).
    """

    run_id: str
    agent_name: str | None = None
    minted: bool = False
    _next: dict[str, int] = field(default_factory=dict)
    _held: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)

    def reserve(self, session_id: str, digests: Sequence[str]) -> tuple[int, bool]:
        """Return the first position for a batch of items with these digests, and its freshness.

        A batch is fresh when no attempt can have stored anything at its positions (a minted
        run's positions not handed out before), so a store may insert without looking first.
        """
        held = self._held.pop(session_id, None)
        if held is not None and held[1] == tuple(digests):
            return held[0], False
        start = self._next.get(session_id, 0)
        self._next[session_id] = start + len(digests)
        return start, self.minted

    def hold(self, session_id: str, start: int, digests: Sequence[str]) -> None:
        """Keep a batch's positions for its retry (its ``add_items`` did not return)."""
        self._held[session_id] = (start, tuple(digests))

    def skip_to(self, session_id: str, position: int) -> None:
        """Give later batches positions from ``position`` on (at least)."""
        self._next[session_id] = max(self._next.get(session_id, 0), position)

    def tags(
        self, session_id: str, digests: Sequence[str], agent_name: str | None
    ) -> tuple[list[RowTag], bool]:
        """Reserve positions for a batch: one tag per item, and whether they are fresh."""
        start, fresh = self.reserve(session_id, digests)
        run_id = self.run_id
        tags = [
            RowTag(agent_name, run_id, start + offset, digest)
            for offset, digest in enumerate(digests)
        ]
        return tags, fresh


_EXPLICIT: contextvars.ContextVar[RunLedger | None] = contextvars.ContextVar(
    "agent_sessions_run", default=None
)


@contextmanager
def as_run(run_id: str, *, agent_name: str | None = None) -> Iterator[RunLedger]:
    """Record writes inside the block under ``run_id``, stable across processes.

    Give a retried run the id of its first attempt (a job id, a request's idempotency key):
    the retry's items land at the same positions, and those already stored are not stored
    twice. Writes inside the block are tagged even without a ``wrapper`` (a direct
    ``add_items``); each block starts at position 0.

    Args:
        run_id: At most 255 characters; not empty.
        agent_name: Recorded for items no agent span claims (a direct ``add_items``).

    Example:
        >>> from agent_sessions import as_run
        >>> with as_run("job-42"):
        ...     pass  # await Runner.run(agent, text, session=session)

    Raises:
        TypeError: ``run_id`` is not a str.
        ValueError: it is empty or longer than 255 characters.
    """
    if not isinstance(run_id, str):
        raise TypeError(f"run_id must be a str, got {type(run_id).__name__}")
    if not run_id or len(run_id) > _MAX_RUN_ID:
        raise ValueError(f"run_id must be 1 to {_MAX_RUN_ID} characters, got {len(run_id)}")
    ledger = RunLedger(run_id, agent_name)
    token = _EXPLICIT.set(ledger)
    try:
        yield ledger
    finally:
        _EXPLICIT.reset(token)


def run_ledger(wrapper: Any) -> RunLedger | None:
    """The ledger writes go under: :func:`as_run`'s, else the wrapper's own (None: untagged)."""
    explicit = _EXPLICIT.get()
    if explicit is not None:
        return explicit
    if wrapper is None:
        return None
    ledger = getattr(wrapper, _LEDGER_ATTRIBUTE, None)
    if isinstance(ledger, RunLedger):
        return ledger
    ledger = RunLedger(f"run_{uuid.uuid4().hex}", minted=True)
    with contextlib.suppress(AttributeError, TypeError):  # else: a new run id per call
        setattr(wrapper, _LEDGER_ATTRIBUTE, ledger)
    return ledger


def current_agent_name(ledger: RunLedger) -> str | None:
    """The agent whose turn is running (the SDK's current agent span), else the ledger's."""
    try:
        from agents.tracing import get_current_span  # noqa: PLC0415 (only on tagged writes)
        from agents.tracing.span_data import AgentSpanData  # noqa: PLC0415
    except ImportError:  # pragma: no cover - an SDK without tracing
        return ledger.agent_name
    span = get_current_span()
    data = getattr(span, "span_data", None)
    if isinstance(data, AgentSpanData) and isinstance(data.name, str):
        return data.name[:_MAX_RUN_ID]
    return ledger.agent_name


def item_digests(texts: Sequence[str], key: bytes | None = None) -> list[str]:
    """Hex digests of items' plain JSON texts: SHA-256, or HMAC-SHA-256 under ``key``.

    Under encryption the key is secret, so a stored digest tells nothing about the item.
    """
    if key is None:
        return [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
    return [hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest() for text in texts]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One stored item with where it came from, as ``get_records`` returns it.

    Attributes:
        item: The item, exactly as ``get_items`` returns it.
        agent_name: The agent that produced it; None for the caller's input, and for rows
            written without a run context (or by the SDK's classes).
        run_id: The run that wrote it; None where not recorded.
        position: Its place among its run's items on this session; None where not recorded.
        created_at: When it was stored (UTC); None if the backend keeps no time for it.
    """

    item: TResponseInputItem
    agent_name: str | None
    run_id: str | None
    position: int | None
    created_at: datetime | None


def parse_time(value: str | None) -> datetime | None:
    """A stored time as an aware UTC datetime (naive stored times are UTC); None if unknown."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


async def read_records(
    read: Callable[[int | None], Awaitable[list[StoredRecord]]],
    decode: Callable[[str], TResponseInputItem | None],
    wanted: int | None,
) -> list[SessionRecord]:
    """Return the newest ``wanted`` decodable records (all if None), oldest first.

    The window widens past undecodable rows as ``get_items``'s does, so both return the same
    items for the same limit.

    Args:
        read: Returns the newest ``n`` stored records (all if None), oldest first.
        decode: One row's item, or None to leave the row out (it may raise when strict).
        wanted: How many records; None for all.
    """

    def convert(rows: list[StoredRecord]) -> list[SessionRecord]:
        records = []
        for row in rows:
            item = decode(row.text)
            if item is not None:
                records.append(
                    SessionRecord(
                        item, row.agent_name, row.run_id, row.position, parse_time(row.created_at)
                    )
                )
        return records

    if wanted == 0:
        return []
    if wanted is None:
        return convert(await read(None))
    window = wanted
    while True:
        rows = await read(window)
        records = convert(rows)
        if len(records) >= wanted or len(rows) < window:
            return records[-wanted:]
        window = min(window * 2, MAX_LIMIT)


def takes_wrapper(method: object) -> bool:
    """Whether a session method accepts ``wrapper=`` by keyword (the SDK's opt-in)."""
    try:
        parameter = inspect.signature(method).parameters.get("wrapper")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


_RELOCATIONS = 8
"""How often a batch is moved past its run's stored items before the write gives up."""


async def write_tagged(
    store: ProvenanceStore,
    session_id: str,
    texts: Sequence[str],
    tags: Sequence[RowTag],
    ledger: RunLedger,
    *,
    fresh: bool = False,
) -> int:
    """Append a tagged batch in one transaction; return how many rows were stored.

    Items their run stored before at the same positions are skipped. From the first position
    where the run stored a different item (a retry that went another way), the batch goes
    after the run's stored items instead, so nothing of either attempt is lost or doubled.
    If the caller is cancelled, the write still settles (whole or absent) and the batch is
    held for its retry, as when the database fails. ``fresh`` (see :meth:`RunLedger.reserve`)
    lets the store skip looking for stored rows of the run.
    """
    original = tags
    settled = False
    try:
        for _ in range(_RELOCATIONS):
            try:
                stored, cancelled = await run_to_completion(
                    store.append_tagged(session_id, texts, tags, fresh=fresh)
                )
            except ProvenanceConflictError as conflict:
                fresh = False
                tags = await _moved_past_run(store, session_id, tags, conflict)
                ledger.skip_to(session_id, tags[-1].position + 1)
                continue
            settled = not cancelled
            if cancelled:
                raise asyncio.CancelledError
            return stored
        raise ProvenanceConflictError(session_id, tags[0].run_id, tags[0].position)
    finally:
        if not settled:  # the caller may offer the batch again: the same positions then
            ledger.hold(session_id, original[0].position, [tag.digest for tag in original])


async def _moved_past_run(
    store: ProvenanceStore,
    session_id: str,
    tags: Sequence[RowTag],
    refused: ProvenanceConflictError,
) -> list[RowTag]:
    """The tags with every position from the conflict on moved after the run's stored rows."""
    run_id, conflict = tags[0].run_id, refused.position
    stored = [
        record.position
        for record in await store.records(session_id, None)
        if record.run_id == run_id and record.position is not None
    ]
    if refused.run_end is not None:  # the run's rows beyond those records show (branches)
        stored.append(refused.run_end - 1)
    after = max([*stored, *(tag.position for tag in tags)]) + 1
    logger.info(
        "session %r: run %r stored different items from position %d; the new ones go after "
        "its stored items, from position %d",
        session_id,
        run_id,
        conflict,
        after,
    )
    moved: list[RowTag] = []
    for tag in tags:
        if tag.position < conflict:
            moved.append(tag)
        else:
            moved.append(tag._replace(position=after))
            after += 1
    return moved

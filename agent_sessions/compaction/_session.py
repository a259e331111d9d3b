"""``CompactingSession``: a session that summarises its older turns when it grows too long."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeAlias, cast

from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.memory import Session, SessionABC
from agents.memory.session import OpenAIResponsesCompactionArgs
from agents.run_context import RunContextWrapper

from ..provenance import takes_wrapper
from ..serialization import logger
from ..store import MAX_LIMIT
from ._planning import (
    TokenCounter,
    check_keep_last_turns,
    cut_index,
    default_token_counter,
    estimate_tokens,
    transcript,
)

__all__ = [
    "DEFAULT_TOKEN_BUDGET",
    "SUMMARY_PREFIX",
    "SUMMARY_PROMPT",
    "CompactingSession",
    "Summarizer",
    "SummarizerFunction",
]

SummarizerFunction: TypeAlias = Callable[
    [list[TResponseInputItem]], Awaitable[list[TResponseInputItem]]
]
"""An async callable turning the items to summarise into the items that replace them."""

Summarizer: TypeAlias = Agent[Any] | SummarizerFunction
"""What summarises: an ``Agent`` on any model, or a :data:`SummarizerFunction`."""

DEFAULT_TOKEN_BUDGET = 8_000
"""The default trigger: compact once the stored history is estimated above this many tokens."""

SUMMARY_PROMPT = (
    "Summarise the conversation below for the assistant that continues it. Keep every fact, "
    "name, preference, decision, open question and tool result that may matter later; drop "
    "pleasantries. Answer with the summary only.\n\n"
)
"""What an ``Agent`` summariser is asked, followed by the transcript of the items."""

SUMMARY_PREFIX = "Summary of the earlier conversation: "
"""How an ``Agent`` summariser's answer is introduced in the summary item."""

_SNAPSHOT_LIMIT = MAX_LIMIT - 1
_SWAP_TRIES = 5


class CompactingSession(SessionABC):
    """Wrap a session so that its older turns are replaced by a summary when it grows too long.

    It is a session itself (every protocol call, and any other public attribute such as
    ``prune``, goes to ``underlying``) and implements the SDK's compaction-aware protocol,
    so ``Runner`` calls :meth:`run_compaction` after each turn it stores; :meth:`compact`
    compacts on demand. A compaction keeps the newest
    ``keep_last_turns`` turns verbatim and replaces everything before them by what the
    summariser returns. It cuts only at a user message, so a ``function_call`` never loses
    its ``function_call_output`` and the latest user message always stays.

    Over this package's sessions (and the SDK's own SQLite and SQLAlchemy sessions) the swap
    is one transaction that happens only if the history is still what was summarised: items
    appended meanwhile are kept after the summary; if the history was rewritten (another
    compaction won), nothing is written. Over any other ``Session`` it falls back to
    ``clear_session`` then ``add_items`` (re-adding the old items if that fails), which is
    not atomic: a crash in between, or a writer during the compaction, can lose items.

    Args:
        underlying: The session that stores the history.
        summarizer: An ``Agent`` (any model; its final output, as text, becomes one
            ``system`` item starting with :data:`SUMMARY_PREFIX`), or an async callable
            ``list[item] -> list[item]`` whose result replaces the summarised items.
        should_compact: Decides from the stored items whether to compact; by default, when
            their token estimate exceeds ``token_budget``.
        keep_last_turns: The newest turns kept verbatim; an ``int`` of at least 1.
        token_budget: The default trigger's threshold, in estimated tokens.
        run_config: The ``RunConfig`` an ``Agent`` summariser runs with.
        token_counter: Counts one text's tokens for the default trigger; by default
            ``tiktoken`` where installed, else characters / 4.

    Raises:
        TypeError: ``keep_last_turns`` is not an int, or ``summarizer`` is neither an
            ``Agent`` nor callable.
        ValueError: ``keep_last_turns`` is below 1, or ``token_budget`` is negative.

    Example:
        >>> from agents import Agent
        >>> from agent_sessions import SQLiteSession
        >>> from agent_sessions.compaction import CompactingSession
        >>> from agent_sessions.offline import OfflineModel
        >>> session = CompactingSession(
        ...     SQLiteSession("support-42"),
        ...     summarizer=Agent(name="summariser", model=OfflineModel()),
        ...     token_budget=4_000,
        ... )
    """

    def __init__(
        self,
        underlying: Session,
        *,
        summarizer: Summarizer,
        should_compact: Callable[[list[TResponseInputItem]], bool] | None = None,
        keep_last_turns: int = 2,
        token_budget: int = DEFAULT_TOKEN_BUDGET,
        run_config: RunConfig | None = None,
        token_counter: TokenCounter | None = None,
    ) -> None:
        if not isinstance(summarizer, Agent) and not callable(summarizer):
            raise TypeError(
                f"summarizer must be an Agent or an async callable, not {type(summarizer)!r}"
            )
        if isinstance(token_budget, bool) or not isinstance(token_budget, int):
            raise TypeError(f"token_budget must be an int, not {type(token_budget).__name__}")
        if token_budget < 0:
            raise ValueError(f"token_budget must not be negative, got {token_budget}")
        self.underlying_session = underlying
        self.session_id = underlying.session_id
        self.session_settings = getattr(underlying, "session_settings", None)
        self.summarizer = summarizer
        self.should_compact = should_compact
        self.keep_last_turns = check_keep_last_turns(keep_last_turns)
        self.token_budget = token_budget
        self.run_config = run_config
        self._token_counter = token_counter
        self._lock = asyncio.Lock()  # one compaction at a time through this wrapper

    def __getattr__(self, name: str) -> Any:
        """Return the underlying session's public attribute (``prune``, ``pop_turn``, ...).

        Private names are not passed on: the SDK looks for its hooks (``_defer_compaction``,
        ``_get_compaction_snapshot``) by name, and must not find the wrapped session's.
        """
        if name.startswith("_") or "underlying_session" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.underlying_session, name)

    # The session protocol, delegated.

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the underlying session's items (see ``Session.get_items``)."""
        return cast(list[TResponseInputItem], await self._pass("get_items", limit, wrapper=wrapper))

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Store items in the underlying session (see ``Session.add_items``).

        ``wrapper``, the ``Runner``'s run context, is passed on where the underlying session
        takes it, so each item records its agent and run there.
        """
        await self._pass("add_items", items, wrapper=wrapper)

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item of the underlying session."""
        return cast(TResponseInputItem | None, await self._pass("pop_item", wrapper=wrapper))

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Clear the underlying session."""
        await self._pass("clear_session", wrapper=wrapper)

    async def _pass(
        self, method: str, *args: Any, wrapper: RunContextWrapper[Any] | None = None
    ) -> Any:
        """Call an underlying protocol method, with ``wrapper`` if it takes one."""
        bound = getattr(self.underlying_session, method)
        if wrapper is not None and takes_wrapper(bound):
            return await bound(*args, wrapper=wrapper)
        return await bound(*args)

    async def archived_items(self) -> list[Any]:
        """The items earlier compactions replaced, oldest first (``StoreSession.archived_items``).

        Raises:
            TypeError: the underlying session keeps no archive (the SDK's sessions): their
                compactions replaced the items for good.
        """
        return cast(list[Any], await self._archive_method("archived_items")())

    async def uncompact(self) -> int:
        """Undo the newest compaction (``StoreSession.uncompact``); returns the items restored.

        Raises:
            TypeError: the underlying session keeps no archive (the SDK's sessions).
        """
        return int(await self._archive_method("uncompact")())

    def _archive_method(self, name: str) -> Callable[[], Awaitable[Any]]:
        method = getattr(self.underlying_session, name, None)
        if method is None:
            raise TypeError(
                f"CompactingSession.{name}(): {type(self.underlying_session).__name__} keeps no "
                "archive; compaction over it replaces the summarised items for good"
            )
        return cast(Callable[[], Awaitable[Any]], method)

    async def aclose(self) -> None:
        """Close the underlying session (its ``aclose`` or ``close``); idempotent if it is."""
        session = self.underlying_session
        closer = getattr(session, "aclose", None) or getattr(session, "close", None)
        if callable(closer):
            result = closer()
            if inspect.isawaitable(result):
                await result

    async def __aenter__(self) -> CompactingSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"CompactingSession({self.underlying_session!r}, "
            f"keep_last_turns={self.keep_last_turns}, token_budget={self.token_budget})"
        )

    # Compaction.

    async def run_compaction(self, args: OpenAIResponsesCompactionArgs | None = None) -> None:
        """The SDK's compaction hook, called by ``Runner`` after it stores a turn.

        Only ``args["force"]`` is used; the response id and mode concern OpenAI's server-side
        compaction, which this class does not need.
        """
        await self.compact(force=bool(args.get("force", False)) if args else False)

    async def compact(self, *, force: bool = False) -> bool:
        """Summarise the turns before the newest ``keep_last_turns``, if the trigger says so.

        Args:
            force: Compact whatever the trigger says (if there is anything to summarise).

        Returns:
            Whether the history was replaced. False when not triggered, when there are no
            more than ``keep_last_turns`` turns, when the history was rewritten meanwhile
            (another compaction won), or when one of this package's sessions holds a row
            that cannot be read (it would be deleted; a warning is logged).
        """
        async with self._lock:
            snapshot = await self._snapshot()
            if snapshot is None and _is_ours(self.underlying_session):
                logger.warning(
                    "session %r: not compacted, a stored row cannot be read or the session "
                    "cannot swap its rows in one transaction",
                    self.session_id,
                )
                return False
            items = (
                list(snapshot.items)
                if snapshot is not None
                else await self.underlying_session.get_items()
            )
            if not force and not self._triggered(items):
                return False
            cut = cut_index(items, self.keep_last_turns)
            if cut == 0:
                return False
            summary = await self._summarize(items[:cut])
            if snapshot is None:
                await self._replace_without_transaction(items, [*summary, *items[cut:]])
                return True
            return await self._swap(snapshot, items, summary, cut)

    def _triggered(self, items: list[TResponseInputItem]) -> bool:
        if self.should_compact is not None:
            return bool(self.should_compact(items))
        if self._token_counter is None:
            self._token_counter = default_token_counter()
        return estimate_tokens(items, self._token_counter) > self.token_budget

    async def _snapshot(self) -> Any:
        reader = getattr(self.underlying_session, "_get_compaction_snapshot", None)
        if reader is None:
            return None
        return await reader(_SNAPSHOT_LIMIT)

    async def _swap(
        self,
        snapshot: Any,
        items: list[TResponseInputItem],
        summary: list[TResponseInputItem],
        cut: int,
    ) -> bool:
        """Swap the read window for summary + kept items; keep what was appended meanwhile."""
        for _ in range(_SWAP_TRIES):
            # Our sessions archive the compacted prefix in the swap's transaction.
            archive = getattr(snapshot, "archive_prefix", None)
            output = [*summary, *items[cut:]]
            if archive is not None:
                if await archive(cut, output, len(summary)):
                    return True
            elif await snapshot.replace_suffix(0, output):
                return True
            fresh = await self._snapshot()
            if fresh is None:
                return False
            current = list(fresh.items)
            if current[: len(items)] != items:
                return False  # rewritten (another compaction, a pop): the summary is stale
            snapshot, items = fresh, current
        return False

    async def _replace_without_transaction(
        self, old: list[TResponseInputItem], new: list[TResponseInputItem]
    ) -> None:
        """Another package's session: its atomic hook if it has one, else clear then add."""
        session = self.underlying_session
        atomic = getattr(session, "_atomic_replace_items", None)
        if atomic is not None and await atomic(new):
            return
        await session.clear_session()
        try:
            await session.add_items(new)
        except BaseException:
            await session.add_items(old)  # best effort: put the history back
            raise

    async def _summarize(self, head: list[TResponseInputItem]) -> list[TResponseInputItem]:
        summarizer = self.summarizer
        if isinstance(summarizer, Agent):
            text = SUMMARY_PROMPT + transcript(head)
            prompt = cast(TResponseInputItem, {"role": "user", "content": text})
            result = await Runner.run(summarizer, [prompt], run_config=self.run_config)
            text = str(result.final_output)
            return [cast(TResponseInputItem, {"role": "system", "content": SUMMARY_PREFIX + text})]
        produced: object = await summarizer(list(head))
        if not isinstance(produced, list):
            raise TypeError(
                f"the summarizer must return a list of items, not {type(produced).__name__}"
            )
        return cast(list[TResponseInputItem], produced)


def _is_ours(session: Session) -> bool:
    """Whether ``session`` is one of this package's (whose rows must never be cleared)."""
    return type(session).__module__.startswith("agent_sessions.") and hasattr(
        session, "replace_items"
    )

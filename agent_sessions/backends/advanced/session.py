"""The public methods of every advanced session (branches, turns, usage), written once.

:class:`AdvancedSession` is the part of ``AdvancedSQLiteSession`` and
``AdvancedSQLAlchemySession`` that does not depend on the database: each class gives it a store
with :class:`~agent_sessions.backends.advanced.ops.BranchOps` and a logger.
"""

from __future__ import annotations

import logging
import re
from typing import Any, overload

from agents.items import TResponseInputItem
from agents.result import RunResult, RunResultStreaming
from agents.run_context import RunContextWrapper

from ...core import StoreSession, read_items, resolve_limit
from ...errors import CorruptItemError
from .chain import UserRow
from .ops import BranchOps
from .sql import check_branch_id, content_preview, user_content, user_texts
from .types import (
    BranchInfo,
    ConversationTurn,
    HistoryEntry,
    ItemKind,
    NoTurnUsage,
    SessionUsage,
    ToolUsage,
    TurnUsage,
)
from .usage import session_totals, turn_dicts, usage_row

__all__ = ["AdvancedSession"]

_PREVIEW = 100


class AdvancedSession(StoreSession):
    """Branches, turn queries, token usage and time travel over an advanced store.

    See the subclasses, ``AdvancedSQLiteSession`` and ``AdvancedSQLAlchemySession``, for how
    to open one; docs/time-travel.md for :meth:`history`, :meth:`fork` and :meth:`rewind`.
    """

    _advanced: BranchOps
    _logger: logging.Logger

    async def get_items(
        self,
        limit: int | None = None,
        branch_id: str | None = None,
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> list[TResponseInputItem]:
        """Return a branch's items, oldest first.

        Args:
            limit: Return only the newest ``limit`` items (still oldest first). None means
                ``session_settings.limit``, and if that is None too, every item.
            branch_id: The branch to read; the current branch if None.
            wrapper: The run context the SDK's ``Runner`` passes; not needed to read.

        Returns:
            Fresh item dicts; changing them does not change what is stored.

        Raises:
            InvalidLimitError: ``limit`` is negative or not an int.
            TypeError: ``branch_id`` is not a string.
            ValueError: the branch does not exist.
            CorruptItemError: a stored row is undecodable and the session is strict.
        """
        if branch_id is None:
            return await super().get_items(limit)
        self._check_open("get_items")
        check_branch_id(branch_id)
        wanted = resolve_limit(limit, self.session_settings)
        return await read_items(
            lambda n: self._advanced.read_branch(self.session_id, branch_id, n),
            self._decode,
            wanted,
        )

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Clear the current branch; on ``main``, delete the whole session with every branch.

        On another branch, its own items and usage are deleted and it stops inheriting, so it
        is left empty while ``main`` and the other branches (its forks included) keep theirs.
        ``wrapper`` (the ``Runner``'s run context) is accepted and not needed.
        """
        await super().clear_session()

    # Branches ------------------------------------------------------------------------------

    async def current_branch(self) -> str:
        """Return the id of the branch reads and writes go to (shared by every object)."""
        self._check_open("current_branch")
        return await self._advanced.current_branch(self.session_id)

    async def create_branch_from_turn(
        self, turn_number: int, branch_name: str | None = None
    ) -> str:
        """Fork the current branch just before a user turn, and switch to the fork.

        The fork holds everything before that turn's user message; nothing is copied.

        Args:
            turn_number: The 1-based number of the user message to branch from (the SDK's
                name for it).
            branch_name: Any non-blank string, stored as given (as the SDK accepts); one
                used before in the session, even by a deleted branch, is refused. Generated
                if None.

        Returns:
            The new branch's id.

        Raises:
            ValueError: the turn does not exist, or the name is blank or was used.
            TypeError: the name is not a string.
        """
        self._check_open("create_branch_from_turn")
        branch = await self._advanced.create_branch(self.session_id, turn_number, branch_name)
        self._logger.debug(
            "session %r: created branch %r from turn %d and switched to it",
            self.session_id,
            branch,
            turn_number,
        )
        return branch

    async def create_branch_from_content(
        self, search_term: str, branch_name: str | None = None
    ) -> str:
        """Fork before the first user turn whose text contains ``search_term``, and switch.

        Args:
            search_term: Text to look for, case-insensitively.
            branch_name: As for :meth:`create_branch_from_turn`.

        Returns:
            The new branch's id.

        Raises:
            ValueError: no user turn contains the term, or the name is invalid or used.
        """
        self._check_open("create_branch_from_content")
        found = await self.find_turns_by_content(search_term)
        if not found:
            raise ValueError(f"no user turn contains {search_term!r}")
        return await self.create_branch_from_turn(int(found[0]["turn"]), branch_name)

    async def switch_to_branch(self, branch_id: str) -> None:
        """Make ``branch_id`` the current branch of this session, for every object.

        Raises:
            TypeError: ``branch_id`` is not a string (None included).
            ValueError: the branch does not exist.
        """
        self._check_open("switch_to_branch")
        check_branch_id(branch_id)
        await self._advanced.switch(self.session_id, branch_id)
        self._logger.debug("session %r: switched to branch %r", self.session_id, branch_id)

    async def delete_branch(self, branch_id: str, force: bool = False) -> None:
        """Delete a branch with its own items and usage; its id stays reserved.

        Branches made from it keep what they show: they move to its parent, with their own
        records of the rows they saw of it.

        Args:
            branch_id: The branch to delete.
            force: Allow deleting the current branch; the session switches to ``main``.

        Raises:
            TypeError: ``branch_id`` is not a string.
            ValueError: the branch is blank, ``main``, unknown, or current without force.
        """
        self._check_open("delete_branch")
        check_branch_id(branch_id)
        if not branch_id.strip():
            raise ValueError("branch_id cannot be empty or blank")
        await self._advanced.delete_branch(self.session_id, branch_id, force=force)
        self._logger.debug("session %r: deleted branch %r", self.session_id, branch_id)

    async def list_branches(self) -> list[BranchInfo]:
        """List the session's branches.

        Returns:
            One dict per branch, ``main`` first then in creation order: ``branch_id``,
            ``message_count`` and ``user_turns`` (of its visible history), ``created_at`` and
            ``is_current`` (see :class:`~agent_sessions.backends.advanced.types.BranchInfo`).
        """
        self._check_open("list_branches")
        return await self._advanced.list_branches(self.session_id)

    # Turns ---------------------------------------------------------------------------------

    def _turn_dict(self, row: UserRow, preview: int | None = _PREVIEW) -> ConversationTurn | None:
        """Return a user turn in the SDK's shape; None (warned, or raised if strict) if corrupt.

        Raises:
            CorruptItemError: the row cannot be decoded and the session is strict.
        """
        try:
            item = self._codec.decode(row.text)
        except (ValueError, TypeError, RecursionError) as exc:
            if self.strict:
                raise CorruptItemError(self.session_id, str(exc)) from exc
            self._logger.warning(
                "skipping undecodable user turn %d (row %d) of session %r: %s",
                row.turn,
                row.id,
                self.session_id,
                exc,
            )
            return None
        content = user_content(item)
        return {
            "turn": row.turn,
            "content": content_preview(content, preview),
            "full_content": content,
            "timestamp": row.created_at,
            "can_branch": True,
        }

    async def get_conversation_turns(self, branch_id: str | None = None) -> list[ConversationTurn]:
        """Return the user turns of a branch, for choosing where to branch.

        Only the branch's user messages are read and decoded. A user message that cannot be
        decoded is left out with a warning on the session's logger (or raises in strict mode);
        the turns after it keep their numbers.

        Args:
            branch_id: The branch to read (the current one if None).

        Returns:
            One dict per user message: ``turn`` (1-based), ``content`` (a string preview: the
            text, or a list of parts as JSON, cut at 100 characters with ``...``),
            ``full_content`` (the message's content as stored: a string or a list of parts),
            ``timestamp`` and ``can_branch`` (always True), as the SDK returns them.

        Raises:
            ValueError: the branch does not exist.
            CorruptItemError: a user message cannot be decoded and the session is strict.
        """
        self._check_open("get_conversation_turns")
        rows = await self._advanced.user_turns(self.session_id, branch_id)
        return [turn for turn in map(self._turn_dict, rows) if turn is not None]

    async def _user_turns(
        self, branch_id: str | None, preview: int | None
    ) -> list[tuple[UserRow, ConversationTurn]]:
        rows = await self._advanced.user_turns(self.session_id, branch_id)
        found = [(row, self._turn_dict(row, preview)) for row in rows]
        return [(row, turn) for row, turn in found if turn is not None]

    async def find_turns_by_content(
        self, search_term: str, branch_id: str | None = None
    ) -> list[ConversationTurn]:
        """Return the user turns whose text contains ``search_term``.

        As in the SDK, the term is literal text (no wildcards), letters match regardless of
        case only within ASCII (``"é"`` does not find ``"É"``), and each text part of a
        message is searched on its own.

        Args:
            search_term: Text to look for.
            branch_id: The branch to search (the current one if None).

        Returns:
            Matching turns, in the shape of :meth:`get_conversation_turns`, but with the
            whole content in ``content`` (not cut), as the SDK returns them.

        Raises:
            ValueError: the branch does not exist.
            CorruptItemError: a user message cannot be decoded and the session is strict.
        """
        self._check_open("find_turns_by_content")
        pattern = re.compile(re.escape(search_term), re.IGNORECASE | re.ASCII)
        return [
            turn
            for row, turn in await self._user_turns(branch_id, None)
            if any(pattern.search(text) for text in user_texts(self._codec.decode(row.text)))
        ]

    async def get_conversation_by_turns(
        self, branch_id: str | None = None
    ) -> dict[int, list[ItemKind]]:
        """Return a branch's items grouped by user turn, as their type and tool name.

        Args:
            branch_id: The branch to read (the current one if None).

        Returns:
            ``{turn: [{"type": item_type, "tool_name": tool_name}, ...]}``; items before the
            first user message are under turn 0.

        Raises:
            ValueError: the branch does not exist.
        """
        self._check_open("get_conversation_by_turns")
        grouped: dict[int, list[ItemKind]] = {}
        for turn, kind, tool in await self._advanced.item_kinds(self.session_id, branch_id):
            grouped.setdefault(turn, []).append({"type": kind, "tool_name": tool})
        return grouped

    async def get_tool_usage(self, branch_id: str | None = None) -> list[ToolUsage]:
        """Return how often each tool was called, per user turn.

        Args:
            branch_id: The branch to read (the current one if None).

        Returns:
            ``(tool_name, call_count, turn_number)`` tuples (:class:`ToolUsage`, a named
            tuple), ordered by turn then tool name.

        Raises:
            ValueError: the branch does not exist.
        """
        self._check_open("get_tool_usage")
        counts = await self._advanced.tool_counts(self.session_id, branch_id)
        return [ToolUsage(tool, n, turn) for (turn, tool), n in sorted(counts.items())]

    # Usage ---------------------------------------------------------------------------------

    async def store_run_usage(self, result: RunResult | RunResultStreaming) -> None:
        """Record a run's token usage against the current branch and its current user turn.

        Call it after ``Runner.run()``; a second call for the same turn replaces the first.
        On a branch that has no user turn yet nothing is recorded, as in the SDK.

        Args:
            result: The run's result; its ``context_wrapper.usage`` is recorded.
        """
        self._check_open("store_run_usage")
        await self._advanced.put_usage(self.session_id, usage_row(result.context_wrapper.usage))

    async def get_session_usage(self, branch_id: str | None = None) -> SessionUsage | None:
        """Return usage summed over one branch, or over all branches if None.

        Returns:
            ``requests``, ``input_tokens``, ``output_tokens``, ``total_tokens`` and
            ``total_turns`` (:class:`SessionUsage`); None if no usage was recorded.
        """
        self._check_open("get_session_usage")
        return session_totals(await self._advanced.session_usage(self.session_id, branch_id))

    @overload
    async def get_turn_usage(
        self, user_turn_number: None = None, branch_id: str | None = None
    ) -> list[TurnUsage]: ...

    @overload
    async def get_turn_usage(
        self, user_turn_number: int, branch_id: str | None = None
    ) -> TurnUsage | NoTurnUsage: ...

    async def get_turn_usage(
        self, user_turn_number: int | None = None, branch_id: str | None = None
    ) -> list[TurnUsage] | TurnUsage | NoTurnUsage:
        """Return usage by user turn, with the token details parsed.

        Args:
            user_turn_number: One turn to return (a dict, empty if none recorded); all if None.
            branch_id: The branch to read (the current one if None).

        Returns:
            One :class:`TurnUsage` dict of ``requests``, ``input_tokens``, ``output_tokens``,
            ``total_tokens``, ``input_tokens_details`` and ``output_tokens_details`` (``{}``,
            :class:`NoTurnUsage`, if that turn has none); for all turns, a list of such dicts
            that also carry ``user_turn_number``.

        Raises:
            ValueError: the branch does not exist.
        """
        self._check_open("get_turn_usage")
        listed = turn_dicts(await self._advanced.turn_usage(self.session_id, branch_id))
        if user_turn_number is None:
            return listed
        for entry in listed:
            if entry["user_turn_number"] == user_turn_number:
                del entry["user_turn_number"]
                return entry
        return {}

    # Time travel ---------------------------------------------------------------------------

    async def history(self, branch_id: str | None = None) -> list[HistoryEntry]:
        """Return the turns of a branch, oldest first: LangGraph's ``get_state_history``.

        Read in one snapshot, in a number of statements that grows with the branch's chain of
        parents, not with its length. A user message that cannot be decoded is left out with a
        warning (or raises in strict mode), as in :meth:`get_conversation_turns`; the turns
        after it keep their numbers. Items before the first user message belong to no turn.

        Args:
            branch_id: The branch to read (the current one if None).

        Returns:
            One :class:`HistoryEntry` per user turn: ``turn``, ``branch_id`` (the branch that
            holds the user message: an inherited turn names its ancestor), ``preview``,
            ``created_at``, ``items`` (the turn's item count) and ``usage`` (the turn's
            :class:`TurnUsage` recorded on the branch read, or None).

        Raises:
            ValueError: the branch does not exist.
            CorruptItemError: a user message cannot be decoded and the session is strict.

        Example:
            >>> async def show(session: AdvancedSession) -> None:
            ...     for entry in await session.history():
            ...         print(entry["turn"], entry["branch_id"], entry["preview"])
        """
        self._check_open("history")
        found = await self._advanced.history(self.session_id, branch_id)
        usage = {entry["user_turn_number"]: entry for entry in turn_dicts(found.usage)}
        entries: list[HistoryEntry] = []
        for row in found.users:
            turn = self._turn_dict(row)
            if turn is None:
                continue
            entries.append(
                {
                    "turn": row.turn,
                    "branch_id": row.branch_id,
                    "preview": turn["content"],
                    "created_at": row.created_at,
                    "items": found.items.get(row.turn, 0),
                    "usage": usage.get(row.turn),
                }
            )
        return entries

    async def fork(self, *, turn: int, name: str | None = None) -> str:
        """Branch off just before a user turn and switch to the branch: LangGraph's fork.

        The same as :meth:`create_branch_from_turn`, by keyword: the branch holds every turn
        before ``turn`` (inherited, nothing is copied), the current branch keeps all of its
        own, and new items go to the branch.

        Args:
            turn: The 1-based turn (as :meth:`history` numbers it) the branch ends before.
            name: The branch's id: any non-blank string never used in the session before.
                Generated if None.

        Returns:
            The new branch's id, now the current branch.

        Raises:
            ValueError: the turn does not exist, or the name is blank or was used.
            TypeError: the name is not a string.

        Example:
            >>> async def retry(session: AdvancedSession) -> None:
            ...     await session.fork(turn=2, name="retry")
            ...     await session.add_items([{"role": "user", "content": "Try again"}])
        """
        self._check_open("fork")
        return await self.create_branch_from_turn(turn, name)

    async def rewind(self, *, turn: int, keep_as: str | None = None) -> str:
        """Move the current branch back to just before a user turn, keeping what it drops.

        In one transaction, a new branch (``keep_as``) is made that keeps the current
        branch's whole history, then the current branch gives up ``turn`` and every later
        turn. The current branch stays current, so the next run continues from before
        ``turn``; the dropped turns stay readable on the keeper (``get_items(branch_id=...)``,
        ``switch_to_branch``) until it is deleted. Nothing is copied but the records of the
        dropped items, and the usage recorded for the dropped turns moves to the keeper, so
        the session's totals count it once. Forks of the current branch keep what they show.

        Args:
            turn: The 1-based turn (as :meth:`history` numbers it) to go back to before.
            keep_as: The keeper's id: any non-blank string never used in the session before.
                Generated (``kept_from_turn_<turn>_<hex>``) if None.

        Returns:
            The keeper's id.

        Raises:
            ValueError: the turn does not exist, or the name is blank or was used; nothing
                has changed then.
            TypeError: the name is not a string.

        Example:
            >>> async def undo_last(session: AdvancedSession) -> None:
            ...     last = (await session.history())[-1]["turn"]
            ...     kept = await session.rewind(turn=last)
            ...     assert len(await session.history(kept)) == last
        """
        self._check_open("rewind")
        kept = await self._advanced.rewind(self.session_id, turn, keep_as)
        self._logger.debug(
            "session %r: rewound to before turn %d, the rest kept on branch %r",
            self.session_id,
            turn,
            kept,
        )
        return kept

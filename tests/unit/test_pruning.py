"""Pruning in place: which rows a prune removes, how it writes, and what it reports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from agents.memory import SQLiteSession as SDKSQLiteSession
from cryptography.fernet import Fernet

from agent_sessions import EncryptedSession
from agent_sessions.core import StoreSession
from agent_sessions.errors import SessionClosedError, StorageError
from agent_sessions.pruning import PruneReport, prune_session
from agent_sessions.serialization import JsonCodec, SkipRow
from agent_sessions.testing import DictStore

KEY = "0Hm8qTq2JZrP1mV4yWvGmW7bQm3bX9cKpQ0t2aXc1uE="
OTHER_KEY = Fernet.generate_key().decode()


def user(text: str) -> Any:
    """A user message: where a turn begins."""
    return {"role": "user", "content": text}


def said(text: str, role: str = "assistant") -> Any:
    """A message of another role."""
    return {"role": role, "content": text}


def call(call_id: str) -> Any:
    """A function call."""
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> Any:
    """The output of the function call ``call_id``."""
    return {"type": "function_call_output", "call_id": call_id, "output": "ok"}


def turn(n: int) -> list[Any]:
    """Turn ``n``: a question, a tool call and its output, an answer."""
    return [user(f"q{n}"), call(f"c{n}"), output(f"c{n}"), said(f"a{n}")]


def turns(first: int, last: int) -> list[Any]:
    """Turns ``first`` to ``last - 1``."""
    return [item for n in range(first, last) for item in turn(n)]


def session_on(store: DictStore | None = None, **kwargs: Any) -> StoreSession:
    """A session on a dict store (its own one by default)."""
    return StoreSession("s", store or DictStore(), owns_store=store is None, **kwargs)


async def pruned(history: list[Any], keep: int, **kwargs: Any) -> tuple[list[Any], PruneReport]:
    """Prune a fresh session holding ``history``; return what is left and the report."""
    session = session_on()
    await session.add_items(history)
    report = await session.prune(keep_last_turns=keep, **kwargs)
    return list(await session.get_items()), report


# --- which rows go ----------------------------------------------------------------------------


async def test_keeps_the_newest_turns_whole() -> None:
    """The newest N turns stay as they were; every older turn goes."""
    left, report = await pruned(turns(0, 6), 2)
    assert left == turns(4, 6)
    assert report == PruneReport(removed_items=16, removed_turns=4, kept_items=8)


async def test_keep_one_keeps_the_latest_user_message_alone() -> None:
    """A last turn that is only a user message is what keep_last_turns=1 keeps."""
    left, report = await pruned([*turns(0, 2), user("now")], 1)
    assert left == [user("now")]
    assert report.removed_turns == 2


async def test_the_preamble_goes_with_the_oldest_turn() -> None:
    """Items before the first user message go once any turn goes, system ones excepted."""
    preamble = [said("rules", "system"), said("welcome"), call("c_pre"), output("c_pre")]
    left, report = await pruned([*preamble, *turns(0, 3)], 2)
    assert left == [said("rules", "system"), *turns(1, 3)]
    assert (report.removed_items, report.removed_turns) == (7, 1)


async def test_the_preamble_stays_while_no_turn_goes() -> None:
    """With no more turns than kept, the preamble stays too: nothing is removed."""
    history = [said("welcome"), *turns(0, 2)]
    left, report = await pruned(history, 2)
    assert left == history
    assert report == PruneReport(removed_items=0, removed_turns=0, kept_items=9)


async def test_a_history_without_user_messages_is_left_alone() -> None:
    """No user message means no turn, so nothing is old enough to remove."""
    history = [said("rules", "system"), said("welcome"), call("c"), output("c")]
    left, report = await pruned(history, 1)
    assert left == history
    assert report.removed_items == 0


async def test_system_and_developer_items_stay_where_they_were() -> None:
    """keep_system keeps system and developer items of pruned turns, in their order."""
    history = [*turn(0)[:2], said("be brief", "developer"), *turn(0)[2:], *turns(1, 3)]
    history.insert(5, said("new rules", "system"))
    left, _ = await pruned(history, 1)
    assert left == [said("be brief", "developer"), said("new rules", "system"), *turn(2)]


async def test_keep_system_false_removes_them_from_pruned_turns_only() -> None:
    """Without keep_system, old system items go; one inside a kept turn stays."""
    history = [said("rules", "system"), *turns(0, 2), said("later rules", "developer")]
    left, report = await pruned(history, 1, keep_system=False)
    assert left == [*turn(1), said("later rules", "developer")]
    assert report.removed_items == 5


async def test_an_output_stored_after_the_next_user_message_keeps_its_call() -> None:
    """A kept function_call_output whose call is in an older turn keeps that turn whole."""
    history = [*turn(0), user("q1"), call("late"), user("q2"), output("late"), *turns(3, 5)]
    left, report = await pruned(history, 3)
    assert left == history[4:]
    assert (report.removed_items, report.removed_turns) == (4, 1)


async def test_links_are_followed_back_turn_by_turn() -> None:
    """A pulled-back turn whose own output points further back pulls that turn in too."""
    history = [
        user("q0"),
        user("q1"),
        call("one"),
        user("q2"),
        output("one"),
        call("two"),
        user("q3"),
        output("two"),
        user("q4"),
    ]
    left, report = await pruned(history, 2)
    assert left == history[1:]
    assert report.removed_turns == 1


async def test_a_call_in_the_preamble_keeps_everything() -> None:
    """A kept output whose call came before the first user message keeps the whole history."""
    history = [call("early"), *turns(0, 2), user("q2"), output("early")]
    left, report = await pruned(history, 1)
    assert left == history
    assert report.removed_items == 0


async def test_mcp_approvals_stay_with_their_requests() -> None:
    """An MCP approval response keeps the turn of the request it answers."""
    request = {"type": "mcp_approval_request", "id": "ap1", "name": "t", "server_label": "s"}
    response = {"type": "mcp_approval_response", "approval_request_id": "ap1", "approve": True}
    history = [*turn(0), user("q1"), request, user("q2"), response, *turn(3)]
    left, _ = await pruned(history, 2)
    assert left == history[4:]


async def test_a_pair_wholly_inside_pruned_turns_goes() -> None:
    """A call and its output both in old turns go together, even across a user message."""
    history = [user("q0"), call("old"), user("q1"), output("old"), *turns(2, 4)]
    left, report = await pruned(history, 2)
    assert left == turns(2, 4)
    assert report.removed_turns == 2


# --- rows that cannot be read -----------------------------------------------------------------


async def test_undecodable_rows_stay_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A corrupt row in a pruned turn stays stored, is reported, and a warning is logged."""
    store = DictStore()
    session = session_on(store)
    await session.add_items(turns(0, 1))
    store.write_raw("s", "{not json")
    await session.add_items(turns(1, 3))
    store.write_raw("s", "<garbage>")
    with caplog.at_level(logging.WARNING, logger="agent_sessions"):
        report = await session.prune(keep_last_turns=1)
    assert report == PruneReport(
        removed_items=8, removed_turns=2, kept_items=6, kept_unreadable=1, dry_run=False
    )
    assert (await store.rows("s"))[0][1] == "{not json"
    assert store.count_rows("s") == 6
    assert "kept 1 undecodable row(s)" in caplog.text


async def test_a_strict_session_prunes_around_corrupt_rows() -> None:
    """A strict session (strict is about reads) keeps an undecodable row rather than raising."""
    store = DictStore()
    session = session_on(store, strict=True)
    await session.add_items(turn(0))
    store.write_raw("s", "{not json")
    await session.add_items(turns(1, 3))
    report = await session.prune(keep_last_turns=1)
    assert (report.removed_items, report.kept_unreadable) == (8, 1)


class ExpiringCodec(JsonCodec):
    """JSON, except that rows starting with ``expired:`` are sound but not to be shown."""

    def decode(self, text: str) -> Any:
        """Refuse expired rows the way the encrypting codec does."""
        if text.startswith("expired:"):
            raise SkipRow("expired")
        return super().decode(text)


async def test_expired_rows_go_with_the_turn_they_lie_in() -> None:
    """Expired rows are not unreadable: they go with their turn and start none themselves."""
    store = DictStore()
    session = session_on(store, codec=ExpiringCodec())
    store.write_raw("s", "expired:before-q0")
    await session.add_items(turn(0))
    store.write_raw("s", "expired:in-turn-0")
    await session.add_items(turn(1))
    store.write_raw("s", "expired:in-turn-1")
    await session.add_items(turn(2))
    report = await session.prune(keep_last_turns=2)
    expired = [text for _, text in await store.rows("s") if text.startswith("expired:")]
    assert expired == ["expired:in-turn-1"]
    assert (report.removed_items, report.removed_turns, report.kept_unreadable) == (6, 1, 0)


async def test_a_codec_returning_a_non_object_makes_the_row_unreadable() -> None:
    """A row a foreign codec decodes to something other than an item is kept as unreadable."""

    class ListCodec(JsonCodec):
        def decode(self, text: str) -> Any:
            return [] if text == "odd" else super().decode(text)

    store = DictStore()
    session = session_on(store, codec=ListCodec())
    await session.add_items(turn(0))
    store.write_raw("s", "odd")
    await session.add_items(turn(1))
    report = await session.prune(keep_last_turns=1)
    assert (report.removed_items, report.kept_unreadable) == (4, 1)


# --- how it writes ----------------------------------------------------------------------------


async def test_plain_stores_delete_by_id_and_keep_the_rest() -> None:
    """Kept rows keep their ids (and so their places and times); only removed ids go."""
    store = DictStore()
    session = session_on(store)
    await session.add_items(turns(0, 3))
    before = await store.rows("s")
    await session.prune(keep_last_turns=1)
    assert await store.rows("s") == before[8:]


async def test_dry_run_reports_and_writes_nothing() -> None:
    """dry_run returns the same counts as the prune would, with dry_run set, and no change."""
    store = DictStore()
    session = session_on(store)
    await session.add_items(turns(0, 3))
    before = await store.rows("s")
    report = await session.prune(keep_last_turns=2, dry_run=True)
    assert report == PruneReport(removed_items=4, removed_turns=1, kept_items=8, dry_run=True)
    assert await store.rows("s") == before


async def test_a_long_history_is_pruned_in_one_rewrite() -> None:
    """Twelve thousand rows (classified in chunks) are pruned by one rewrite call."""
    store = DictStore()
    calls: list[int] = []
    rewrite = store.rewrite

    async def counted(session_id: str, changes: Any) -> int:
        calls.append(len(changes))
        return await rewrite(session_id, changes)

    store.rewrite = counted  # type: ignore[method-assign]
    session = session_on(store)
    await session.add_items(turns(0, 3000))
    report = await session.prune(keep_last_turns=10)
    assert calls == [11960]
    assert report.kept_items == 40
    assert await session.get_items() == turns(2990, 3000)


async def test_a_prune_cancelled_during_its_write_finishes_it() -> None:
    """Cancelled while the rewrite runs, the prune completes it and then raises CancelledError."""
    store = DictStore()
    started = asyncio.Event()
    rewrite = store.rewrite

    async def slow(session_id: str, changes: Any) -> int:
        started.set()
        await asyncio.sleep(0.01)
        return await rewrite(session_id, changes)

    store.rewrite = slow  # type: ignore[method-assign]
    session = session_on(store)
    await session.add_items(turns(0, 3))
    task = asyncio.ensure_future(session.prune(keep_last_turns=1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await session.get_items() == turn(2)


class BranchLikeStore(DictStore):
    """A store whose reads follow a layout of its own, so ``rows`` is not the history."""

    def __init__(self) -> None:
        super().__init__()
        self.swaps = 0
        self.refuse = 0

    async def read(self, session_id: str, limit: int | None) -> list[str]:
        """The same rows (a real branch store would follow the current branch)."""
        return await super().read(session_id, limit)

    async def tail(self, session_id: str, limit: int) -> tuple[list[tuple[int, str]], bool]:
        """The newest rows, as the current branch shows them."""
        return await super().tail(session_id, limit)

    async def replace_tail(
        self, session_id: str, expected: Sequence[tuple[int, str]], texts: Sequence[str]
    ) -> bool:
        """Swap the tail, or refuse as if a writer had changed it (``refuse`` times)."""
        self.swaps += 1
        if self.refuse:
            self.refuse -= 1
            return False
        return await super().replace_tail(session_id, expected, texts)


async def test_a_branch_layout_swaps_the_visible_history() -> None:
    """Where rows() is not the history, the kept items are stored again by one swap."""
    store = BranchLikeStore()
    session = session_on(store)
    await session.add_items([said("rules", "system"), *turns(0, 3)])
    before = await store.rows("s")
    report = await session.prune(keep_last_turns=1)
    after = await store.rows("s")
    assert [text for _, text in after] == [before[0][1], *(text for _, text in before[9:])]
    assert not {row_id for row_id, _ in after} & {row_id for row_id, _ in before}
    assert (store.swaps, report.removed_items) == (1, 8)


async def test_a_branch_swap_is_retried_when_the_history_changed() -> None:
    """A swap refused because a writer got in first is planned again and retried."""
    store = BranchLikeStore()
    store.refuse = 3
    session = session_on(store)
    await session.add_items(turns(0, 3))
    await session.prune(keep_last_turns=1)
    assert store.swaps == 4
    assert await session.get_items() == turn(2)


async def test_a_branch_swap_gives_up_after_many_changes() -> None:
    """A history that keeps changing ends in StorageError with nothing removed."""
    store = BranchLikeStore()
    store.refuse = 1000
    session = session_on(store)
    await session.add_items(turns(0, 3))
    with pytest.raises(StorageError, match="kept changing"):
        await session.prune(keep_last_turns=1)
    assert await session.get_items() == turns(0, 3)


async def test_a_dry_run_on_a_branch_layout_swaps_nothing() -> None:
    """dry_run reads the branch's history and never swaps it."""
    store = BranchLikeStore()
    session = session_on(store)
    await session.add_items(turns(0, 3))
    report = await session.prune(keep_last_turns=1, dry_run=True)
    assert (store.swaps, report.removed_items, report.dry_run) == (0, 8, True)


async def test_a_store_that_can_do_neither_is_refused() -> None:
    """A layout of its own without a swap of its own cannot prune: StorageError, no change."""

    class OwnReads(DictStore):
        async def read(self, session_id: str, limit: int | None) -> list[str]:
            return await super().read(session_id, limit)

    session = session_on(OwnReads())
    await session.add_items(turns(0, 3))
    with pytest.raises(StorageError, match="cannot prune"):
        await session.prune(keep_last_turns=1)
    assert await session.get_items() == turns(0, 3)


# --- arguments and lifecycle ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), (True, TypeError), (2.0, TypeError), ("1", TypeError)],
)
async def test_bad_counts_are_refused_before_anything_is_read(
    value: object, error: type[Exception]
) -> None:
    """keep_last_turns must be an int >= 1; the store is not even read otherwise."""
    store = DictStore()
    session = session_on(store)
    await session.add_items(turns(0, 2))
    await store.aclose()  # any read would raise SessionClosedError
    with pytest.raises(error, match="keep_last_turns"):
        await session.prune(keep_last_turns=value)  # type: ignore[arg-type]


async def test_a_closed_session_refuses_to_prune() -> None:
    """A closed session refuses prune with SessionClosedError naming the method."""
    session = session_on()
    await session.aclose()
    with pytest.raises(SessionClosedError, match=r"prune\(\)"):
        await session.prune(keep_last_turns=1)


async def test_prune_session_takes_any_session_with_a_store_and_codec() -> None:
    """The function behind StoreSession.prune needs only session_id, store and a codec."""

    class Minimal:
        session_id = "m"
        _codec = JsonCodec()

        def __init__(self, store: DictStore) -> None:
            self.store = store

    store = DictStore()
    await StoreSession("m", store, owns_store=False).add_items(turns(0, 2))
    report = await prune_session(Minimal(store), keep_last_turns=1, keep_system=True, dry_run=False)
    assert report.removed_turns == 1
    assert store.count_rows("m") == 4


# --- under EncryptedSession -------------------------------------------------------------------


async def test_encrypted_prune_keeps_rows_sealed_as_they_were() -> None:
    """EncryptedSession.prune deletes old envelopes and leaves the kept ones untouched."""
    store = DictStore()
    session = EncryptedSession("s", session_on(store), KEY)
    await session.add_items(turns(0, 3))
    before = await store.rows("s")
    report = await session.prune(keep_last_turns=1)
    assert await store.rows("s") == before[8:]
    assert all('"content"' not in text for _, text in before)  # envelopes, not plain items
    assert await session.get_items() == turn(2)
    assert report.removed_turns == 2


async def test_encrypted_prune_keeps_rows_under_another_key() -> None:
    """A row sealed under a key not configured is unreadable here, so it is kept."""
    elsewhere = DictStore()
    await EncryptedSession("s", session_on(elsewhere), OTHER_KEY).add_items([said("theirs")])
    [(_, theirs)] = await elsewhere.rows("s")
    store = DictStore()
    session = EncryptedSession("s", session_on(store), KEY)
    await session.add_items(turn(0))
    store.write_raw("s", theirs)
    await session.add_items(turns(1, 3))
    report = await session.prune(keep_last_turns=1)
    assert (report.removed_items, report.kept_unreadable, report.kept_items) == (8, 1, 5)
    assert (await store.rows("s"))[0][1] == theirs


async def test_encrypted_prune_removes_expired_items_with_their_turns() -> None:
    """Expired items are sound, not damaged: they go with the turn they lie in."""
    now = [0.0]
    store = DictStore()
    session = EncryptedSession("s", session_on(store), KEY, ttl=100, clock=lambda: now[0])
    await session.add_items(turn(0))
    now[0] = 1000.0
    await session.add_items(turns(1, 4))
    report = await session.prune(keep_last_turns=2)
    assert (report.removed_items, report.removed_turns) == (8, 1)
    assert store.count_rows("s") == 8


async def test_encrypted_prune_needs_one_of_our_sessions() -> None:
    """Over another package's session there is no transaction to prune in: TypeError."""
    session = EncryptedSession("s", SDKSQLiteSession("s"), KEY)
    try:
        with pytest.raises(TypeError, match="needs one of agent_sessions' sessions"):
            await session.prune(keep_last_turns=1)
    finally:
        await session.aclose()


async def test_a_closed_encrypted_session_refuses_to_prune() -> None:
    """EncryptedSession.prune after close raises SessionClosedError."""
    session = EncryptedSession("s", session_on(), KEY)
    await session.aclose()
    with pytest.raises(SessionClosedError, match=r"prune\(\)"):
        await session.prune(keep_last_turns=1)


# --- the documentation ------------------------------------------------------------------------


async def test_the_documented_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example under "## Pruning" in docs/compaction.md runs as written."""
    doc = (Path(__file__).parents[2] / "docs" / "compaction.md").read_text(encoding="utf-8")
    section = doc.split("\n## Pruning\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("\n```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/compaction.md", "exec"), namespace)  # noqa: S102 (our own docs)
    monkeypatch.chdir(tmp_path)
    await namespace["main"]()
    assert (tmp_path / "chats.db").exists()

"""EncryptedSession gives the SDK's suffix-compaction hook: it compacts as often as without.

The SDK's ``OpenAIResponsesCompactionSession`` compacts a partly matching history only through the
underlying session's ``_get_compaction_snapshot``. These tests run the SDK's wrapper with a fake
compaction client over real SQLite files, with and without ``EncryptedSession`` in between.
"""

# ruff: noqa: SLF001 - the hook is private by the SDK's choice; some tests call it directly

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import agents
import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession, Session
from agents.memory.session_settings import SessionSettings
from agents.testing import ScriptedModel, assistant_message

from agent_sessions import DecryptionError, EncryptedSession, SessionClosedError, SQLiteSession
from tests.encryption_kit import Clock, new_key

pytestmark = pytest.mark.sqlite

Item = TResponseInputItem
SUMMARY: Any = {"type": "compaction", "id": "cmp-1", "encrypted_content": "summary"}


def msg(text: str, role: str = "user") -> Item:
    """Return a message item."""
    return cast(Item, {"role": role, "content": text})


class FakeResponses:
    """The ``responses.compact`` endpoint of an OpenAI client, answering one fixed summary."""

    def __init__(self, output: list[Any]) -> None:
        self.output = output
        self.calls: list[dict[str, Any]] = []

    async def compact(self, **kwargs: Any) -> SimpleNamespace:
        """Record the request and answer the summary."""
        self.calls.append(kwargs)
        return SimpleNamespace(output=self.output, usage=None)


def stored(path: Path, session_id: str = "s") -> list[Any]:
    """Return a session's stored rows, parsed, oldest first, bypassing every class."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT message_data FROM agent_messages WHERE session_id = ? ORDER BY id",
            (session_id,),
        ).fetchall()
    finally:
        conn.close()
    return [json.loads(text) for (text,) in rows]


def compacting(underlying: Session, responses: FakeResponses) -> OpenAIResponsesCompactionSession:
    """Return the SDK's compaction session over ``underlying``, compacting after every turn."""
    return OpenAIResponsesCompactionSession(
        "s",
        underlying,
        client=cast(Any, SimpleNamespace(responses=responses)),
        compaction_mode="input",
        should_trigger_compaction=lambda _: True,
    )


async def scripted_run(session: Session, turns: int = 3) -> None:
    """Run ``turns`` turns, the model seeing only the newest 4 stored items each time."""
    model = ScriptedModel(steps=[[assistant_message(f"answer {i}")] for i in range(turns)])
    for turn in range(turns):
        await Runner.run(
            Agent(name="a", model=model),
            f"question {turn}",
            session=session,
            run_config=RunConfig(session_settings=SessionSettings(limit=4), tracing_disabled=True),
        )


HISTORY = [msg(f"old {i}", "user" if i % 2 == 0 else "assistant") for i in range(10)]


def plain(path: Path, responses: FakeResponses) -> tuple[Session, SQLiteSession]:
    """The SDK's wrapper over a plain SQLiteSession."""
    backend = SQLiteSession("s", path)
    return compacting(backend, responses), backend


def encrypted_inner(path: Path, responses: FakeResponses) -> tuple[Session, SQLiteSession]:
    """The SDK's wrapper over EncryptedSession over SQLiteSession."""
    backend = SQLiteSession("s", path)
    return compacting(EncryptedSession("s", backend, new_key()), responses), backend


def encrypted_outer(path: Path, responses: FakeResponses) -> tuple[Session, SQLiteSession]:
    """EncryptedSession over the SDK's wrapper over SQLiteSession."""
    backend = SQLiteSession("s", path)
    return EncryptedSession("s", compacting(backend, responses), new_key()), backend


LAYOUTS: dict[str, Callable[[Path, FakeResponses], tuple[Session, SQLiteSession]]] = {
    "inner": encrypted_inner,
    "outer": encrypted_outer,
}


@pytest.mark.parametrize("make", LAYOUTS.values(), ids=LAYOUTS.keys())
async def test_compacts_as_often_as_over_a_plain_session(
    make: Callable[[Path, FakeResponses], tuple[Session, SQLiteSession]], tmp_path: Path
) -> None:
    """The same scripted run compacts as many times over EncryptedSession as over SQLiteSession."""
    counts, histories, requests = [], [], []
    for layout, path in ((plain, tmp_path / "plain.db"), (make, tmp_path / "enc.db")):
        responses = FakeResponses([SUMMARY])
        session, backend = layout(path, responses)
        try:
            await session.add_items(HISTORY)
            await scripted_run(session)
            counts.append(len(responses.calls))
            histories.append(await session.get_items())
            requests.append(responses.calls)
        finally:
            backend.close()
    assert counts == [3, 3]
    assert requests[1] == requests[0]  # the model's view, decrypted, is what was compacted
    assert histories[1] == histories[0]
    assert histories[0][:2] == HISTORY[:2]  # the history the model never saw is kept


@pytest.mark.parametrize("make", LAYOUTS.values(), ids=LAYOUTS.keys())
async def test_rows_after_compaction_are_all_encrypted_envelopes(
    make: Callable[[Path, FakeResponses], tuple[Session, SQLiteSession]], tmp_path: Path
) -> None:
    """After suffix compactions every stored row is an encrypted envelope, the summary too."""
    path = tmp_path / "enc.db"
    session, backend = make(path, FakeResponses([SUMMARY]))
    try:
        await session.add_items(HISTORY)
        await scripted_run(session)
        rows = stored(path)
        assert len(rows) == len(await session.get_items())
        assert SUMMARY in await session.get_items()
        assert all(
            row["__enc__"] == "as1" and set(row) == {"__enc__", "kid", "ts", "ct"} for row in rows
        )
        assert "summary" not in path.read_bytes().decode("latin-1")
    finally:
        backend.close()


async def test_snapshot_decrypts_and_swaps_an_unchanged_suffix_encrypted(tmp_path: Path) -> None:
    """The snapshot holds the newest items decrypted, and swaps in an encrypted suffix."""
    path = tmp_path / "snap.db"
    backend = SQLiteSession("s", path)
    session = EncryptedSession("s", backend, new_key())
    try:
        await session.add_items(HISTORY[:4])
        snapshot = await session._get_compaction_snapshot(2)
        assert snapshot.items == HISTORY[2:4]
        assert not snapshot.complete
        assert (await session._get_compaction_snapshot(5)).complete
        assert await snapshot.replace_suffix(0, [SUMMARY]) is True
        assert await session.get_items() == [*HISTORY[:2], SUMMARY]
        assert all(row["__enc__"] == "as1" for row in stored(path))
    finally:
        backend.close()


async def test_a_write_between_snapshot_and_replace_makes_the_replace_refuse(
    tmp_path: Path,
) -> None:
    """A write after the snapshot was taken makes its replace return False, changing nothing."""
    path = tmp_path / "race.db"
    key = new_key()
    backend = SQLiteSession("s", path)
    session = EncryptedSession("s", backend, key)
    other = EncryptedSession("s", SQLiteSession("s", path), key)
    try:
        await session.add_items(HISTORY[:4])
        snapshot = await session._get_compaction_snapshot(3)
        await other.add_items([msg("late")])  # another object, another connection
        before = stored(path)
        assert await snapshot.replace_suffix(0, [SUMMARY]) is False
        assert stored(path) == before
        assert await session.get_items() == [*HISTORY[:4], msg("late")]
    finally:
        backend.close()
        other.close()


async def test_a_row_that_cannot_be_read_gives_no_snapshot_and_stays(tmp_path: Path) -> None:
    """A window holding an unreadable row gives no snapshot, so the wrapper deletes nothing."""
    path = tmp_path / "bad.db"
    backend = SQLiteSession("s", path)
    session = EncryptedSession("s", backend, new_key())
    try:
        await session.add_items(HISTORY[:2])
        await backend.add_items([msg("plaintext, not sealed")])
        await session.add_items(HISTORY[2:4])
        assert await session._get_compaction_snapshot(10) is None
        assert await session._get_compaction_snapshot(2) is not None  # the window is clear
        responses = FakeResponses([SUMMARY])
        before = stored(path)
        await scripted_run(compacting(session, responses), turns=1)
        assert responses.calls == []
        assert stored(path)[: len(before)] == before
    finally:
        backend.close()


BACKENDS: dict[str, Callable[[str, Path], Any]] = {
    "ours": SQLiteSession,
    "sdk": agents.SQLiteSession,  # its snapshot prunes the expired prefix in the swap itself
}


@pytest.mark.parametrize("backend_class", BACKENDS.values(), ids=BACKENDS.keys())
async def test_expired_rows_are_left_out_and_purged_after_a_suffix_compaction(
    backend_class: Callable[[str, Path], Any], tmp_path: Path
) -> None:
    """Expired rows never reach the compaction model and are deleted with the swap."""
    path = tmp_path / "ttl.db"
    clock = Clock()
    backend = backend_class("s", path)
    session = EncryptedSession("s", backend, new_key(), ttl=10, clock=clock)
    try:
        await session.add_items([msg("expired")] * 8)
        clock.now += 11
        await session.add_items(HISTORY)
        responses = FakeResponses([SUMMARY])
        await scripted_run(compacting(session, responses), turns=1)
        assert len(responses.calls) == 1
        assert "expired" not in str(responses.calls)
        kept = await session.get_items()
        assert kept[-1] == SUMMARY
        assert kept[:2] == HISTORY[:2]
        assert len(stored(path)) == len(kept)  # the 8 expired rows are gone
    finally:
        backend.close()


async def test_compaction_after_key_rotation_writes_under_the_new_key(tmp_path: Path) -> None:
    """With ``encryption_key=[new, old]`` over old rows, compaction runs; then the new key reads."""
    path = tmp_path / "rot.db"
    old, new = new_key(), new_key()
    backend = SQLiteSession("s", path)
    writer = EncryptedSession("s", backend, old)
    await writer.add_items(HISTORY)
    rotated = EncryptedSession("s", backend, [new, old])
    try:
        responses = FakeResponses([SUMMARY])
        await scripted_run(compacting(rotated, responses))
        assert len(responses.calls) == 3
        await rotated.reencrypt()
        only_new = EncryptedSession("s", backend, new)
        kept = await only_new.get_items()
        assert kept == await rotated.get_items()
        assert kept[:2] == HISTORY[:2]
        assert SUMMARY in kept
        assert len(kept) == len(stored(path))
    finally:
        backend.close()


async def test_closed_session_message_names_the_class_like_the_others(tmp_path: Path) -> None:
    """A closed EncryptedSession says "EncryptedSession is closed: ...", as every class does."""
    session = EncryptedSession("s", SQLiteSession("s", tmp_path / "c.db"), new_key())
    session.close()
    with pytest.raises(
        SessionClosedError,
        match=r"^EncryptedSession is closed: EncryptedSession\.get_items\(\) was called after",
    ):
        await session.get_items()
    with pytest.raises(SessionClosedError, match=r"^EncryptedSession is closed: "):
        await session._get_compaction_snapshot(3)


async def test_manual_compaction_over_ours_refuses_to_delete_unreadable_rows(
    tmp_path: Path,
) -> None:
    """A manual run_compaction of the SDK's wrapper over ours raises, keeping an unreadable row."""
    path = tmp_path / "manual.db"
    backend = SQLiteSession("s", path)
    session = EncryptedSession("s", backend, new_key())
    try:
        await session.add_items(HISTORY[:2])
        await backend.add_items([msg("plaintext, not sealed")])
        responses = FakeResponses([SUMMARY])
        before = stored(path)
        with pytest.raises(DecryptionError, match="cannot be read"):
            await compacting(session, responses).run_compaction({"force": True})
        assert stored(path) == before
        await backend.clear_session()
        await session.add_items(HISTORY[:2])
        await compacting(session, responses).run_compaction({"force": True})
        assert await session.get_items() == [SUMMARY]  # all readable: compacted whole
    finally:
        backend.close()

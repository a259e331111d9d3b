"""Provenance at the session layer: the run context becomes tags, a run's items are stored once.

The stores of this package record tags through ``ProvenanceStore``; these tests use the
reference ``DictStore`` (the store the conformance suite is proven on) and real ``Runner`` runs
on the offline model, so what they check is the session layer: agent names, run ids, positions,
retries, cancellation and encryption.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.memory.session import _session_accepts_wrapper
from agents.run_context import RunContextWrapper

from agent_sessions import EncryptedSession, SQLiteSession
from agent_sessions.compaction import CompactingSession
from agent_sessions.core import StoreSession
from agent_sessions.offline import OfflineModel
from agent_sessions.provenance import as_run, run_ledger
from agent_sessions.testing import DictStore
from tests.encryption_kit import new_key

NO_TRACE = RunConfig(tracing_disabled=True)
CHECK = "Please check invoice 1042."


@function_tool
def lookup_invoice(number: int) -> str:
    """Look up an invoice by its number.

    Args:
        number: The invoice number.
    """
    return f"invoice {number}: paid"


def desks() -> tuple[Agent[None], Agent[None]]:
    """Desks."""
    model = OfflineModel()
    billing = Agent(
        name="billing",
        instructions="You are the billing desk. Use lookup_invoice for invoices.",
        handoff_description="Answers questions about invoices and payments.",
        tools=[lookup_invoice],
        model=model,
    )
    triage = Agent(
        name="triage",
        instructions="Hand billing questions to the billing agent.",
        handoffs=[billing],
        model=model,
    )
    return triage, billing


def dict_session(session_id: str = "s") -> StoreSession:
    """Dict session."""
    return StoreSession(session_id, DictStore(), owns_store=True)


def message(text: str, role: str = "user") -> Any:
    """Message."""
    return {"role": role, "content": text}


class SlowStore(DictStore):
    """A DictStore whose tagged writes take 50 ms (its own class appends, tagged or not)."""

    async def append(self, session_id: str, texts: Any) -> None:
        """Append."""
        await super().append(session_id, texts)

    async def append_tagged(
        self, session_id: str, texts: Any, tags: Any, *, fresh: bool = False
    ) -> int:
        """Append tagged."""
        await asyncio.sleep(0.05)
        return await super().append_tagged(session_id, texts, tags, fresh=fresh)


async def summarize(summary_input: list[Any]) -> list[Any]:
    """Summarize."""
    return [message("summary", "assistant")]


def test_every_session_class_opts_into_the_run_context(tmp_path: Path) -> None:
    """Every session class opts into the run context."""
    files = [SQLiteSession("a", tmp_path / f"{name}.db") for name in "abc"]
    sessions: list[Any] = [
        files[0],
        dict_session(),
        EncryptedSession("a", files[1], new_key()),
        CompactingSession(files[2], summarizer=summarize),
    ]
    try:
        for session in sessions:
            assert _session_accepts_wrapper(session), type(session).__name__
    finally:
        for file in files:
            file.close()


async def test_a_handoff_run_records_who_said_what() -> None:
    """A handoff run records who said what."""
    triage, _ = desks()
    session = dict_session()
    await Runner.run(
        triage,
        "I was charged twice, please pass me to billing.",
        session=session,
        run_config=NO_TRACE,
    )
    records = await session.get_records()
    assert [r.item for r in records] == await session.get_items()
    kinds = [(r.agent_name, r.item.get("type", "message")) for r in records]
    assert kinds == [
        (None, "message"),  # the user's input: no agent produced it
        ("triage", "function_call"),  # the handoff call and its output belong to triage
        ("triage", "function_call_output"),
        ("billing", "message"),  # the answer came from the agent handed to
    ]
    assert len({r.run_id for r in records}) == 1
    assert str(records[0].run_id).startswith("run_")
    assert [r.position for r in records] == [0, 1, 2, 3]
    assert all(r.created_at is not None and r.created_at.utcoffset() is not None for r in records)
    await Runner.run(triage, "thanks", session=session, run_config=NO_TRACE)
    second = (await session.get_records())[4:]
    assert {r.run_id for r in second} != {records[0].run_id}, "each Runner.run is its own run"
    assert [r.position for r in second] == [0, 1]


async def test_a_retried_run_under_as_run_stores_each_item_once() -> None:
    """A retried run under as run stores each item once."""
    _, billing = desks()
    session = dict_session()
    with as_run("job-7"):
        await Runner.run(
            billing, "Please check invoice 1042.", session=session, run_config=NO_TRACE
        )
    first = await session.get_items()
    with as_run("job-7"):  # the same job again: its input is not stored twice
        await Runner.run(
            billing, "Please check invoice 1042.", session=session, run_config=NO_TRACE
        )
    records = await session.get_records()
    users = [r for r in records if r.item.get("role") == "user"]
    assert len(users) == 1
    assert [r.item for r in records[: len(first)]] == first, "the first attempt is kept whole"
    positions = [int(str(r.position)) for r in records]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert {r.run_id for r in records} == {"job-7"}


async def test_the_same_batch_under_as_run_is_a_no_op_and_new_items_still_land() -> None:
    """The same batch under as run is a no op and new items still land."""
    session = dict_session()
    batch = [message("hello"), message("hi there", "assistant")]
    with as_run("import-1", agent_name="importer"):
        await session.add_items(batch)
    with as_run("import-1", agent_name="importer"):
        await session.add_items(batch)  # a retried import: nothing new
        await session.add_items([message("and more", "assistant")])
    records = await session.get_records()
    assert [r.item for r in records] == [*batch, message("and more", "assistant")]
    assert [r.position for r in records] == [0, 1, 2]
    assert {r.agent_name for r in records} == {"importer"}


async def test_an_add_items_cut_off_by_wait_for_is_stored_once_when_retried() -> None:
    """An add items cut off by wait for is stored once when retried."""
    session = StoreSession("s", SlowStore(), owns_store=True)
    wrapper = RunContextWrapper(context=None)
    batch = [message("once")]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.add_items(batch, wrapper=wrapper), 0.01)
    assert await session.get_items() == batch  # settled: stored despite the cut-off
    await session.add_items(batch, wrapper=wrapper)  # the caller's retry
    assert await session.get_items() == batch
    await session.add_items([message("next")], wrapper=wrapper)  # a new batch is not dropped
    assert [r.position for r in await session.get_records()] == [0, 1]


async def test_a_different_batch_after_a_cut_off_is_not_taken_for_its_retry() -> None:
    """A different batch after a cut off is not taken for its retry."""
    session = StoreSession("s", SlowStore(), owns_store=True)
    wrapper = RunContextWrapper(context=None)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(session.add_items([message("a")], wrapper=wrapper), 0.01)
    await session.add_items([message("b")], wrapper=wrapper)
    assert await session.get_items() == [message("a"), message("b")]


async def test_writes_without_a_run_context_carry_no_provenance() -> None:
    """Writes without a run context carry no provenance."""
    session = dict_session()
    await session.add_items([message("plain")])
    (record,) = await session.get_records()
    assert (record.agent_name, record.run_id, record.position, record.created_at) == (
        None,
        None,
        None,
        None,
    )


async def test_get_records_follows_get_items_limits_past_unreadable_rows() -> None:
    """Get records follows get items limits past unreadable rows."""
    store = DictStore()
    session = StoreSession("s", store, owns_store=True)
    with as_run("r"):
        await session.add_items([message(f"m{i}") for i in range(5)])
    store.write_raw("s", "{not json")
    with as_run("r2"):
        await session.add_items([message("last")])
    for limit in (None, 0, 1, 2, 4, 6, 50):
        records = await session.get_records(limit)
        assert [r.item for r in records] == await session.get_items(limit), limit


async def test_sqlite_session_returns_records_of_its_items(tmp_path: Path) -> None:
    """Sqlite session returns records of its items."""
    session = SQLiteSession("s", tmp_path / "s.db")
    await session.add_items([message("a"), message("b", "assistant")])
    records = await session.get_records(1)
    assert [r.item for r in records] == [message("b", "assistant")]
    session.close()


async def test_encrypted_digests_are_keyed_and_retries_still_dedup() -> None:
    """Encrypted digests are keyed and retries still dedup."""
    inner = dict_session("enc")
    session = EncryptedSession("enc", inner, new_key(), ttl=None)
    batch = [message("secret text")]
    with as_run("r"):
        await session.add_items(batch)
    with as_run("r"):
        await session.add_items(batch)
    assert await session.get_items() == batch
    store = inner.store
    assert isinstance(store, DictStore)
    (tag,) = store.row_tags("enc")
    assert tag is not None
    plain_digest = hashlib.sha256(b'{"role":"user","content":"secret text"}').hexdigest()
    assert tag.digest != plain_digest, "an unkeyed digest of the plaintext was stored"
    raw = await store.rows("enc")
    assert "secret text" not in raw[0][1]
    records = await inner.get_records()
    assert records[0].run_id == "r"


def test_only_a_minted_runs_new_positions_are_fresh() -> None:
    """A store may skip the lookup only where no attempt can have stored the run's rows."""
    minted = run_ledger(RunContextWrapper(context=None))
    assert minted is not None
    assert minted.reserve("s", ["a", "b"]) == (0, True)
    minted.hold("s", 0, ["a", "b"])  # that write raised: its retry may find it stored
    assert minted.reserve("s", ["a", "b"]) == (0, False)
    assert minted.reserve("s", ["c"]) == (2, True)
    assert minted.reserve("other", ["c"]) == (0, True)
    with as_run("job-7") as given:  # another process may have run job-7 before
        assert given.reserve("s", ["a"]) == (0, False)
        assert given.reserve("s", ["b"]) == (1, False)

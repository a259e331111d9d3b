"""The SDK's suffix-compaction hook, ``_get_compaction_snapshot``, on a store that can swap rows."""

# ruff: noqa: SLF001 - the hook is private by the SDK's choice; these tests call it directly

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, MagicMock

import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.memory import OpenAIResponsesCompactionSession
from agents.run_config import CallModelData, ModelInputData
from agents.testing import ScriptedModel
from openai.types.responses import ResponseOutputMessage

from agent_sessions import AdvancedSQLiteSession, SQLiteSession
from agent_sessions.core import StoreSession
from agent_sessions.testing import DictStore

CALL: Any = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"}
OUTPUT: Any = {"type": "function_call_output", "call_id": "c1", "output": "found"}


def _reply(text: str) -> Any:
    return {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _rewrite_first(data: CallModelData[Any]) -> ModelInputData:
    """Show the model a changed first item, so the stored history no longer matches it whole."""
    items = list(data.model_data.input)
    items[0] = {**CALL, "arguments": '{"q":"rewritten"}'}
    return ModelInputData(input=items, instructions=data.model_data.instructions)


async def _run_compacting(backend: StoreSession) -> AsyncMock:
    client = MagicMock()
    client.responses.compact = AsyncMock(return_value=SimpleNamespace(output=[]))
    session = OpenAIResponsesCompactionSession(
        "c",
        backend,
        client=client,
        compaction_mode="input",
        should_trigger_compaction=lambda _: True,
    )
    model = ScriptedModel(steps=[[ResponseOutputMessage.model_validate(_reply("done"))]])
    await Runner.run(
        Agent(name="a", model=model),
        "continue",
        session=session,
        run_config=RunConfig(call_model_input_filter=_rewrite_first),
    )
    return client.responses.compact


def _memory(path: Path) -> StoreSession:
    return StoreSession("c", DictStore(), owns_store=True)


def _sqlite(path: Path) -> StoreSession:
    return SQLiteSession("c", path / "c.db")


SWAPPING = {"memory": _memory, "sqlite": _sqlite}


@pytest.mark.parametrize("make", SWAPPING.values(), ids=SWAPPING.keys())
async def test_compaction_replaces_only_the_suffix_the_model_saw(
    make: Callable[[Path], StoreSession], tmp_path: Path
) -> None:
    """Under the SDK's compaction wrapper, a partly matching history compacts its suffix only."""
    async with make(tmp_path) as backend:
        await backend.add_items([CALL, OUTPUT])
        compact = await _run_compacting(backend)
        compact.assert_awaited_once()
        assert compact.call_args.kwargs["input"][0] == {"role": "user", "content": "continue"}
        assert await backend.get_items() == [CALL, OUTPUT]


@pytest.mark.parametrize("make", SWAPPING.values(), ids=SWAPPING.keys())
async def test_snapshot_tail_is_bounded_and_knows_when_it_is_whole(
    make: Callable[[Path], StoreSession], tmp_path: Path
) -> None:
    """The snapshot holds the newest ``limit`` items, complete only if nothing is older."""
    async with make(tmp_path) as backend:
        first: TResponseInputItem = {"role": "user", "content": "first"}
        await backend.add_items([first, CALL, OUTPUT])
        whole = await backend._get_compaction_snapshot(3)
        assert whole.items == [first, CALL, OUTPUT]
        assert whole.complete
        part = await backend._get_compaction_snapshot(2)
        assert part.items == [CALL, OUTPUT]
        assert not part.complete
        await backend.add_items([first])
        assert await part.replace_suffix(0, []) is False  # the tail moved on
        assert len(await backend.get_items()) == 4


async def test_advanced_session_swaps_its_branch_only(tmp_path: Path) -> None:
    """The branching session's snapshot swaps the current branch's tail; forks keep theirs."""
    first: TResponseInputItem = {"role": "user", "content": "first"}
    async with AdvancedSQLiteSession(
        session_id="c", db_path=tmp_path / "a.db", create_tables=True
    ) as backend:
        await backend.add_items([first, CALL, OUTPUT])
        await backend.create_branch_from_turn(1, "fork")
        await backend.add_items([first, CALL])
        await backend.switch_to_branch("main")
        snapshot = await backend._get_compaction_snapshot(2)
        assert snapshot.items == [CALL, OUTPUT]
        summary: TResponseInputItem = {"role": "assistant", "content": "summary"}
        assert await snapshot.replace_suffix(0, [summary]) is True
        assert await backend.get_items() == [first, summary]
        assert await backend.get_items(branch_id="fork") == [first, CALL]


async def test_a_store_that_reads_its_own_way_gives_no_snapshot(tmp_path: Path) -> None:
    """A store subclass that changes ``read`` but not ``replace_tail`` gives no snapshot."""

    class Filtered(DictStore):
        async def read(self, session_id: str, limit: int | None) -> list[str]:
            return (await super().read(session_id, limit))[1:]

    backend = StoreSession("c", Filtered(), owns_store=True)
    await backend.add_items([CALL, OUTPUT])
    assert await backend._get_compaction_snapshot(5) is None


async def test_snapshot_refuses_to_swap_a_changed_tail() -> None:
    """``replace_suffix`` does nothing and returns False once the tail changed."""
    backend = StoreSession("c", DictStore(), owns_store=True)
    await backend.add_items([CALL, OUTPUT])
    snapshot = await backend._get_compaction_snapshot(5)
    assert snapshot.items == [CALL, OUTPUT]
    assert snapshot.complete
    late: TResponseInputItem = {"role": "user", "content": "late"}
    await backend.add_items([late])
    assert await snapshot.replace_suffix(1, []) is False
    assert await backend.get_items() == [CALL, OUTPUT, late]


async def test_snapshot_swaps_an_unchanged_tail_and_reports_partial_windows() -> None:
    """A bounded snapshot is marked incomplete, and its suffix is swapped in one step."""
    backend = StoreSession("c", DictStore(), owns_store=True)
    first: TResponseInputItem = {"role": "user", "content": "first"}
    await backend.add_items([first, CALL, OUTPUT])
    snapshot = await backend._get_compaction_snapshot(2)
    assert snapshot.items == [CALL, OUTPUT]
    assert not snapshot.complete
    summary: TResponseInputItem = {"role": "assistant", "content": "summary"}
    assert await snapshot.replace_suffix(0, [summary]) is True
    assert await backend.get_items() == [first, summary]


async def test_no_snapshot_over_an_undecodable_row() -> None:
    """A window holding a row the session cannot return gives no snapshot (nothing swapped)."""
    store = DictStore()
    backend = StoreSession("c", store, owns_store=True)
    await backend.add_items([CALL])
    store.write_raw("c", "{not json")
    assert await backend._get_compaction_snapshot(5) is None


class _Overriding(StoreSession):
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        return (await super().get_items(limit))[-1:]


async def test_no_snapshot_when_a_subclass_overrides_reads() -> None:
    """A subclass that overrides the protocol gets no snapshot that would bypass its override."""
    backend = _Overriding("c", DictStore(), owns_store=True)
    await backend.add_items([CALL, OUTPUT])
    assert await backend._get_compaction_snapshot(5) is None

"""The checks of provenance: who wrote each item, and a run's items stored once.

A session with a run context (the ``wrapper`` the SDK's ``Runner`` passes, or
:func:`~agent_sessions.provenance.as_run`) records each row's run, position and agent, and a
batch its run already stored is not stored again, even when several objects retry it at once.
Rows written without a run context carry none of it. Sessions without ``get_records`` (the SDK's
classes) are skipped by capability.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agents.run_context import RunContextWrapper

from ..provenance import as_run
from .checks import ConformanceError
from .sessions import Harness, message

__all__ = ["PROVENANCE_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


def _records(session: object) -> Any:
    _expect(hasattr(session, "get_records"), f"{type(session).__name__} has no get_records()")
    return session


async def check_run_context_is_recorded(h: Harness) -> None:
    """Writes with a run context record one run id, positions 0, 1, ... and the agent."""
    session = _records(await h.session("prov-run"))
    wrapper = RunContextWrapper(context=None)
    await session.add_items([message("one")], wrapper=wrapper)
    await session.add_items([message("two"), message("three")], wrapper=wrapper)
    with as_run("conformance-run", agent_name="checker"):
        await session.add_items([message("four")])
    records = await session.get_records()
    _expect([r.item for r in records] == await session.get_items(), "records differ from items")
    runs = [r.run_id for r in records]
    _expect(runs[0] is not None and runs[:3] == [runs[0]] * 3, f"run ids not kept: {runs!r}")
    _expect(runs[3] == "conformance-run", f"as_run's id not recorded: {runs[3]!r}")
    positions = [r.position for r in records]
    _expect(positions == [0, 1, 2, 0], f"positions wrong: {positions!r}")
    _expect(records[3].agent_name == "checker", f"agent not recorded: {records[3].agent_name!r}")
    _expect(all(r.created_at is not None for r in records), "a tagged row has no time")


async def check_retried_batch_is_stored_once(h: Harness) -> None:
    """The same batch under the same run id, again and from three objects at once: one copy."""
    batch = [message("a"), message("b", "assistant")]
    first = _records(await h.session("prov-retry"))
    with as_run("job-1"):
        await first.add_items(batch)
    with as_run("job-1"):
        await first.add_items(batch)
    _expect(await first.get_items() == batch, "a retried batch was stored twice")
    objects = [_records(await h.session("prov-race")) for _ in range(3)]

    async def retry(session: Any) -> None:
        with as_run("job-2"):
            await session.add_items(batch)

    await asyncio.gather(*(retry(session) for session in objects))
    got = await objects[0].get_items()
    _expect(got == batch, f"concurrent retries stored {len(got)} items, not {len(batch)}")


async def check_cancelled_write_is_stored_once_when_retried(h: Harness) -> None:
    """A run's write cancelled mid-flight settles, and its retry (same wrapper) adds nothing."""
    session = _records(await h.session("prov-cancel"))
    wrapper = RunContextWrapper(context=None)
    batch = [message("once"), message("twice?", "assistant")]
    write = asyncio.ensure_future(session.add_items(batch, wrapper=wrapper))
    await asyncio.sleep(0)  # the write has started
    write.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await write
    stored = await session.get_items()
    _expect(stored in ([], batch), f"a cancelled write left {len(stored)} of {len(batch)} items")
    await session.add_items(batch, wrapper=wrapper)  # the caller's retry
    await session.add_items([message("next")], wrapper=wrapper)
    got = await session.get_items()
    _expect(got == [*batch, message("next")], f"after the retry: {got!r}")
    positions = [r.position for r in await session.get_records()]
    _expect(positions == [0, 1, 2], f"positions after the retry: {positions!r}")


async def check_cancelled_pop_keeps_provenance(h: Harness) -> None:
    """An item a cancelled pop_item puts back keeps the agent, run and position it had."""
    session = _records(await h.session("prov-pop"))
    with as_run("pop-run", agent_name="writer"):
        await session.add_items([message(f"m{i}") for i in range(30)])
    before = {
        r.item["content"]: (r.agent_name, r.run_id, r.position) for r in await session.get_records()
    }
    for attempt in range(20):
        task = asyncio.ensure_future(session.pop_item())
        for _ in range(attempt % 5):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.05)
    for record in await session.get_records():
        kept = (record.agent_name, record.run_id, record.position)
        was = before[record.item["content"]]
        _expect(kept == was, f"{record.item['content']} came back as {kept!r}, was {was!r}")


async def check_untagged_rows_carry_no_provenance(h: Harness) -> None:
    """Rows written without a run context read back with None provenance, limits as get_items."""
    session = _records(await h.session("prov-plain"))
    await session.add_items([message(f"m{i}") for i in range(4)])
    records = await session.get_records()
    _expect(
        all((r.agent_name, r.run_id, r.position) == (None, None, None) for r in records),
        "an untagged row reads back with provenance",
    )
    for limit in (0, 1, 3, 10):
        got = [r.item for r in await session.get_records(limit)]
        _expect(got == await session.get_items(limit), f"get_records({limit}) differs")


PROVENANCE_CHECKS = [
    check_run_context_is_recorded,
    check_retried_batch_is_stored_once,
    check_cancelled_write_is_stored_once_when_retried,
    check_cancelled_pop_keeps_provenance,
    check_untagged_rows_carry_no_provenance,
]
"""Every provenance check, in a stable order."""

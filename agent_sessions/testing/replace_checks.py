"""The checks of ``replace_items``: the whole history swapped in one transaction.

Compaction replaces a long history with a summary. Done as a clear then an add, a crash or a
cancellation in between leaves an empty session; these checks hold a session to one swap that is
whole or absent, refused before anything is written when an item cannot be stored, and that
never deletes a stored row it could not read unless told to. The SDK's compaction session finds
the same swap as ``_atomic_replace_items``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents.items import TResponseInputItem

from .checks import ConformanceError
from .sessions import Harness, _maybe_await, _quiet, _texts, message

__all__ = ["REPLACE_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


def _replace(session: object) -> Any:
    replace = getattr(session, "replace_items", None)
    _expect(replace is not None, f"{type(session).__name__} has no replace_items()")
    return replace


async def check_replace_items(h: Harness) -> None:
    """replace_items swaps the whole history; later writes go after the new one."""
    session = await h.session("replace")
    replace = _replace(session)
    await session.add_items([message(f"old{i}") for i in range(4)])
    summary = message("summary", "assistant")
    await replace([summary, message("old3")])
    _expect(_texts(await session.get_items()) == ["summary", "old3"], "history not replaced")
    await session.add_items([message("next")])
    _expect(_texts(await session.get_items()) == ["summary", "old3", "next"], "add went astray")
    await replace([])
    _expect(await session.get_items() == [], "replacing with nothing left items")
    await replace([message("fresh")])
    _expect(_texts(await session.get_items()) == ["fresh"], "an empty history was not filled")
    hook = getattr(type(session), "_atomic_replace_items", None)
    _expect(hook is not None, "no _atomic_replace_items: the SDK's compaction would clear first")
    assert hook is not None  # noqa: S101 (for the type checker)
    _expect(await hook(session, [message("hooked")]) is True, "the hook did not replace")
    _expect(_texts(await session.get_items()) == ["hooked"], "the hook's history is wrong")


async def check_replace_items_refuses_bad_input(h: Harness) -> None:
    """An item that cannot be stored refuses the whole replacement; nothing changes."""
    session = await h.session("replace-bad")
    replace = _replace(session)
    await session.add_items([message("kept")])
    bad: list[Any] = [message("new"), {"role": "user", "content": float("nan")}]
    try:
        await replace(bad)
    except (TypeError, ValueError):
        pass
    else:
        raise ConformanceError("replace_items stored an item with NaN")
    _expect(_texts(await session.get_items()) == ["kept"], "a refused replacement changed items")


async def check_replace_items_keeps_unreadable_rows(h: Harness) -> None:
    """A row that cannot be decoded refuses the swap, unless ``drop_unreadable`` is given."""
    if h.write_raw is None or h.count_rows is None:
        return
    session = await h.session("replace-corrupt")
    replace = _replace(session)
    await session.add_items([message("a")])
    await _maybe_await(h.write_raw("replace-corrupt", "{not json"))
    with _quiet():
        refused = False
        try:
            await replace([message("b")])
        except Exception:  # noqa: BLE001 (any error that names the problem will do)
            refused = True
        _expect(refused, "replace_items deleted a row it could not decode")
        stored = await _maybe_await(h.count_rows("replace-corrupt"))
        _expect(stored == 2, f"a refused replacement changed the rows ({stored} stored)")
        await replace([message("b")], drop_unreadable=True)
        stored = await _maybe_await(h.count_rows("replace-corrupt"))
        _expect(stored == 1, f"drop_unreadable kept {stored} rows, not the one given")
        _expect(
            _texts(await session.get_items()) == ["b"], "drop_unreadable stored the wrong items"
        )


async def check_cancelled_replace_is_whole(h: Harness) -> None:
    """A task cancelled during replace_items leaves the old history or the new one."""
    session = await h.session("replace-cancel")
    replace = _replace(session)
    old: list[TResponseInputItem] = [message(f"old{i}") for i in range(30)]
    await session.add_items(old)
    for attempt in range(12):
        new = [message(f"new{attempt}-{i}") for i in range(20)]
        before = await session.get_items()
        task = asyncio.ensure_future(replace(new))
        for _ in range(attempt % 6):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.02)
        after = await session.get_items()
        _expect(after in (before, new), f"a cancelled replacement left {len(after)} mixed items")


REPLACE_CHECKS = [
    check_replace_items,
    check_replace_items_refuses_bad_input,
    check_replace_items_keeps_unreadable_rows,
    check_cancelled_replace_is_whole,
]
"""The ``replace_items`` checks, run with the others (see ``CHECKS``)."""

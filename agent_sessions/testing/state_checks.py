"""The checks of per-session state: small JSON values kept beside the history.

The state API is private (``_read_state``, ``_write_state``, ``_update_state``); the package's
own features (paused runs, metadata) build on it. These checks hold every backend of ours to
the same promises: values come back exactly, per session and per name, refused before anything
is written when they are not JSON, updated without losing a concurrent update, and gone after
``clear_session``. A session without the methods (the SDK's classes) is skipped by capability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .checks import ConformanceError
from .sessions import Harness, _quiet, message

__all__ = ["STATE_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


class _State:
    """The three private calls of one session, found by name."""

    def __init__(self, session: object) -> None:
        found = [
            getattr(session, name, None)
            for name in ("_read_state", "_write_state", "_update_state")
        ]
        _expect(all(found), f"{type(session).__name__} has no per-session state")
        self.read: Callable[..., Any] = found[0]  # type: ignore[assignment]
        self.write: Callable[..., Any] = found[1]  # type: ignore[assignment]
        self.update: Callable[..., Any] = found[2]  # type: ignore[assignment]


VALUES: list[object] = [
    {"a": [1, 2.5, None, True], "nested": {"é": "ü\u2603"}},
    [1, "two", {"three": 3}],
    "text",
    0,
    -7,
    3.25,
    False,
    {},
    [],
]


async def check_state_round_trip(h: Harness) -> None:
    """State values come back exactly as written; writing None deletes; a missing name is None."""
    state = _State(await h.session("state"))
    _expect(await state.read("missing") is None, "a name never written is not None")
    for index, value in enumerate(VALUES):
        await state.write(f"v{index}", value)
    for index, value in enumerate(VALUES):
        got = await state.read(f"v{index}")
        _expect(got == value and type(got) is type(value), f"state v{index}: {got!r} != {value!r}")
    await state.write("v0", "replaced")
    _expect(await state.read("v0") == "replaced", "a value was not overwritten")
    await state.write("v0", None)
    _expect(await state.read("v0") is None, "writing None did not delete the value")
    await state.write("v0", None)  # deleting what is not there is fine


async def check_state_is_per_session_and_name(h: Harness) -> None:
    """State belongs to one session and one exact name (case and spaces count)."""
    first, second = _State(await h.session("state-a")), _State(await h.session("state-b"))
    await first.write("Name", 1)
    await first.write("name", 2)
    await first.write("name ", 3)
    _expect(await second.read("Name") is None, "another session sees this session's state")
    got = [await first.read(n) for n in ("Name", "name", "name ")]
    _expect(got == [1, 2, 3], f"names are not compared exactly: {got}")
    again = _State(await h.session("state-a"))
    _expect(await again.read("name") == 2, "another object of the session does not see it")


async def check_state_refuses_bad_input(h: Harness) -> None:
    """A value JSON would alter, or a bad name, is refused before anything is written."""
    state = _State(await h.session("state-bad"))
    await state.write("kept", {"v": 1})
    for bad in (float("nan"), (1, 2), {1: "int key"}, {"x": object()}, {"set": {1}}):
        try:
            await state.write("kept", bad)
        except TypeError:
            pass
        else:
            raise ConformanceError(f"state value {bad!r} was accepted")
    for name in ("", "nul\x00", 7, "x" * 256):
        try:
            await state.write(name, 1)
        except (TypeError, ValueError):
            pass
        else:
            raise ConformanceError(f"state name {name!r} was accepted")
    _expect(await state.read("kept") == {"v": 1}, "a refused write changed the stored value")


async def check_update_state(h: Harness) -> None:
    """_update_state returns the new value; None deletes; a failing change writes nothing."""
    state = _State(await h.session("state-update"))
    _expect(await state.update("n", lambda v: (v or 0) + 1) == 1, "first update wrong")
    _expect(await state.update("n", lambda v: v + 1) == 2, "second update wrong")

    def boom(value: object) -> object:
        raise RuntimeError("refused")

    try:
        await state.update("n", boom)
    except RuntimeError:
        pass
    else:
        raise ConformanceError("an error raised by the change was not passed on")
    _expect(await state.read("n") == 2, "a failing change altered the value")
    try:
        await state.update("n", lambda v: float("inf"))
    except TypeError:
        pass
    else:
        raise ConformanceError("an update to a non-JSON value was accepted")
    _expect(await state.update("n", lambda v: None) is None, "an update to None returned a value")
    _expect(await state.read("n") is None, "an update to None did not delete")


async def check_concurrent_state_updates(h: Harness) -> None:
    """Concurrent updates of one value from several tasks and objects all take effect."""
    objects = [_State(await h.session("state-race")) for _ in range(3)]

    def add(key: str) -> Callable[[object], object]:
        def change(value: object) -> object:
            merged = dict(value) if isinstance(value, dict) else {}
            merged[key] = True
            merged["count"] = int(merged.get("count", 0)) + 1
            return merged

        return change

    await asyncio.gather(*(objects[i % 3].update("merged", add(f"k{i}")) for i in range(24)))
    final = await objects[0].read("merged")
    _expect(isinstance(final, dict) and final.get("count") == 24, f"updates lost: {final!r}")
    assert isinstance(final, dict)  # noqa: S101 (for the type checker)
    _expect(all(final.get(f"k{i}") for i in range(24)), "a merged key was lost")


async def check_clear_removes_state(h: Harness) -> None:
    """clear_session deletes the session's state too; other sessions keep theirs."""
    session = await h.session("state-clear")
    other = _State(await h.session("state-keep"))
    state = _State(session)
    await session.add_items([message("hi")])
    await state.write("pending", {"run": 1})
    await other.write("pending", {"run": 2})
    await session.clear_session()
    _expect(await state.read("pending") is None, "clear_session left the state behind")
    _expect(await other.read("pending") == {"run": 2}, "clearing one session cleared another's")
    await state.write("pending", "again")  # a cleared session can hold state again
    _expect(await state.read("pending") == "again", "state after a clear was not stored")


async def check_state_persists(h: Harness) -> None:
    """A new session object, after the writer closed, reads the state it wrote."""
    if not h.persistent:
        return
    first = await h.session("state-persist")
    await _State(first).write("kept", {"v": [1, 2]})
    await h.close_session(first)
    again = _State(await h.session("state-persist"))
    with _quiet():
        _expect(await again.read("kept") == {"v": [1, 2]}, "state lost on reopen")


STATE_CHECKS = [
    check_state_round_trip,
    check_state_is_per_session_and_name,
    check_state_refuses_bad_input,
    check_update_state,
    check_concurrent_state_updates,
    check_clear_removes_state,
    check_state_persists,
]
"""Every state check, in a stable order."""

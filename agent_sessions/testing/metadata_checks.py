"""The checks of per-session metadata: ``get_metadata`` and ``update_metadata``.

Metadata is a JSON object of the user's own fields kept beside the history. These checks hold
every session class of ours to the same promises: ``{}`` before anything is stored, updates
merged (None removes a key), bad values refused before anything is written, concurrent updates
of different keys all kept, and the object gone after ``clear_session``. A session without the
methods (the SDK's classes) is skipped by capability.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .checks import ConformanceError
from .sessions import Harness, _quiet, message

__all__ = ["METADATA_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


def _meta(session: object) -> Any:
    _expect(
        hasattr(session, "get_metadata") and hasattr(session, "update_metadata"),
        f"{type(session).__name__} has no metadata",
    )
    return session


async def check_metadata_round_trip(h: Harness) -> None:
    """Metadata starts as {}; updates merge and return the result; None removes a key."""
    session = _meta(await h.session("meta"))
    _expect(await session.get_metadata() == {}, "metadata of a new session is not {}")
    got = await session.update_metadata(user="alice", plan="pro", tags=["a", {"b": 1.5}])
    want: dict[str, Any] = {"user": "alice", "plan": "pro", "tags": ["a", {"b": 1.5}]}
    _expect(got == want, f"update_metadata returned {got!r}")
    got = await session.update_metadata(plan=None, n=0, ok=False)
    want = {"user": "alice", "tags": ["a", {"b": 1.5}], "n": 0, "ok": False}
    _expect(got == want and await session.get_metadata() == want, f"merge wrong: {got!r}")
    other = _meta(await h.session("meta-other"))
    _expect(await other.get_metadata() == {}, "another session sees this session's metadata")
    await session.update_metadata(user=None, tags=None, n=None, ok=None)
    _expect(await session.get_metadata() == {}, "removing every key did not leave {}")


async def check_metadata_refuses_bad_values(h: Harness) -> None:
    """A value JSON would alter is refused before anything is written (even the good keys)."""
    session = _meta(await h.session("meta-bad"))
    await session.update_metadata(kept=1)
    for bad in (float("nan"), (1, 2), {1: "int key"}, object()):
        try:
            await session.update_metadata(fine="x", broken=bad)
        except TypeError:
            pass
        else:
            raise ConformanceError(f"metadata value {bad!r} was accepted")
    try:
        await session.update_metadata(__enc__=1)
    except ValueError:
        pass
    else:
        raise ConformanceError("the reserved metadata key __enc__ was accepted")
    got = await session.get_metadata()
    _expect(got == {"kept": 1}, f"a refused update changed the metadata: {got!r}")


async def check_concurrent_metadata_updates(h: Harness) -> None:
    """Concurrent updates of different keys from several tasks and objects all land."""
    objects = [_meta(await h.session("meta-race")) for _ in range(3)]
    await asyncio.gather(*(objects[i % 3].update_metadata(**{f"k{i}": i}) for i in range(24)))
    got = await objects[0].get_metadata()
    _expect(got == {f"k{i}": i for i in range(24)}, f"concurrent updates lost: {got!r}")


async def check_clear_removes_metadata(h: Harness) -> None:
    """clear_session deletes the session's metadata; a new object after reopening reads it."""
    session = _meta(await h.session("meta-clear"))
    await session.add_items([message("hi")])
    await session.update_metadata(user="bob")
    if h.persistent:
        await h.close_session(session)
        session = _meta(await h.session("meta-clear"))
        with _quiet():
            _expect(await session.get_metadata() == {"user": "bob"}, "metadata lost on reopen")
    await session.clear_session()
    _expect(await session.get_metadata() == {}, "clear_session left the metadata behind")


METADATA_CHECKS = [
    check_metadata_round_trip,
    check_metadata_refuses_bad_values,
    check_concurrent_metadata_updates,
    check_clear_removes_metadata,
]
"""Every metadata check, in a stable order."""

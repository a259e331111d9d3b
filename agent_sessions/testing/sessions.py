"""The session checks: every promise of the SDK's ``Session`` protocol, one async check each.

See :mod:`agent_sessions.testing` for how to run them against a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from agents.items import TResponseInputItem
from agents.memory import Session, SessionSettings

from .checks import ConformanceError

__all__ = ["SESSION_CHECKS", "Check", "Harness", "message"]

T = TypeVar("T")
Check = Callable[["Harness"], Awaitable[None]]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class Harness:
    """How the suite reaches one backend.

    Attributes:
        name: Shown in reports.
        open: Returns a new session object for a session id, on the one database under test
            (sync or async). Called again with the same id, it must reach the same stored items.
        close: Releases a session; by default awaits ``aclose()`` or calls ``close()`` if present.
        write_raw: Appends an undecodable row to a session's stored items, bypassing the session
            (enables the corruption checks).
        count_rows: Counts a session's stored rows, decodable or not (enables the check that
            undecodable rows are kept).
        persistent: Whether a new object (after closing the old ones) sees earlier writes.
        cleanup: Called by :meth:`close_all` after the sessions are closed, last first (for
            example to close a store the sessions share).
    """

    name: str
    open: Callable[[str], Session | Awaitable[Session]]
    close: Callable[[Session], Awaitable[None] | None] | None = None
    write_raw: Callable[[str, str], Awaitable[None] | None] | None = None
    count_rows: Callable[[str], Awaitable[int] | int] | None = None
    persistent: bool = True
    cleanup: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)
    _opened: list[Session] = field(default_factory=list, repr=False)

    def wrapped(self, name: str, wrap: Callable[[str, Session], Session]) -> Harness:
        """Return a harness whose sessions are ``wrap(session_id, session)`` over this one's.

        Use it to run the suite on a wrapper such as ``EncryptedSession``; closing a wrapper
        must close the session it wraps.

        Example:
            >>> # harness.wrapped("encrypted", lambda sid, s: EncryptedSession(sid, s, key))
        """
        inner_open = self.open

        async def open_wrapped(session_id: str) -> Session:
            return wrap(session_id, await _maybe_await(inner_open(session_id)))

        return Harness(
            name=name,
            open=open_wrapped,
            write_raw=self.write_raw,
            count_rows=self.count_rows,
            persistent=self.persistent,
            cleanup=self.cleanup,
        )

    async def session(self, session_id: str) -> Session:
        """Open a session that :meth:`close_all` will close."""
        session = await _maybe_await(self.open(session_id))
        self._opened.append(session)
        return session

    async def close_session(self, session: Session) -> None:
        """Close one session opened by :meth:`session`."""
        if session in self._opened:
            self._opened.remove(session)
        if self.close is not None:
            await _maybe_await(self.close(session))
            return
        closer = getattr(session, "aclose", None) or getattr(session, "close", None)
        if closer is not None:
            await _maybe_await(closer())

    async def close_all(self) -> None:
        """Close every session still open, then run the cleanup callables."""
        for session in list(self._opened):
            await self.close_session(session)
        while self.cleanup:
            await _maybe_await(self.cleanup.pop()())


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the expected warnings about undecodable rows."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def message(text: str, role: str = "user") -> TResponseInputItem:
    """Return a minimal message item."""
    return cast(TResponseInputItem, {"role": role, "content": text})


def _texts(items: Sequence[TResponseInputItem]) -> list[object]:
    return [cast(dict[str, object], item).get("content") for item in items]


async def _filled(h: Harness, session_id: str, count: int) -> Session:
    session = await h.session(session_id)
    await session.add_items([message(f"m{i}") for i in range(count)])
    return session


# --- the checks -------------------------------------------------------------------------------


async def check_protocol(h: Harness) -> None:
    """The object satisfies ``agents.memory.Session`` and carries its session id."""
    session = await h.session("protocol")
    _expect(isinstance(session, Session), "not an instance of agents.memory.Session")
    _expect(session.session_id == "protocol", "session_id attribute differs from the one given")


async def check_order(h: Harness) -> None:
    """Items come back in insertion order across several batches."""
    session = await h.session("order")
    for batch in range(5):
        await session.add_items([message(f"{batch}-{i}") for i in range(3)])
    expected = [f"{b}-{i}" for b in range(5) for i in range(3)]
    _expect(_texts(await session.get_items()) == expected, "items not in insertion order")


async def check_limits(h: Harness) -> None:
    """limit=N returns the newest N oldest-first; 0 returns none; any larger limit returns all."""
    session = await _filled(h, "limits", 5)
    every = [f"m{i}" for i in range(5)]
    _expect(await session.get_items(0) == [], "limit=0 did not return []")
    _expect(_texts(await session.get_items(1)) == ["m4"], "limit=1 is not the newest item")
    _expect(_texts(await session.get_items(3)) == every[2:], "limit=3 is not the newest three")
    _expect(_texts(await session.get_items(6)) == every, "limit one above the size is not all")
    _expect(_texts(await session.get_items(50)) == every, "limit above the size is not all")
    _expect(_texts(await session.get_items()) == every, "limit=None is not all")


async def check_settings_limit(h: Harness) -> None:
    """``session_settings.limit`` caps ``get_items()``, and an explicit limit overrides it."""
    session = await _filled(h, "settings", 5)
    session.session_settings = SessionSettings(limit=2)
    _expect(_texts(await session.get_items()) == ["m3", "m4"], "settings limit ignored")
    _expect(len(await session.get_items(4)) == 4, "explicit limit did not override settings")


async def check_negative_limit_refused(h: Harness) -> None:
    """A negative limit raises ``ValueError`` instead of silently meaning "everything"."""
    session = await _filled(h, "negative", 2)
    try:
        await session.get_items(-1)
    except ValueError:
        return
    raise ConformanceError("get_items(-1) did not raise ValueError")


async def check_huge_limit(h: Harness) -> None:
    """A limit beyond any database integer (``10**20``) means every item, not a driver error."""
    session = await _filled(h, "huge-limit", 3)
    every = ["m0", "m1", "m2"]
    _expect(_texts(await session.get_items(10**20)) == every, "get_items(10**20) is not all")
    _expect(_texts(await session.get_items(2**63)) == every, "get_items(2**63) is not all")
    session.session_settings = SessionSettings(limit=2**64)
    _expect(_texts(await session.get_items()) == every, "a settings limit of 2**64 is not all")


UNSTORABLE_SESSION_IDS = ("nul\x00id", "lone\ud800surrogate", "x" * 256)
"""Session ids some database cannot store as given: every backend must refuse them alike."""


async def check_unstorable_session_ids_refused(h: Harness) -> None:
    """A session id with a NUL, a lone surrogate or over 255 characters raises ``ValueError``.

    The error comes at construction or at the first write, before anything is stored, and is
    not a driver's ``UnicodeError``.
    """
    for bad in UNSTORABLE_SESSION_IDS:
        try:
            session = await h.session(bad)
            await session.add_items([message("refused")])
        except UnicodeError as exc:
            raise ConformanceError(f"session id {bad[:20]!r} raised a raw {exc!r}") from exc
        except ValueError:
            stored = 0
            if h.count_rows is not None:
                with contextlib.suppress(Exception):  # the raw counter may refuse the id too
                    stored = await _maybe_await(h.count_rows(bad))
            _expect(stored == 0, f"session id {bad[:20]!r} was refused after rows were stored")
            continue
        raise ConformanceError(f"session id {bad[:20]!r} was accepted")


async def check_pop(h: Harness) -> None:
    """pop_item returns the newest item and removes it; on an empty session it returns None."""
    session = await _filled(h, "pop", 3)
    popped = await session.pop_item()
    _expect(popped is not None and popped.get("content") == "m2", "pop did not return the newest")
    _expect(_texts(await session.get_items()) == ["m0", "m1"], "popped item still stored")
    await session.clear_session()
    _expect(await session.pop_item() is None, "pop on an empty session did not return None")


async def check_clear_and_isolation(h: Harness) -> None:
    """Sessions on one database never see each other's items, and clear touches only one."""
    alice, bob = await _filled(h, "alice", 3), await _filled(h, "bob", 2)
    _expect(_texts(await bob.get_items()) == ["m0", "m1"], "a session sees another's items")
    await alice.clear_session()
    _expect(await alice.get_items() == [], "clear_session left items behind")
    _expect(len(await bob.get_items()) == 2, "clear_session removed another session's items")
    await alice.add_items([message("again")])
    _expect(_texts(await alice.get_items()) == ["again"], "session unusable after clear")


async def check_empty_batch(h: Harness) -> None:
    """add_items([]) stores nothing and does not fail."""
    session = await h.session("empty")
    await session.add_items([])
    _expect(await session.get_items() == [], "an empty batch stored something")


async def check_returned_items_are_copies(h: Harness) -> None:
    """Changing a returned item (or the item given to add_items) does not change what is stored."""
    session = await h.session("copies")
    item = message("original")
    await session.add_items([item])
    cast(dict[str, object], item)["content"] = "changed by caller"
    (first,) = await session.get_items()
    cast(dict[str, object], first)["content"] = "changed after read"
    _expect(_texts(await session.get_items()) == ["original"], "stored item changed by caller")


async def check_persistence(h: Harness) -> None:
    """A new session object on the same database sees what an earlier, closed one wrote."""
    if not h.persistent:
        return
    first = await _filled(h, "persist", 3)
    await h.close_session(first)
    again = await h.session("persist")
    _expect(_texts(await again.get_items()) == ["m0", "m1", "m2"], "items lost on reopen")


async def check_unicode_and_large_items(h: Harness) -> None:
    """Any Unicode text, nested values and a 1 MB item round-trip exactly."""
    session = await h.session("unicode")
    items: list[Any] = [
        message("héllo wörld — 你好 — مرحبا — 🙂👩‍💻 — \u0000 nul — \ud800 lone surrogate"),
        {"type": "function_call_output", "call_id": "c1", "output": "x" * 1_000_000},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "nested"}],
            "n": [1, 2.5, None],
        },
    ]
    await session.add_items(items)
    _expect(await session.get_items() == items, "items changed in a round trip")


async def check_unserializable_batch_refused(h: Harness) -> None:
    """A batch with an unstorable item raises ``TypeError`` and stores none of its items."""
    session = await _filled(h, "refused", 1)
    for bad in (object(), {"x": object()}, {"x": float("nan")}, {1: "int key"}, "not a dict"):
        try:
            await session.add_items([message("fine"), bad])  # type: ignore[list-item]
        except TypeError:
            pass
        else:
            raise ConformanceError(f"add_items accepted an unstorable item: {bad!r:.40}")
    _expect(_texts(await session.get_items()) == ["m0"], "part of a refused batch was stored")


async def check_corrupt_rows_skipped(h: Harness) -> None:
    """An undecodable row is skipped by reads, and ``limit`` counts only valid items."""
    if h.write_raw is None:
        return
    session = await _filled(h, "corrupt-read", 3)
    await _maybe_await(h.write_raw("corrupt-read", "{not json"))
    await session.add_items([message("m3")])
    with _quiet():
        _expect(_texts(await session.get_items()) == ["m0", "m1", "m2", "m3"], "corrupt row read")
        _expect(_texts(await session.get_items(2)) == ["m2", "m3"], "limit counted a corrupt row")


async def check_pop_passes_over_corrupt_tail(h: Harness) -> None:
    """pop_item returns the newest valid item and never an undecodable one."""
    if h.write_raw is None:
        return
    session = await _filled(h, "corrupt-pop", 2)
    await _maybe_await(h.write_raw("corrupt-pop", "<garbage>"))
    with _quiet():
        popped = await session.pop_item()
        _expect(popped is not None and popped.get("content") == "m1", "pop returned bad data")
        _expect(_texts(await session.get_items()) == ["m0"], "valid items changed")
        await session.pop_item()
        _expect(await session.pop_item() is None, "pop returned the undecodable row")


async def check_pop_keeps_corrupt_rows(h: Harness) -> None:
    """An undecodable row is never deleted by the pop that could not decode it."""
    if h.write_raw is None or h.count_rows is None:
        return
    session = await _filled(h, "corrupt-keep", 1)
    await _maybe_await(h.write_raw("corrupt-keep", "{truncated"))
    with _quiet():
        await session.pop_item()
        await session.pop_item()
    stored = await _maybe_await(h.count_rows("corrupt-keep"))
    _expect(stored == 1, f"expected the undecodable row to stay stored, found {stored} rows")


async def check_concurrent_add_and_pop(h: Harness) -> None:
    """Concurrent tasks adding and popping lose nothing and never return one item twice."""
    session = await h.session("concurrent")
    writers, per_writer = 8, 25

    async def write(w: int) -> None:
        for i in range(per_writer):
            await session.add_items([message(f"w{w}-{i}")])

    async def pop_some() -> list[object]:
        taken = []
        for _ in range(per_writer):
            item = await session.pop_item()
            if item is not None:
                taken.append(item.get("content"))
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(write(w) for w in range(writers)), pop_some(), pop_some())
    popped = [x for r in results if r is not None for x in r]
    remaining = _texts(await session.get_items())
    everything = sorted(map(str, popped + remaining))
    expected = sorted(f"w{w}-{i}" for w in range(writers) for i in range(per_writer))
    _expect(len(popped) == len(set(popped)), "an item was popped twice")
    _expect(everything == expected, "items lost or duplicated under concurrency")
    for w in range(writers):
        mine = [x for x in remaining if str(x).startswith(f"w{w}-")]
        _expect(mine == sorted(mine, key=lambda s: int(str(s).split("-")[1])), "order broken")


async def check_cancelled_writes_are_whole(h: Harness) -> None:
    """A task cancelled during add_items leaves its batch whole or absent."""
    session = await h.session("cancel-add")
    for attempt in range(20):
        batch = [message(f"{attempt}-{i}") for i in range(50)]
        task = asyncio.ensure_future(session.add_items(batch))
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.05)
    stored = [str(x) for x in _texts(await session.get_items())]
    for attempt in range(20):
        count = sum(1 for x in stored if x.startswith(f"{attempt}-"))
        _expect(count in (0, 50), f"batch {attempt} stored in part ({count} of 50 items)")


async def check_cancelled_pop_keeps_item(h: Harness) -> None:
    """A task cancelled during pop_item either returns the item or leaves it stored."""
    session = await _filled(h, "cancel-pop", 40)
    returned: list[object] = []
    for attempt in range(20):
        task = asyncio.ensure_future(session.pop_item())
        for _ in range(attempt % 5):
            await asyncio.sleep(0)
        task.cancel()
        done = (await asyncio.gather(task, return_exceptions=True))[0]
        if isinstance(done, dict):
            returned.append(done.get("content"))
    await asyncio.sleep(0.05)
    remaining = _texts(await session.get_items())
    _expect(
        sorted(map(str, returned + remaining)) == sorted(f"m{i}" for i in range(40)),
        f"{40 - len(returned) - len(remaining)} popped item(s) neither returned nor stored",
    )


async def check_runner_round_trip(h: Harness) -> None:
    """``Runner.run`` with the offline model stores each turn and recalls earlier ones."""
    from agents import Agent, RunConfig, Runner  # noqa: PLC0415 - keeps this module light

    from ..offline import OfflineModel  # noqa: PLC0415

    session = await h.session("runner")
    agent = Agent(name="assistant", instructions="Be brief.", model=OfflineModel())
    config = RunConfig(tracing_disabled=True)
    await Runner.run(agent, "Hi! My name is Ada.", session=session, run_config=config)
    result = await Runner.run(agent, "What is my name?", session=session, run_config=config)
    _expect("Ada" in str(result.final_output), "the agent did not recall the first turn")
    roles = [item.get("role") for item in await session.get_items()]
    _expect(roles == ["user", "assistant", "user", "assistant"], f"unexpected history {roles}")


def _exchange(n: int) -> list[TResponseInputItem]:
    """One exchange: a user message, a tool call with its output, and the reply."""
    call = f"call_{n}"
    return [
        message(f"q{n}"),
        cast(
            TResponseInputItem,
            {"type": "function_call", "call_id": call, "name": "f", "arguments": "{}"},
        ),
        cast(TResponseInputItem, {"type": "function_call_output", "call_id": call, "output": "ok"}),
        message(f"a{n}", role="assistant"),
    ]


async def check_pop_turn(h: Harness) -> None:
    """pop_turn removes the newest user message and everything after it, at once."""
    session = await h.session("turns")
    pop_turn = getattr(session, "pop_turn", None)
    _expect(pop_turn is not None, f"{type(session).__name__} has no pop_turn()")
    await session.add_items([message("intro", role="assistant")])
    await session.add_items(_exchange(1))
    await session.add_items(_exchange(2)[:1])
    await session.add_items(_exchange(2)[1:])
    last = await pop_turn()  # type: ignore[misc]
    _expect(last == _exchange(2), f"pop_turn returned {last!r}, not the last exchange in order")
    _expect(await session.get_items() == [message("intro", "assistant"), *_exchange(1)], "kept")
    _expect(await pop_turn() == _exchange(1), "the second pop_turn did not return exchange 1")  # type: ignore[misc]
    _expect(await pop_turn() == [], "pop_turn removed items with no user message left")  # type: ignore[misc]
    _expect(_texts(await session.get_items()) == ["intro"], "pop_turn removed a non-turn item")


async def check_pop_turn_keeps_corrupt_rows(h: Harness) -> None:
    """pop_turn removes the exchange's valid items and never an undecodable row among them."""
    if h.write_raw is None or h.count_rows is None:
        return
    session = await h.session("turn-corrupt")
    await session.add_items(_exchange(1))
    await session.add_items(_exchange(2)[:2])
    await _maybe_await(h.write_raw("turn-corrupt", "{truncated"))
    await session.add_items(_exchange(2)[2:])
    with _quiet():
        removed = await session.pop_turn()  # type: ignore[attr-defined]
        kept = await session.get_items()
    _expect(removed == _exchange(2), f"pop_turn returned {removed!r}")
    _expect(kept == _exchange(1), f"pop_turn left {kept!r}")
    stored = await _maybe_await(h.count_rows("turn-corrupt"))
    _expect(stored == len(_exchange(1)) + 1, f"the undecodable row was not kept ({stored} rows)")


async def check_cancelled_pop_turn_is_whole(h: Harness) -> None:
    """A task cancelled during pop_turn leaves every exchange either whole or entirely returned."""
    session = await h.session("cancel-turn")
    for n in range(10):
        await session.add_items(_exchange(n))
    returned: list[list[TResponseInputItem]] = []
    for attempt in range(10):
        task = asyncio.ensure_future(session.pop_turn())  # type: ignore[attr-defined]
        for _ in range(attempt % 5):
            await asyncio.sleep(0)
        task.cancel()
        done = (await asyncio.gather(task, return_exceptions=True))[0]
        if isinstance(done, list):
            returned.append(done)
    await asyncio.sleep(0.05)
    remaining = await session.get_items()
    kept = len(remaining) // 4
    _expect(remaining == [i for n in range(kept) for i in _exchange(n)], "a kept exchange is torn")
    _expect(
        sorted(map(str, _texts([r[0] for r in returned])))
        == sorted(f"q{n}" for n in range(kept, 10)),
        "an exchange was neither returned nor kept",
    )
    _expect(all(len(r) == 4 for r in returned), "pop_turn returned part of an exchange")


SESSION_CHECKS: list[Check] = [
    check_protocol,
    check_order,
    check_limits,
    check_settings_limit,
    check_negative_limit_refused,
    check_huge_limit,
    check_unstorable_session_ids_refused,
    check_pop,
    check_clear_and_isolation,
    check_empty_batch,
    check_returned_items_are_copies,
    check_persistence,
    check_unicode_and_large_items,
    check_unserializable_batch_refused,
    check_corrupt_rows_skipped,
    check_pop_passes_over_corrupt_tail,
    check_pop_keeps_corrupt_rows,
    check_concurrent_add_and_pop,
    check_cancelled_writes_are_whole,
    check_cancelled_pop_keeps_item,
    check_runner_round_trip,
    check_pop_turn,
    check_pop_turn_keeps_corrupt_rows,
    check_cancelled_pop_turn_is_whole,
]
"""The protocol checks, in a stable order (``CHECKS`` adds the ``replace_items`` ones)."""

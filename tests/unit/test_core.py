"""The session protocol built once in ``core``: limits, settings and the lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from agents.memory import SessionSettings

from agent_sessions._lifecycle import Settling
from agent_sessions.core import (
    MAX_LIMIT,
    MAX_SESSION_ID_LENGTH,
    SessionState,
    StoreSession,
    check_session_id,
    resolve_limit,
    run_to_completion,
)
from agent_sessions.errors import InvalidLimitError, InvalidSessionIdError, SessionClosedError
from agent_sessions.testing import DictStore


class ClosingCountStore(DictStore):
    """The reference store, counting how often it is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        """Count the call."""
        self.closed += 1


def message(text: str) -> dict[str, Any]:
    """Return a minimal user message item."""
    return {"role": "user", "content": text}


async def filled(session: StoreSession, count: int) -> StoreSession:
    """Add ``count`` messages ``m0``... to the session and return it."""
    await session.add_items([message(f"m{i}") for i in range(count)])  # type: ignore[misc]
    return session


# --- resolve_limit --------------------------------------------------------------------------


def test_explicit_limit_wins_over_settings() -> None:
    """Uses an explicit limit even when the settings carry another one."""
    assert resolve_limit(3, SessionSettings(limit=10)) == 3


def test_explicit_zero_wins_over_settings() -> None:
    """Treats an explicit 0 as a limit rather than as a missing one."""
    assert resolve_limit(0, SessionSettings(limit=10)) == 0


def test_settings_limit_is_used_without_an_explicit_one() -> None:
    """Falls back to the settings' limit when the explicit limit is None."""
    assert resolve_limit(None, SessionSettings(limit=10)) == 10


@pytest.mark.parametrize("settings", [None, SessionSettings()], ids=["no-settings", "no-limit"])
def test_no_limit_anywhere_means_none(settings: SessionSettings | None) -> None:
    """Returns None (everything) when neither the call nor the settings set a limit."""
    assert resolve_limit(None, settings) is None


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True, False], ids=repr)
def test_invalid_explicit_limit_is_refused(limit: object) -> None:
    """Refuses a limit that is negative or not an int (bools included)."""
    with pytest.raises(InvalidLimitError):
        resolve_limit(limit, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True], ids=repr)
def test_invalid_settings_limit_is_refused(limit: object) -> None:
    """Refuses an invalid limit that comes from the settings, too."""
    # Assigned after construction: the SDK's pydantic dataclass would coerce "3" and True.
    settings = SessionSettings()
    settings.limit = limit  # type: ignore[assignment]
    with pytest.raises(InvalidLimitError):
        resolve_limit(None, settings)


def test_invalid_limit_error_is_a_value_error() -> None:
    """Raises an error that callers catch as ``ValueError``, naming the bad limit."""
    with pytest.raises(ValueError, match="-1"):
        resolve_limit(-1, None)


# --- StoreSession: settings -----------------------------------------------------------------


def test_unknown_settings_key_is_refused() -> None:
    """Refuses a settings dict with a misspelt field (``limitt``) with ``TypeError``, as the SDK."""
    with pytest.raises(TypeError, match="Unknown session settings: limitt"):
        StoreSession("s", DictStore(), owns_store=False, session_settings={"limitt": 1})


async def test_closed_error_says_the_class_is_closed() -> None:
    """A call after close says "<Class> is closed", the SDK's wording, and names the method."""
    session = StoreSession("s", DictStore(), owns_store=True)
    await session.aclose()
    with pytest.raises(SessionClosedError, match=r"StoreSession is closed: .*add_items\(\)"):
        await session.add_items([])


async def test_settings_given_as_a_dict_cap_reads() -> None:
    """Accepts ``session_settings`` as a dict of its fields, as the SDK does."""
    session = StoreSession("s", DictStore(), owns_store=False, session_settings={"limit": 2})
    assert session.session_settings == SessionSettings(limit=2)
    items = await (await filled(session, 5)).get_items()
    assert [item.get("content") for item in items] == ["m3", "m4"]


async def test_settings_given_as_an_instance_cap_reads() -> None:
    """Accepts ``session_settings`` as a ``SessionSettings`` and honours its limit."""
    settings = SessionSettings(limit=2)
    session = StoreSession("s", DictStore(), owns_store=False, session_settings=settings)
    assert session.session_settings is settings
    items = await (await filled(session, 5)).get_items()
    assert [item.get("content") for item in items] == ["m3", "m4"]


async def test_settings_default_to_no_limit() -> None:
    """Defaults ``session_settings`` to ``SessionSettings()``, which reads everything."""
    session = StoreSession("s", DictStore(), owns_store=False)
    assert session.session_settings == SessionSettings()
    assert len(await (await filled(session, 5)).get_items()) == 5


async def test_explicit_limit_overrides_the_session_settings() -> None:
    """Lets ``get_items(limit)`` override ``session_settings.limit``."""
    session = StoreSession("s", DictStore(), owns_store=False, session_settings={"limit": 2})
    assert len(await (await filled(session, 5)).get_items(4)) == 4


@pytest.mark.parametrize("limit", [2**63 - 1, 2**63, 10**20, 10**400])
def test_limit_beyond_every_database_is_clamped(limit: int) -> None:
    """Lowers any limit above ``2**63 - 1`` to it, the largest every driver binds."""
    assert resolve_limit(limit, None) == MAX_LIMIT == 2**63 - 1
    assert resolve_limit(None, SessionSettings(limit=limit)) == MAX_LIMIT


async def test_huge_limit_reads_everything() -> None:
    """``get_items(10**20)`` returns every item, like no limit."""
    session = await filled(StoreSession("s", DictStore(), owns_store=True), 3)
    assert [i["content"] for i in await session.get_items(10**20)] == ["m0", "m1", "m2"]  # type: ignore[typeddict-item]


# --- check_session_id -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "session_id",
    ["a\x00b", "\x00", "lone\ud800", "\udfff", "x" * (MAX_SESSION_ID_LENGTH + 1)],
    ids=["nul", "only-nul", "high-surrogate", "low-surrogate", "too-long"],
)
def test_unstorable_session_id_is_refused(session_id: str) -> None:
    """Refuses an id some backend cannot store with ``InvalidSessionIdError``, a ``ValueError``."""
    with pytest.raises(InvalidSessionIdError, match=r"session_id .* cannot be stored") as caught:
        check_session_id(session_id)
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, UnicodeError)
    with pytest.raises(InvalidSessionIdError):
        StoreSession(session_id, DictStore(), owns_store=False)


@pytest.mark.parametrize(
    "session_id",
    ["", "user-42", "Ada Lovelace", "日本語", "emoji \U0001f600", "x" * MAX_SESSION_ID_LENGTH],
    ids=["empty", "ascii", "space", "cjk", "astral", "longest"],
)
def test_storable_session_id_is_accepted(session_id: str) -> None:
    """Accepts any str of valid characters up to ``MAX_SESSION_ID_LENGTH`` long."""
    check_session_id(session_id)


# --- StoreSession: lifecycle ----------------------------------------------------------------


@pytest.mark.parametrize("session_id", [1, None, b"s", ("s",)], ids=repr)
def test_non_str_session_id_is_refused(session_id: object) -> None:
    """Refuses a session id that is not a str with ``TypeError``."""
    with pytest.raises(TypeError, match="session_id"):
        StoreSession(session_id, DictStore(), owns_store=False)  # type: ignore[arg-type]


async def test_state_goes_from_open_to_closed() -> None:
    """Starts OPEN and is CLOSED after ``aclose()``."""
    session = StoreSession("s", DictStore(), owns_store=False)
    assert session.state is SessionState.OPEN
    await session.aclose()
    assert session.state is SessionState.CLOSED


CALLS: dict[str, Callable[[StoreSession], Awaitable[object]]] = {
    "get_items": lambda s: s.get_items(),
    "add_items": lambda s: s.add_items([message("late")]),  # type: ignore[list-item]
    "pop_item": lambda s: s.pop_item(),
    "clear_session": lambda s: s.clear_session(),
    "__aenter__": lambda s: s.__aenter__(),
}


@pytest.mark.parametrize("method", CALLS)
async def test_call_after_close_names_the_method(method: str) -> None:
    """Raises ``SessionClosedError`` naming the method that was called after ``aclose()``."""
    session = StoreSession("s", DictStore(), owns_store=False)
    await session.aclose()
    with pytest.raises(SessionClosedError, match=f"{method}\\(\\)"):
        await CALLS[method](session)


async def test_session_closed_error_is_a_runtime_error() -> None:
    """Raises an error that callers catch as ``RuntimeError``."""
    session = StoreSession("s", DictStore(), owns_store=False)
    await session.aclose()
    with pytest.raises(RuntimeError):
        await session.get_items()


async def test_call_after_close_leaves_the_store_untouched() -> None:
    """Writes nothing to the store when ``add_items`` is refused on a closed session."""
    store = DictStore()
    session = StoreSession("s", store, owns_store=False)
    await session.aclose()
    with pytest.raises(SessionClosedError):
        await session.add_items([message("late")])  # type: ignore[list-item]
    assert store.count_rows("s") == 0


async def test_aclose_twice_closes_an_owned_store_once() -> None:
    """Closes an owned store on the first ``aclose()`` and does nothing on the second."""
    store = ClosingCountStore()
    session = StoreSession("s", store, owns_store=True)
    await session.aclose()
    await session.aclose()
    assert store.closed == 1
    assert session.state is SessionState.CLOSED


async def test_aclose_leaves_a_borrowed_store_open() -> None:
    """Never closes a store the session was given with ``owns_store=False``."""
    store = ClosingCountStore()
    await StoreSession("s", store, owns_store=False).aclose()
    assert store.closed == 0


async def test_async_with_returns_the_session_and_closes_it() -> None:
    """Yields the session itself from ``async with`` and closes it on exit."""
    store = ClosingCountStore()
    session = StoreSession("s", store, owns_store=True)
    async with session as entered:
        assert entered is session
        await entered.add_items([message("inside")])  # type: ignore[list-item]
    assert session.state is SessionState.CLOSED
    assert store.closed == 1
    with pytest.raises(SessionClosedError):
        await session.get_items()


async def test_async_with_closes_on_error() -> None:
    """Closes the session when the ``async with`` body raises."""
    session = StoreSession("s", DictStore(), owns_store=False)
    with pytest.raises(KeyError):
        async with session:
            raise KeyError("boom")
    assert session.state is SessionState.CLOSED


async def test_items_survive_on_a_shared_store_after_close() -> None:
    """Leaves stored items readable by a new session on the same store after closing."""
    store = DictStore()
    async with StoreSession("s", store, owns_store=False) as first:
        await filled(first, 2)
    again = StoreSession("s", store, owns_store=False)
    assert [item.get("content") for item in await again.get_items()] == ["m0", "m1"]


# --- the reference store --------------------------------------------------------------------

STORE_CALLS: dict[str, Callable[[DictStore], Awaitable[object]]] = {
    "read": lambda store: store.read("s", None),
    "append": lambda store: store.append("s", ['{"n":0}']),
    "pop": lambda store: store.pop("s", lambda text: text),
    "clear": lambda store: store.clear("s"),
}


@pytest.mark.parametrize("method", STORE_CALLS)
async def test_reference_store_refuses_calls_after_aclose(method: str) -> None:
    """Raises ``SessionClosedError`` from the reference store after ``aclose`` (see ``Store``)."""
    store = DictStore()
    await store.aclose()
    with pytest.raises(SessionClosedError):
        await STORE_CALLS[method](store)


async def test_a_settling_future_is_awaited_to_its_end_by_a_cancelled_caller() -> None:
    """A cancelled caller of a Settling mutation returns only after it settled, and says so."""
    loop = asyncio.get_running_loop()
    future: Settling[str] = Settling(loop=loop)
    seen: list[tuple[str, bool]] = []

    async def caller() -> None:
        seen.append(await run_to_completion(future))

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert not future.cancelled()
    assert not task.done()  # still waiting for the mutation
    future.set_result("done")
    await asyncio.sleep(0)
    assert task.done()
    assert seen == [("done", True)]


async def test_a_settling_future_keeps_its_error_for_a_cancelled_caller() -> None:
    """A mutation that fails is reported as its error, even to a caller that was cancelled."""
    future: Settling[None] = Settling(loop=asyncio.get_running_loop())
    task = asyncio.create_task(run_to_completion(future))
    await asyncio.sleep(0)
    task.cancel()
    future.set_exception(OSError("disk"))
    with pytest.raises(OSError, match="disk"):
        await task


async def test_an_uncancelled_settling_future_returns_its_result() -> None:
    """Awaited without a cancellation, a Settling future gives its result and False."""
    future: Settling[int] = Settling(loop=asyncio.get_running_loop())
    asyncio.get_running_loop().call_soon(future.set_result, 7)
    assert await run_to_completion(future) == (7, False)

"""Malformed input, fuzzed with Hypothesis: each batch round-trips exactly or is refused whole.

Batches mix items that JSON carries exactly (nested dicts and lists, any string including lone
surrogates and NUL, integers up to Python's 4,300-digit limit, finite floats including -0.0 and
subnormals, strings up to 300 KB) with values it would change or cannot carry (NaN, infinities,
longer integers, tuples, sets, bytes, objects, subclasses of str and dict, non-string keys, items
that are not dicts). An oracle written here says which batches are storable. A storable batch
must come back equal, type for type and key order included; any other must raise
ItemValidationError (a TypeError) naming the first bad item, with no row stored. After every
example the session takes and returns a plain item, then is cleared for the next.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from agents.memory import Session
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from agent_sessions import (
    EncryptedSession,
    ItemValidationError,
    SQLAlchemySession,
    SQLiteSession,
    SQLiteStore,
)
from tests.conftest import count_rows_sqlite
from tests.reliability.conftest import SESSION_BACKENDS, SqlTarget

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EXAMPLES = 200
SESSION = "fuzz"


class Text(str):
    """A str subclass: JSON would store it, but it would come back as a plain str."""


class Mapping(dict):  # type: ignore[type-arg]
    """A dict subclass: JSON would store it, but it would come back as a plain dict."""


# The oracle ------------------------------------------------------------------------------------


def storable(value: object) -> bool:
    """Whether JSON gives ``value`` back exactly: same types, same numbers, same keys."""
    kind = type(value)
    if kind is int:
        try:  # what json does: more digits than sys.get_int_max_str_digits() raise
            str(value)
        except ValueError:
            return False
        return True
    if kind is float:
        return math.isfinite(cast(float, value))
    if kind is list:
        return all(storable(child) for child in cast(list[object], value))
    if kind is dict:
        pairs = cast(dict[object, object], value).items()
        return all(type(key) is str and storable(child) for key, child in pairs)
    return value is None or kind in (bool, str)


def same(left: object, right: object) -> bool:
    """Equality that tells True from 1, 1.0 from 1, -0.0 from 0.0, and minds key order."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float):
        assert isinstance(right, float)
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return left == right


def first_unstorable(batch: list[Any]) -> int | None:
    """The index of the first item the oracle refuses, or None if all are storable."""
    for index, entry in enumerate(batch):
        if type(entry) is not dict or not storable(entry):
            return index
    return None


# The strategies --------------------------------------------------------------------------------

LIMIT = sys.get_int_max_str_digits()


def huge(digits: int, negative: bool) -> int:
    """An integer of ``digits`` nines (built, never sampled: Hypothesis reprs its samples)."""
    value: int = 10**digits - 1
    return -value if negative else value


ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates and NUL included
TEXT = st.text(ANY_CHAR, max_size=12)
BIG_TEXT = st.builds(lambda c, n: c * n, ANY_CHAR, st.integers(10_000, 300_000))
GOOD_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**64), 2**64 + 1]),
    st.builds(huge, st.integers(19, LIMIT), st.booleans()),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 5e-324, 1.7976931348623157e308, 1e16, 0.1]),
    TEXT,
    TEXT,
    BIG_TEXT,
)
BAD_LEAF = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.builds(huge, st.integers(LIMIT + 1, LIMIT + 100), st.booleans()),
    st.binary(max_size=8),
    st.tuples(GOOD_LEAF),
    st.frozensets(st.integers(), max_size=2),
    st.builds(complex, st.floats(allow_nan=False), st.floats(allow_nan=False)),
    st.builds(Text, TEXT),
    st.builds(object),
)
BAD_KEY = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.tuples(st.integers()))


def nested(leaf: st.SearchStrategy[Any], key: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Values built from ``leaf`` in lists and dicts (keyed by ``key``), a few levels deep."""
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(key, children, max_size=4)
        ),
        max_leaves=12,
    )


GOOD_VALUE = nested(GOOD_LEAF, TEXT)
ANY_VALUE = nested(st.one_of(GOOD_LEAF, GOOD_LEAF, BAD_LEAF), st.one_of(TEXT, TEXT, BAD_KEY))
GOOD_ITEM = st.dictionaries(TEXT, GOOD_VALUE, max_size=5)
ANY_ITEM = st.one_of(
    st.dictionaries(st.one_of(TEXT, TEXT, BAD_KEY), ANY_VALUE, max_size=5),
    st.builds(Mapping, GOOD_ITEM),
    ANY_VALUE,
)
BATCH = st.one_of(
    st.lists(GOOD_ITEM, min_size=1, max_size=3),
    st.lists(st.one_of(GOOD_ITEM, ANY_ITEM), min_size=1, max_size=3),
)


# The sessions ----------------------------------------------------------------------------------


@dataclass
class Opened:
    """A session under test and a raw count of its rows."""

    session: Session
    count: Callable[[], Awaitable[int]]


async def _sqlite_count(path: Path) -> int:
    return count_rows_sqlite(path, SESSION)


@pytest.fixture(params=SESSION_BACKENDS)
async def opened(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opened]:
    """One session on a fresh database of each backend, reused by every example."""
    name: str = request.param
    path = tmp_path / "fuzz.db"
    if name.startswith("sqlalchemy-"):
        target = SqlTarget(name.removeprefix("sqlalchemy-"), tmp_path)
        session = SQLAlchemySession(
            SESSION,
            engine=target.engine,
            create_tables=True,
            sessions_table=target.tables[0],
            messages_table=target.tables[1],
        )

        async def count() -> int:
            return len(await target.rows(SESSION))

        assert await session.get_items() == []  # creates the tables before any count
        yield Opened(session, count)
        await session.close()
        await target.cleanup()
        return
    store = SQLiteStore(path) if name == "sqlite-shared" else None
    plain = store.session(SESSION) if store else SQLiteSession(SESSION, path)
    wrapped = None
    if name == "encrypted-sqlite":
        wrapped = EncryptedSession(SESSION, plain, Fernet.generate_key().decode())
    assert await plain.get_items() == []  # the file and its tables exist from here
    yield Opened(wrapped or plain, lambda: _sqlite_count(path))
    await (wrapped or plain).aclose()
    if store is not None:
        await store.aclose()


PROBE = {"role": "user", "content": "still usable"}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(batch=BATCH)
@example(batch=[{"role": "user", "content": "\U0001f600" * 200_000, "more": "x" * 5_000_000}])
@example(batch=[{"a": [1, 2]}, {"b": (1, 2)}])
@example(batch=[{"n": -0.0, "m": 10**300, "s": "\ud800\x00"}, {1: "x"}])
async def test_malformed_batches_are_refused_whole_or_round_trip(
    opened: Opened, batch: list[Any]
) -> None:
    """200 fuzzed batches per backend: each round-trips exactly or is refused with 0 rows stored.

    The session stays usable after every refusal.
    """
    session = opened.session
    bad = first_unstorable(batch)
    event("stored" if bad is None else "refused")
    if bad is None:
        await session.add_items(batch)
        back = await session.get_items()
        assert same(back, batch), "a storable batch did not come back exactly"
        assert await opened.count() == len(batch)
    else:
        with pytest.raises(ItemValidationError) as refused:
            await session.add_items(batch)
        assert isinstance(refused.value, TypeError)
        assert refused.value.index == bad
        assert f"item {bad} " in str(refused.value)
        assert await opened.count() == 0, "a refused batch left rows behind"
        assert await session.get_items() == []
    await session.add_items([PROBE])  # type: ignore[list-item]
    assert (await session.get_items(1)) == [PROBE]
    assert await session.pop_item() == PROBE
    await session.clear_session()
    assert await opened.count() == 0


def nest(depth: int) -> list[Any]:
    """A list nested ``depth`` levels deep."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def depth_of(value: object) -> int:
    """How deep lists are nested in ``value`` (iteratively: the value may be very deep)."""
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    return depth


@pytest.mark.sqlite
async def test_absurdly_deep_item_is_refused(tmp_path: Path) -> None:
    """An item nested 100,000 levels deep is refused with 0 rows stored; the session goes on."""
    path = tmp_path / "deep.db"
    async with SQLiteSession(SESSION, path) as session:
        assert await session.get_items() == []  # the file and its tables exist from here
        with pytest.raises(ItemValidationError, match="item 0 "):
            await session.add_items([{"v": nest(100_000)}])  # type: ignore[list-item]
        assert count_rows_sqlite(path, SESSION) == 0
        await session.add_items([PROBE])  # type: ignore[list-item]
        assert await session.get_items() == [PROBE]


@pytest.mark.sqlite
async def test_deepest_accepted_item_comes_back(tmp_path: Path) -> None:
    """The most deeply nested item add_items accepts (found by bisection) comes back intact."""
    path = tmp_path / "deep.db"
    async with SQLiteSession(SESSION, path) as session:
        low, high = 1, 5_000
        while low < high:
            middle = (low + high + 1) // 2
            try:
                await session.add_items([{"v": nest(middle)}])  # type: ignore[list-item]
            except ItemValidationError:
                high = middle - 1
            else:
                low = middle
            await session.clear_session()
        await session.add_items([{"v": nest(low)}])  # type: ignore[list-item]
        assert count_rows_sqlite(path, SESSION) == 1
        back = await session.get_items()
        assert [depth_of(stored["v"]) for stored in back] == [low]  # type: ignore[typeddict-item]

"""Conformance checks of storing: values, names, TTL, lifecycle, persistence, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from ...errors import InvalidNamespaceError, SessionClosedError
from .harness import TOLERANCE, ManualClock, MemoryHarness, expect, raises

__all__ = [
    "check_closed_store_refuses",
    "check_concurrent_puts",
    "check_delete",
    "check_invalid_names_refused",
    "check_overwrite_keeps_creation",
    "check_persistence",
    "check_put_get",
    "check_returned_values_are_copies",
    "check_ttl_expiry_and_sweep",
    "check_ttl_refresh",
    "check_unicode_and_large_values",
    "check_unstorable_values_refused",
]


async def check_put_get(h: MemoryHarness) -> None:
    """A stored value comes back equal, with its namespace, key and UTC timestamps."""
    store = await h.store()
    value = {"text": "likes tea", "n": [1, 2.5, None], "ok": True}
    await store.put(("put-get", "alice"), "drink", value)
    item = await store.get(("put-get", "alice"), "drink")
    expect(item is not None and item.value == value, f"round trip changed the value: {item}")
    assert item is not None  # noqa: S101 - narrowed for the type checker
    expect(item.namespace == ("put-get", "alice") and item.key == "drink", "wrong identity")
    expect(item.created_at.tzinfo is UTC, "timestamps are not UTC-aware")
    expect(await store.get(("put-get", "alice"), "nope") is None, "a missing key was found")
    await store.put(("put-get", "alice"), "drink ", {"text": "trailing space"})
    await store.put(("put-get", "alice"), "Drink", {"text": "capital"})
    again = await store.get(("put-get", "alice"), "drink")
    expect(again is not None and again.value == value, "keys differing in case or spaces met")


async def check_overwrite_keeps_creation(h: MemoryHarness) -> None:
    """Putting a key again replaces the value, moves updated_at and keeps created_at."""
    clock = ManualClock()
    store = await h.store(clock=clock)
    await store.put(("overwrite",), "k", {"v": 1})
    clock.advance(5)
    await store.put(("overwrite",), "k", {"v": 2})
    item = await store.get(("overwrite",), "k")
    expect(item is not None and item.value == {"v": 2}, "the value was not replaced")
    assert item is not None  # noqa: S101
    age = (item.updated_at - item.created_at).total_seconds()
    expect(abs(age - 5) < TOLERANCE, f"created_at not kept on overwrite ({age}s apart)")


async def check_delete(h: MemoryHarness) -> None:
    """Deleting removes one memory and says whether it existed; others stay."""
    store = await h.store()
    await store.put(("delete",), "a", {"v": 1})
    await store.put(("delete",), "b", {"v": 2})
    expect(await store.delete(("delete",), "a") is True, "delete of a stored key not True")
    expect(await store.delete(("delete",), "a") is False, "second delete not False")
    expect(await store.get(("delete",), "a") is None, "deleted memory still returned")
    expect(await store.get(("delete",), "b") is not None, "delete removed another memory")


async def check_invalid_names_refused(h: MemoryHarness) -> None:
    """Empty, non-str or separator-holding namespaces and keys raise and store nothing."""
    store = await h.store()
    bad: list[tuple[Any, Any]] = [
        ((), "k"),
        (("",), "k"),
        (("a\x1fb",), "k"),
        (("a\x00",), "k"),
        ("alice", "k"),
        ((1,), "k"),
        (("names",), ""),
        (("names",), "x" * 256),
    ]
    for namespace, key in bad:
        await raises(store.put(namespace, key, {"v": 1}), InvalidNamespaceError, f"{namespace!r}")
    await raises(store.search(("",)), InvalidNamespaceError, "search(('',))")
    expect(await store.search(("names",)) == [], "a refused put stored something")


async def check_unstorable_values_refused(h: MemoryHarness) -> None:
    """A value that would not round-trip raises TypeError and leaves the old value stored."""
    store = await h.store()
    await store.put(("values",), "k", {"v": "kept"})
    for bad in ({"x": float("nan")}, {"x": (1, 2)}, {1: "int key"}, {"x": object()}, ["list"]):
        await raises(store.put(("values",), "k", bad), TypeError, f"put({bad!r:.30})")  # type: ignore[arg-type]
    item = await store.get(("values",), "k")
    expect(item is not None and item.value == {"v": "kept"}, "a refused put changed the value")


async def check_unicode_and_large_values(h: MemoryHarness) -> None:
    """Any Unicode text, nested values and a 1 MB value round-trip exactly."""
    store = await h.store()
    value = {
        "text": "héllo — 你好 — 🙂 — \u0000 — \ud800",
        "big": "x" * 1_000_000,
        "n": {"a": [{}]},
    }
    await store.put(("unicode", "ünï"), "ключ", value)
    item = await store.get(("unicode", "ünï"), "ключ")
    expect(item is not None and item.value == value, "value changed in a round trip")


async def check_returned_values_are_copies(h: MemoryHarness) -> None:
    """Changing a value given to put, or one returned, does not change what is stored."""
    store = await h.store()
    value: dict[str, Any] = {"list": [1]}
    await store.put(("copies",), "k", value)
    value["list"].append(2)
    item = await store.get(("copies",), "k")
    assert item is not None  # noqa: S101
    item.value["list"].append(3)
    again = await store.get(("copies",), "k")
    expect(again is not None and again.value == {"list": [1]}, "stored value was changed")


async def check_ttl_expiry_and_sweep(h: MemoryHarness) -> None:
    """An expired memory is never returned, sweep deletes it, and a new put starts it afresh."""
    clock = ManualClock()
    store = await h.store(clock=clock)
    await store.put(("ttl", "u"), "short", {"text": "short lived"}, ttl=10)
    await store.put(("ttl", "u"), "long", {"text": "long lived"})
    clock.advance(11)
    expect(await store.get(("ttl", "u"), "short") is None, "get returned an expired memory")
    keys = [i.key for i in await store.search(("ttl",), query="lived")]
    expect(keys == ["long"], f"search returned an expired memory: {keys}")
    await store.delete(("ttl", "u"), "long")
    expect(await store.list_namespaces(prefix=("ttl",)) == [], "listed an expired namespace")
    expect(await store.sweep() >= 1, "sweep deleted nothing")
    await store.put(("ttl", "u"), "short", {"text": "again"})
    item = await store.get(("ttl", "u"), "short")
    expect(item is not None and item.created_at == item.updated_at, "not stored afresh")


async def check_ttl_refresh(h: MemoryHarness) -> None:
    """Reading with refresh_ttl restarts the TTL; reading without it does not."""
    clock = ManualClock()
    store = await h.store(clock=clock)
    await store.put(("refresh",), "kept", {"text": "x"}, ttl=10)
    await store.put(("refresh",), "lost", {"text": "x"}, ttl=10)
    clock.advance(6)
    await store.get(("refresh",), "kept", refresh_ttl=True)
    await store.get(("refresh",), "lost")
    clock.advance(6)
    expect(await store.get(("refresh",), "kept") is not None, "refresh_ttl did not extend")
    expect(await store.get(("refresh",), "lost") is None, "a plain read extended the TTL")
    await store.search(("refresh",), refresh_ttl=True)
    clock.advance(8)
    expect(await store.get(("refresh",), "kept") is not None, "search did not refresh the TTL")


async def check_closed_store_refuses(h: MemoryHarness) -> None:
    """After aclose every method raises SessionClosedError naming itself; aclose is idempotent."""
    store = await h.store()
    await store.aclose()
    await store.aclose()
    try:
        await store.get(("closed",), "k")
    except SessionClosedError as exc:
        expect("get" in str(exc), f"the error does not name the method: {exc}")
    else:
        expect(False, "get after aclose did not raise SessionClosedError")
    await raises(store.put(("closed",), "k", {}), SessionClosedError, "put after aclose")


async def check_persistence(h: MemoryHarness) -> None:
    """A new store on the same database sees what a closed one stored."""
    if not h.persistent:
        return
    first = await h.store()
    await first.put(("persist",), "k", {"v": 1})
    await first.aclose()
    second = await h.store()
    item = await second.get(("persist",), "k")
    expect(item is not None and item.value == {"v": 1}, "memory lost on reopen")


async def check_concurrent_puts(h: MemoryHarness) -> None:
    """Concurrent puts lose nothing, and racing puts on one key leave exactly one value."""
    store = await h.store()
    await asyncio.gather(*(store.put(("concurrent",), f"k{n}", {"n": n}) for n in range(40)))
    found = await store.search(("concurrent",), limit=100)
    expect(sorted(i.value["n"] for i in found) == list(range(40)), "concurrent puts lost")
    await asyncio.gather(*(store.put(("race",), "one", {"n": n}) for n in range(20)))
    race = await store.search(("race",))
    expect(len(race) == 1 and race[0].value["n"] in range(20), f"racing puts left {race}")

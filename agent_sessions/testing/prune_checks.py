"""The checks of ``prune``: whole old turns removed in place, in one transaction.

A long conversation is trimmed to its newest turns with ``await session.prune(keep_last_turns=N)``.
These checks hold a session to removing whole turns only (a turn is a user message and what
follows it up to the next one), never the latest user message, never one half of a tool call,
never a ``system`` item unless told, and never a row it cannot read; to reporting what it removed;
and to leaving the old history or the pruned one when the pruning task is cancelled.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from agents.items import TResponseInputItem

from .checks import ConformanceError
from .sessions import Harness, _exchange, _maybe_await, _quiet, message

__all__ = ["PRUNE_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


def _prune(session: object) -> Any:
    prune = getattr(session, "prune", None)
    _expect(prune is not None, f"{type(session).__name__} has no prune()")
    return prune


def _turns(first: int, last: int) -> list[TResponseInputItem]:
    """The exchanges ``first`` to ``last - 1``, four items each."""
    return [item for n in range(first, last) for item in _exchange(n)]


def _counts(report: Any) -> tuple[int, int, int, int]:
    return (
        report.removed_items,
        report.removed_turns,
        report.kept_items,
        report.kept_unreadable,
    )


async def check_prune_keeps_newest_turns(h: Harness) -> None:
    """Turns before the newest N go, the preamble with them; later adds follow the rest."""
    session = await h.session("prune")
    prune = _prune(session)
    await session.add_items([message("welcome", "assistant")])
    await session.add_items(_turns(0, 5))
    report = await prune(keep_last_turns=2)
    _expect(await session.get_items() == _turns(3, 5), "prune kept the wrong items")
    _expect(_counts(report) == (13, 3, 8, 0), f"prune reported {report!r}")
    await session.add_items(_turns(5, 6))
    _expect(await session.get_items() == _turns(3, 6), "an add after prune went astray")
    report = await prune(keep_last_turns=1)
    _expect(await session.get_items() == _turns(5, 6), "the latest turn was not the one kept")
    _expect(_counts(report) == (8, 2, 4, 0), f"the second prune reported {report!r}")


async def check_prune_dry_run_writes_nothing(h: Harness) -> None:
    """A dry run reports what a prune would remove and changes nothing."""
    session = await h.session("prune-dry")
    prune = _prune(session)
    await session.add_items(_turns(0, 4))
    report = await prune(keep_last_turns=1, dry_run=True)
    _expect(_counts(report) == (12, 3, 4, 0), f"the dry run reported {report!r}")
    _expect(await session.get_items() == _turns(0, 4), "a dry run changed the history")


async def check_prune_refuses_bad_counts(h: Harness) -> None:
    """keep_last_turns below 1 is a ValueError, a non-int a TypeError; nothing changes."""
    session = await h.session("prune-bad")
    prune = _prune(session)
    await session.add_items(_turns(0, 3))
    bad: list[tuple[object, type[Exception]]] = [
        (0, ValueError),
        (-1, ValueError),
        (True, TypeError),
        (1.5, TypeError),
        ("2", TypeError),
        (None, TypeError),
    ]
    for value, error in bad:
        try:
            await prune(keep_last_turns=value)
        except error:
            continue
        except Exception as exc:
            raise ConformanceError(
                f"prune(keep_last_turns={value!r}) raised {type(exc).__name__}, not "
                f"{error.__name__}"
            ) from exc
        raise ConformanceError(f"prune(keep_last_turns={value!r}) did not raise")
    _expect(await session.get_items() == _turns(0, 3), "a refused prune changed the history")


def _with_rules() -> list[TResponseInputItem]:
    """A system item first, a developer item inside the first turn, then three exchanges."""
    return [
        message("rules", "system"),
        *_exchange(0)[:2],
        message("be brief", "developer"),
        *_exchange(0)[2:],
        *_turns(1, 3),
    ]


async def check_prune_keeps_system_items(h: Harness) -> None:
    """System and developer items outlive pruned turns, unless keep_system=False."""
    kept = await h.session("prune-system")
    await kept.add_items(_with_rules())
    await _prune(kept)(keep_last_turns=1)
    expected = [message("rules", "system"), message("be brief", "developer"), *_exchange(2)]
    _expect(await kept.get_items() == expected, "a system or developer item was removed")
    dropped = await h.session("prune-no-system")
    await dropped.add_items([*_with_rules(), message("stay short", "system")])
    report = await _prune(dropped)(keep_last_turns=1, keep_system=False)
    tail = [*_exchange(2), message("stay short", "system")]
    _expect(await dropped.get_items() == tail, "keep_system=False kept old system items")
    _expect(report.removed_items == 10, f"keep_system=False reported {report!r}")


async def check_prune_keeps_tool_pairs(h: Harness) -> None:
    """A turn whose tool call has its output in a kept turn is kept whole with it."""
    session = await h.session("prune-pairs")
    first, second, third = _exchange(0), _exchange(1), _exchange(2)
    # The output of turn 1's call was stored after turn 2's user message.
    history = [*first, *second[:2], third[0], second[2], *third[1:], *_turns(3, 5)]
    await session.add_items(history)
    report = await _prune(session)(keep_last_turns=3)
    _expect(await session.get_items() == history[4:], "prune split a function call pair")
    _expect(_counts(report) == (4, 1, 15, 0), f"prune reported {report!r}")


async def check_prune_keeps_unreadable_rows(h: Harness) -> None:
    """A row that cannot be decoded in a pruned turn stays stored, and the report counts it."""
    if h.write_raw is None or h.count_rows is None:
        return
    session = await h.session("prune-corrupt")
    prune = _prune(session)
    await session.add_items(_turns(0, 1))
    await _maybe_await(h.write_raw("prune-corrupt", "{not json"))
    await session.add_items(_turns(1, 3))
    with _quiet():
        report = await prune(keep_last_turns=1)
        items = await session.get_items()
    _expect(items == _turns(2, 3), "prune kept the wrong readable items")
    _expect(_counts(report) == (8, 2, 5, 1), f"prune reported {report!r}")
    stored = await _maybe_await(h.count_rows("prune-corrupt"))
    _expect(stored == 5, f"the undecodable row was not kept ({stored} rows stored)")


async def check_prune_without_old_turns(h: Harness) -> None:
    """With no more turns than asked for, or no user message at all, nothing is removed."""
    session = await h.session("prune-short")
    prune = _prune(session)
    report = await prune(keep_last_turns=1)
    _expect(_counts(report) == (0, 0, 0, 0), f"an empty session reported {report!r}")
    await session.add_items([message("welcome", "assistant")])
    report = await prune(keep_last_turns=1)
    _expect(_counts(report) == (0, 0, 1, 0), f"a session with no turn reported {report!r}")
    await session.add_items(_turns(0, 2))
    report = await prune(keep_last_turns=2)
    _expect(_counts(report) == (0, 0, 9, 0), f"a session of two turns reported {report!r}")
    expected = [message("welcome", "assistant"), *_turns(0, 2)]
    _expect(await session.get_items() == expected, "prune removed items it had to keep")


async def check_cancelled_prune_is_whole(h: Harness) -> None:
    """A task cancelled at a random point of prune leaves the old history or the pruned one."""
    session = await h.session("prune-cancel")
    rng = random.Random(18)  # noqa: S311 (where to cancel, not a secret)
    added = 0
    for _ in range(12):
        await session.add_items(_turns(added, added + 3))
        added += 3
        before = await session.get_items()
        pruned = before[-8:]
        task = asyncio.ensure_future(_prune(session)(keep_last_turns=2))
        for _ in range(rng.randrange(8)):
            await asyncio.sleep(0)
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        after = await session.get_items()
        _expect(after in (before, pruned), f"a cancelled prune left {len(after)} mixed items")
    final = await session.get_items()
    _expect(len(final) % 4 == 0, "a cancelled prune tore an exchange")
    _expect(final[-8:] == _turns(added - 2, added), "the newest turns are gone")


PRUNE_CHECKS = [
    check_prune_keeps_newest_turns,
    check_prune_dry_run_writes_nothing,
    check_prune_refuses_bad_counts,
    check_prune_keeps_system_items,
    check_prune_keeps_tool_pairs,
    check_prune_keeps_unreadable_rows,
    check_prune_without_old_turns,
    check_cancelled_prune_is_whole,
]
"""The ``prune`` checks, run with the others (see ``CHECKS``)."""

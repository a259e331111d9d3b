"""The checks of the archive: what compaction and archiving prunes take out of a history.

A compaction swaps a history's prefix for its summary through the session's compaction snapshot
(``archive_prefix``, what ``CompactingSession`` calls); ``prune(archive=True)`` moves old turns.
Both keep the removed items, readable with ``archived_items()`` in order, and ``uncompact()``
puts a compaction's items back in place of its summary, newest compaction first. A session
without an archive (the SDK's classes, branches) is skipped by capability.
"""

from __future__ import annotations

from typing import Any

from ..errors import StorageError
from .checks import ConformanceError
from .sessions import Harness, _texts, message

__all__ = ["ARCHIVE_CHECKS"]


def _expect(condition: bool, text: str) -> None:
    if not condition:
        raise ConformanceError(text)


def _turns(*names: str) -> list[Any]:
    return [m for name in names for m in (message(name), message(f"re {name}", "assistant"))]


async def _compact(session: Any, keep_items: int, summary: str) -> None:
    """Swap all but the newest ``keep_items`` items for one summary, archiving them."""
    snapshot = await session._get_compaction_snapshot(2**62)  # noqa: SLF001 - the hook under test
    archive = getattr(snapshot, "archive_prefix", None)
    _expect(archive is not None, f"{type(session).__name__} offers no archiving compaction")
    assert archive is not None  # noqa: S101 (for the type checker)
    items = list(snapshot.items)
    cut = len(items) - keep_items
    output = [message(summary, "system"), *items[cut:]]
    _expect(await archive(cut, output, 1), "the archiving swap did not happen")


def _archive_api(session: object) -> None:
    for name in ("archived_items", "uncompact"):
        _expect(hasattr(session, name), f"{type(session).__name__} has no {name}()")


async def check_compaction_is_archived_and_undone(h: Harness) -> None:
    """A compaction's items are archived in order; uncompact restores them, newest first."""
    session: Any = await h.session("archive")
    _archive_api(session)
    await session.add_items(_turns("a", "b", "c"))
    await _compact(session, 2, "S1")
    _expect(_texts(await session.get_items()) == ["S1", "c", "re c"], "not compacted")
    archived = await session.archived_items()
    got = [(a.batch, a.kind, a.item["content"]) for a in archived]
    _expect(got == [(1, "compaction", t) for t in ("a", "re a", "b", "re b")], f"archive: {got}")
    await session.add_items(_turns("d"))
    await _compact(session, 2, "S2")
    archived = await session.archived_items()
    _expect([a.batch for a in archived] == [1] * 4 + [2] * 3, "second batch not numbered 2")
    await session.add_items(_turns("e"))
    _expect(await session.uncompact() == 3, "uncompact did not restore the newest compaction")
    want = ["S1", "c", "re c", "d", "re d", "e", "re e"]
    _expect(_texts(await session.get_items()) == want, "newest compaction not undone in place")
    _expect(await session.uncompact() == 4, "a second uncompact did not walk back")
    want = ["a", "re a", "b", "re b", "c", "re c", "d", "re d", "e", "re e"]
    _expect(_texts(await session.get_items()) == want, "the first compaction not undone")
    _expect(await session.uncompact() == 0, "uncompact with nothing archived changed something")
    _expect(await session.archived_items() == [], "restored items stayed archived")


async def check_prune_archive(h: Harness) -> None:
    """prune(archive=True) moves the old turns into the archive instead of deleting them."""
    session: Any = await h.session("archive-prune")
    _archive_api(session)
    await session.add_items(_turns("a", "b", "c"))
    report = await session.prune(keep_last_turns=1, archive=True)
    _expect(report.removed_items == 4, f"prune removed {report.removed_items} items")
    _expect(_texts(await session.get_items()) == ["c", "re c"], "prune kept the wrong turns")
    archived = [(a.kind, a.item["content"]) for a in await session.archived_items()]
    _expect(archived == [("prune", t) for t in ("a", "re a", "b", "re b")], f"got {archived}")
    _expect(await session.uncompact() == 0, "uncompact restored a prune")
    dry = await session.prune(keep_last_turns=1, archive=True, dry_run=True)
    _expect(dry.removed_items == 0, "a dry run found turns to remove")


async def check_clear_removes_archive(h: Harness) -> None:
    """clear_session deletes the session's archive; other sessions keep theirs."""
    session: Any = await h.session("archive-clear")
    other: Any = await h.session("archive-other")
    _archive_api(session)
    for each in (session, other):
        await each.add_items(_turns("a", "b"))
        await each.prune(keep_last_turns=1, archive=True)
    await session.clear_session()
    _expect(await session.archived_items() == [], "clear_session left the archive behind")
    _expect(len(await other.archived_items()) == 2, "clearing one session cleared another's")


async def check_uncompact_refuses_a_moved_summary(h: Harness) -> None:
    """Uncompact refuses, changing nothing, when the summary is no longer where it was put."""
    session: Any = await h.session("archive-moved")
    _archive_api(session)
    await session.add_items(_turns("a", "b"))
    await _compact(session, 2, "S")
    await session.replace_items([message("rewritten")])
    try:
        await session.uncompact()
    except StorageError:
        pass
    else:
        raise ConformanceError("uncompact restored over a history that lost its summary")
    _expect(_texts(await session.get_items()) == ["rewritten"], "a refused uncompact wrote")
    _expect(len(await session.archived_items()) == 2, "a refused uncompact dropped the archive")


ARCHIVE_CHECKS = [
    check_compaction_is_archived_and_undone,
    check_prune_archive,
    check_clear_removes_archive,
    check_uncompact_refuses_a_moved_summary,
]
"""Every archive check, in a stable order."""

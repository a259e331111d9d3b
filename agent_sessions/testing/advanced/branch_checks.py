"""Advanced checks of branches: creating, switching, listing, deleting, and items on a branch."""

from __future__ import annotations

from functools import partial

from ..sessions import Harness, message
from .kit import (
    Unsupported,
    current_of,
    exchange,
    expect,
    history,
    items_on,
    open_advanced,
    refuses,
    takes_branch_id,
)

__all__ = [
    "check_branch_from_content",
    "check_branch_from_turn",
    "check_branch_ids_never_reused",
    "check_clear_on_branch_keeps_main",
    "check_clear_on_main_removes_branches",
    "check_current_branch",
    "check_delete_branch",
    "check_delete_branch_guards",
    "check_delete_keeps_forks",
    "check_get_items_by_branch_id",
    "check_limit_on_branch",
    "check_list_branches",
    "check_missing_turn_refused",
    "check_pop_on_branch_keeps_main",
    "check_pop_turn_on_branch",
    "check_second_object_sees_switch",
    "check_switch_back_and_forth",
    "check_unknown_branch_refused",
]


async def check_branch_from_turn(h: Harness) -> None:
    """create_branch_from_turn(n) switches to a new branch holding exactly the items before turn n.

    New items go to the branch, and ``main`` keeps its own.
    """
    session = await open_advanced(h, "fork")
    branch = await session.create_branch_from_turn(3, "retry")
    expect(branch == "retry", f"create_branch_from_turn returned {branch!r}, not the name given")
    expect(await session.get_items() == history(1, 2), "the branch is not the items before turn 3")
    await session.add_items([message("Question 3b")])
    expect(await session.get_items() == [*history(1, 2), message("Question 3b")], "write not on it")
    expect(
        await items_on(session, "main") == history(1, 2, 3), "main changed when a branch was made"
    )
    generated = await session.create_branch_from_turn(2)
    expect(isinstance(generated, str) and generated.strip() != "", "no id was generated")
    expect(await session.get_items() == history(1), "a generated branch is not turn 1's items")


async def check_missing_turn_refused(h: Harness) -> None:
    """Branching from a turn the branch lacks (0, or past the last) raises ValueError, and stays."""
    session = await open_advanced(h, "no-turn", 2)
    for turn in (0, 3, 99):
        await refuses(partial(session.create_branch_from_turn, turn), f"turn {turn}")
    expect(
        current_of(await session.list_branches()) == ["main"], "a refused branch was switched to"
    )
    expect(await session.get_items() == history(1, 2), "a refused branch changed the items")


async def check_branch_from_content(h: Harness) -> None:
    """create_branch_from_content forks before the first user turn containing the term (any case).

    It switches to the fork; a term no user turn contains raises ValueError.
    """
    session = await open_advanced(h, "fork-content", 0, "create_branch_from_content")
    texts = ("Plan a trip", "Book a HOTEL in Rome", "Another hotel please")
    for text in texts:
        await session.add_items([message(text), message(f"re: {text}", role="assistant")])
    await refuses(lambda: session.create_branch_from_content("zebra", "none"), "no match")
    branch = await session.create_branch_from_content("hotel", "hotel")
    expect(branch == "hotel", f"create_branch_from_content returned {branch!r}")
    kept = [message(texts[0]), message(f"re: {texts[0]}", role="assistant")]
    expect(await session.get_items() == kept, "the fork is not the items before the first match")


async def check_switch_back_and_forth(h: Harness) -> None:
    """switch_to_branch changes what get_items returns, each way, and refuses an unknown branch."""
    session = await open_advanced(h, "switch")
    await session.create_branch_from_turn(2, "other")
    await session.add_items([message("only on other")])
    on_other = [*history(1), message("only on other")]
    for _ in range(2):
        expect(
            await items_on(session, "main") == history(1, 2, 3), "main reads wrong after a switch"
        )
        expect(
            await items_on(session, "other") == on_other, "the branch reads wrong after a switch"
        )
    await refuses(lambda: session.switch_to_branch("no-such-branch"), "switching to a missing one")
    expect(await session.get_items() == on_other, "a refused switch moved the session")


async def check_unknown_branch_refused(h: Harness) -> None:
    """Reading an unknown branch (items, turns, tool usage) raises ValueError, not ``[]``."""
    session = await open_advanced(h, "unknown-branch", 1)
    reads: list[tuple[str, tuple[object, ...]]] = [
        ("get_conversation_turns", ("nope",)),
        ("find_turns_by_content", ("Question", "nope")),
        ("get_conversation_by_turns", ("nope",)),
        ("get_tool_usage", ("nope",)),
        ("get_turn_usage", (None, "nope")),
    ]
    if takes_branch_id(session):
        reads.append(("get_items", (None, "nope")))
    for name, args in reads:
        method = getattr(session, name, None)
        if method is not None:
            await refuses(partial(method, *args), f"{name} on an unknown branch")


async def check_list_branches(h: Harness) -> None:
    """list_branches gives each branch's id, item and user-turn counts, creation time, and current.

    Counts are of the branch's visible history, inherited items included.
    """
    session = await open_advanced(h, "list")
    await session.create_branch_from_turn(3, "b")
    await session.add_items([message("Question 3b")])
    listed = await session.list_branches()
    keys = {"branch_id", "message_count", "user_turns", "created_at", "is_current"}
    expect(all(keys <= set(b) for b in listed), f"an entry lacks one of {sorted(keys)}")
    by_id = {b["branch_id"]: b for b in listed}
    expect(sorted(by_id) == ["b", "main"] and len(listed) == 2, f"listed {sorted(by_id)}")
    counts = {k: (v["message_count"], v["user_turns"]) for k, v in by_id.items()}
    expect(counts == {"main": (12, 3), "b": (9, 3)}, f"(items, user turns) are {counts}")
    expect(current_of(listed) == ["b"], f"current: {current_of(listed)}, not ['b']")
    expect(all(b["created_at"] is not None for b in listed), "a branch has no created_at")
    await session.switch_to_branch("main")
    expect(current_of(await session.list_branches()) == ["main"], "is_current ignores a switch")


async def check_delete_branch(h: Harness) -> None:
    """delete_branch removes a branch that is not current; main and the rest keep their items."""
    session = await open_advanced(h, "delete", 3, "delete_branch")
    for name in ("gone", "kept"):
        await session.create_branch_from_turn(2, name)
        await session.add_items([message(f"on {name}")])
    await session.switch_to_branch("main")
    await session.delete_branch("gone")
    listed = sorted(b["branch_id"] for b in await session.list_branches())
    expect(listed == ["kept", "main"], f"after deleting 'gone' the branches are {listed}")
    await refuses(lambda: session.switch_to_branch("gone"), "switching to a deleted branch")
    expect(await session.get_items() == history(1, 2, 3), "deleting a branch changed main")
    expect(
        await items_on(session, "kept") == [*history(1), message("on kept")], "a sibling changed"
    )


async def check_delete_branch_guards(h: Harness) -> None:
    """delete_branch refuses main, an unknown branch, and the current one unless force=True.

    Forcing deletes the current branch and switches to main.
    """
    session = await open_advanced(h, "delete-guards", 3, "delete_branch")
    await session.create_branch_from_turn(2, "current")
    await refuses(lambda: session.delete_branch("main"), "deleting main")
    await refuses(lambda: session.delete_branch("main", force=True), "deleting main by force")
    await refuses(lambda: session.delete_branch("missing"), "deleting an unknown branch")
    await refuses(lambda: session.delete_branch("current"), "deleting the current branch")
    expect(current_of(await session.list_branches()) == ["current"], "a refusal moved the session")
    await session.delete_branch("current", force=True)
    listed = await session.list_branches()
    expect([b["branch_id"] for b in listed] == ["main"], "the forced delete left the branch")
    expect(current_of(listed) == ["main"], "a forced delete did not switch to main")
    expect(await session.get_items() == history(1, 2, 3), "a forced delete changed main")


async def check_delete_keeps_forks(h: Harness) -> None:
    """Deleting a branch leaves every branch made from it showing exactly what it showed."""
    session = await open_advanced(h, "delete-parent", 3, "delete_branch")
    await session.create_branch_from_turn(3, "parent")
    own = [message("Question p1"), message("Answer p1", "assistant"), message("Question p2")]
    await session.add_items(own)
    await session.create_branch_from_turn(4, "child")
    await session.add_items([message("on child")])
    expected = [*history(1, 2), *own[:2], message("on child")]
    expect(await session.get_items() == expected, "the child is not its parent's first turns")
    await session.switch_to_branch("main")
    await session.delete_branch("parent")
    expect(
        await items_on(session, "child") == expected, "the child lost items when its parent went"
    )
    expect(
        await items_on(session, "main") == history(1, 2, 3),
        "main changed when a branch was deleted",
    )


async def check_branch_ids_never_reused(h: Harness) -> None:
    """A branch id used in the session is refused again, even if deleted or cleared; ids are new."""
    session = await open_advanced(h, "reuse", 2, "delete_branch")
    await session.create_branch_from_turn(2, "b")
    await session.switch_to_branch("main")
    await refuses(lambda: session.create_branch_from_turn(2, "b"), "reusing a live branch id")
    await refuses(lambda: session.create_branch_from_turn(2, "main"), "naming a branch 'main'")
    await session.delete_branch("b")
    await refuses(lambda: session.create_branch_from_turn(2, "b"), "reusing a deleted branch id")
    seen = {"main", "b"}
    for _ in range(3):
        generated = await session.create_branch_from_turn(2)
        expect(generated not in seen, f"generated id {generated!r} was used before")
        seen.add(generated)
        await session.switch_to_branch("main")
        await session.delete_branch(generated)
    await session.create_branch_from_turn(2, "cleared")
    await session.switch_to_branch("main")
    await session.clear_session()
    await session.add_items(exchange(1))
    await refuses(lambda: session.create_branch_from_turn(1, "cleared"), "reuse after a clear")


async def check_current_branch(h: Harness) -> None:
    """current_branch() names the branch reads and writes go to, following creation and switches."""
    session = await open_advanced(h, "current", 2, "current_branch")
    expect(await session.current_branch() == "main", "a new session is not on main")
    branch = await session.create_branch_from_turn(2)
    expect(await session.current_branch() == branch, "current_branch ignores a new branch")
    await session.switch_to_branch("main")
    expect(await session.current_branch() == "main", "current_branch ignores a switch")


async def check_second_object_sees_switch(h: Harness) -> None:
    """A second object on the same database follows the first's branch changes, both ways."""
    if not h.persistent:
        raise Unsupported(f"{h.name}: a second object does not reach the same database")
    first = await open_advanced(h, "shared-branch")
    second = await h.session("shared-branch")
    await first.create_branch_from_turn(2, "alt")
    await first.add_items([message("on alt")])
    expect(await second.get_items() == [*history(1), message("on alt")], "second missed the branch")
    await second.add_items([message("from second")])
    expected = [*history(1), message("on alt"), message("from second")]
    expect(await first.get_items() == expected, "the second object wrote elsewhere")
    await first.switch_to_branch("main")
    expect(await second.get_items() == history(1, 2, 3), "the second object missed a switch")


# --- items on a branch ------------------------------------------------------------------------


async def check_limit_on_branch(h: Harness) -> None:
    """get_items(limit) on a branch returns its newest N oldest-first, across the fork point."""
    session = await open_advanced(h, "branch-limit")
    await session.create_branch_from_turn(3, "b")
    await session.add_items([message("b1"), message("b2", role="assistant")])
    every = [*history(1, 2), message("b1"), message("b2", role="assistant")]
    for limit in (0, 1, 2, 3, 5, 9, 10, 11, 100):
        got = await session.get_items(limit)
        expect(got == every[len(every) - min(limit, 10) :], f"get_items({limit}) on a branch")


async def check_get_items_by_branch_id(h: Harness) -> None:
    """get_items(limit, branch_id=...) reads the named branch without switching to it."""
    session = await open_advanced(h, "by-id")
    if not takes_branch_id(session):
        raise Unsupported(f"{type(session).__name__}.get_items takes no branch_id")
    await session.create_branch_from_turn(2, "b")
    await session.add_items([message("on b")])
    expect(await session.get_items(branch_id="main") == history(1, 2, 3), "branch_id=main")
    expect(await session.get_items(2, branch_id="main") == history(3)[-2:], "limit with branch_id")
    expect(await session.get_items(branch_id="b") == [*history(1), message("on b")], "branch_id=b")
    expect(await session.get_items() == [*history(1), message("on b")], "branch_id switched branch")


async def check_pop_on_branch_keeps_main(h: Harness) -> None:
    """pop_item on a branch removes its newest item, inherited ones too, and leaves main whole."""
    session = await open_advanced(h, "branch-pop")
    await session.create_branch_from_turn(3, "b")
    await session.add_items([message("on b")])
    expect(await session.pop_item() == message("on b"), "pop did not return the branch's item")
    inherited = await session.pop_item()
    expect(inherited == history(2)[-1], f"the next pop returned {inherited!r}, not 'Answer 2'")
    expect(await session.get_items() == history(1, 2)[:-1], "the branch kept a popped item")
    expect(await items_on(session, "main") == history(1, 2, 3), "popping on a branch changed main")


async def check_pop_turn_on_branch(h: Harness) -> None:
    """pop_turn on a branch removes its last exchange, inherited or not, and leaves main whole."""
    session = await open_advanced(h, "branch-pop-turn", 3, "pop_turn")
    await session.create_branch_from_turn(3, "b")
    await session.add_items(exchange(7))
    expect(await session.pop_turn() == exchange(7), "pop_turn missed the branch's exchange")
    expect(await session.pop_turn() == exchange(2), "pop_turn missed the inherited exchange")
    expect(await session.get_items() == history(1), "the branch kept a popped exchange")
    expect(await items_on(session, "main") == history(1, 2, 3), "pop_turn on a branch changed main")


async def check_clear_on_branch_keeps_main(h: Harness) -> None:
    """clear_session on a branch empties that branch only; main and other branches keep theirs."""
    session = await open_advanced(h, "branch-clear")
    await session.create_branch_from_turn(2, "sibling")
    await session.switch_to_branch("main")
    await session.create_branch_from_turn(3, "cleared")
    await session.add_items([message("on cleared")])
    await session.clear_session()
    expect(await session.get_items() == [], "clear_session left items on the branch")
    expect(await items_on(session, "main") == history(1, 2, 3), "clearing a branch changed main")
    expect(
        await items_on(session, "sibling") == history(1), "clearing a branch changed another branch"
    )


async def check_clear_on_main_removes_branches(h: Harness) -> None:
    """clear_session on main deletes the whole session, every branch included."""
    session = await open_advanced(h, "main-clear")
    await session.create_branch_from_turn(2, "b")
    await session.add_items([message("on b")])
    await session.switch_to_branch("main")
    await session.clear_session()
    expect(await session.get_items() == [], "clear_session on main left items")
    left = [b["branch_id"] for b in await session.list_branches()]
    expect(set(left) <= {"main"}, f"branches {left} outlived clear_session on main")
    await refuses(lambda: session.switch_to_branch("b"), "switching to a cleared branch")

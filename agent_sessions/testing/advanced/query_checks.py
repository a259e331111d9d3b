"""Advanced checks of the queries: turns, tool counts, token usage, and the SDK's keyword names."""

from __future__ import annotations

from typing import Any, cast

from ..sessions import Harness, message
from .kit import (
    counted,
    exchange,
    expect,
    open_advanced,
    run_offline,
    tokens_of,
    totals,
)

__all__ = [
    "check_conversation_by_turns",
    "check_conversation_turns",
    "check_find_turns_by_content",
    "check_pop_drops_usage_of_emptied_turn",
    "check_run_usage",
    "check_sdk_keyword_names",
    "check_tool_usage",
    "check_turns_on_branch",
    "check_usage_per_branch",
    "check_usage_replaced",
]


async def check_conversation_turns(h: Harness) -> None:
    """get_conversation_turns numbers user turns from 1 and previews each at 100 characters.

    ``content`` is a string cut at 100 characters plus ``...``; ``full_content`` is as stored.
    """
    session = await open_advanced(h, "turns", 0, "get_conversation_turns")
    long_text, exact = "long " + "x" * 145, "y" * 100
    parts = [{"type": "input_text", "text": "part one"}, {"type": "input_text", "text": "two"}]
    for content in ("short", long_text, exact, parts):
        await session.add_items([message(cast(str, content)), message("reply", role="assistant")])
    turns = await session.get_conversation_turns()
    numbers = [t["turn"] for t in turns]
    expect(numbers == [1, 2, 3, 4], f"turns numbered {numbers}")
    previews = [t["content"] for t in turns]
    expect(previews[:3] == ["short", long_text[:100] + "...", exact], f"previews {previews[:3]}")
    expect(isinstance(previews[3], str), "a list of parts is not previewed as a string")
    full = [t["full_content"] for t in turns]
    expect(full == ["short", long_text, exact, parts], "full_content differs from what was stored")
    expect(all(t["can_branch"] is True and t["timestamp"] for t in turns), "can_branch/timestamp")


async def check_turns_on_branch(h: Harness) -> None:
    """On a branch, turns count its visible history: inherited turns first, then its own."""
    session = await open_advanced(h, "branch-turns", 3, "get_conversation_turns")
    await session.create_branch_from_turn(3, "b")
    await session.add_items([message("Question 3b")])
    turns = [(t["turn"], t["full_content"]) for t in await session.get_conversation_turns()]
    expected = [(1, "Question 1"), (2, "Question 2"), (3, "Question 3b")]
    expect(turns == expected, f"turns on the branch are {turns}")
    main = [t["full_content"] for t in await session.get_conversation_turns("main")]
    expect(main == ["Question 1", "Question 2", "Question 3"], "branching changed main's turns")


async def check_find_turns_by_content(h: Harness) -> None:
    """find_turns_by_content finds user turns by literal text in any case, with the whole content.

    ``%``, ``_`` and ``.*`` are plain characters, assistant messages are not searched, and each
    text part of a message is searched on its own.
    """
    session = await open_advanced(h, "find", 0, "find_turns_by_content")
    needle = "y" * 150 + " needle"
    parts = [{"type": "input_text", "text": "part one"}, {"type": "input_text", "text": "Kiwi"}]
    for content in ("Use 100% of it", "snake_case names", "Say HELLO there", needle, parts):
        await session.add_items([message(cast(str, content)), message("hello", role="assistant")])
    found = {
        term: [t["turn"] for t in await session.find_turns_by_content(term)]
        for term in ("hello", "%", "_", "e_c", "kiwi", "one Kiwi", ".*", "zzz", "needle")
    }
    expected = {"hello": [3], "%": [1], "_": [2], "e_c": [2], "kiwi": [5], "needle": [4]}
    expected |= {"one Kiwi": [], ".*": [], "zzz": []}
    expect(found == expected, f"turns found per term: {found}")
    (match,) = await session.find_turns_by_content("NEEDLE")
    expect(match["content"] == needle == match["full_content"], "a match's content was cut")


async def check_conversation_by_turns(h: Harness) -> None:
    """get_conversation_by_turns groups items by user turn, as type and tool name; turn 0 leads."""
    session = await open_advanced(h, "by-turns", 0, "get_conversation_by_turns")
    await session.add_items([message("intro", role="assistant")])
    await session.add_items([*exchange(1), *exchange(2, "search", "fetch")])
    grouped = await session.get_conversation_by_turns()

    def kinds(*tools: str) -> list[dict[str, str | None]]:
        items: list[dict[str, str | None]] = [{"type": "user", "tool_name": None}]
        for tool in tools:
            items.append({"type": "function_call", "tool_name": tool})
            items.append({"type": "function_call_output", "tool_name": None})
        return [*items, {"type": "assistant", "tool_name": None}]

    expected = {0: [{"type": "assistant", "tool_name": None}], 1: kinds("lookup")}
    expected[2] = kinds("search", "fetch")
    expect(dict(grouped) == expected, f"grouped as {grouped}")


async def check_tool_usage(h: Harness) -> None:
    """get_tool_usage counts each tool's calls (not their outputs) per user turn, turns in order."""
    session = await open_advanced(h, "tools", 0, "get_tool_usage")
    await session.add_items([*exchange(1, "lookup", "lookup"), *exchange(2, "search", "lookup")])
    usage = cast(list[tuple[str, int, int]], [tuple(r) for r in await session.get_tool_usage()])
    expected = [("lookup", 2, 1), ("lookup", 1, 2), ("search", 1, 2)]
    expect(sorted(usage, key=lambda r: (r[2], r[0])) == expected, f"tool usage is {usage}")
    expect([r[2] for r in usage] == sorted(r[2] for r in usage), "tool usage not in turn order")


# --- usage ------------------------------------------------------------------------------------

USAGE = ("store_run_usage", "get_session_usage", "get_turn_usage")


async def check_run_usage(h: Harness) -> None:
    """store_run_usage records a run against its user turn; turn and session usage report it."""
    session = await open_advanced(h, "usage", 0, *USAGE)
    expect(await session.get_session_usage() is None, "usage reported before any was stored")
    runs = []
    for text in ("Hi! My name is Ada.", "What is my name?"):
        result = await run_offline(session, text)
        await session.store_run_usage(result)
        runs.append(result.context_wrapper.usage)
    listed = await session.get_turn_usage()
    expect([t["user_turn_number"] for t in listed] == [1, 2], f"turn usage listed {listed}")
    expect([tokens_of(t) for t in listed] == [counted(u) for u in runs], "turn usage differs")
    one = await session.get_turn_usage(2)
    expect(tokens_of(one) == counted(runs[1]), f"get_turn_usage(2) is {one}")
    expect({"input_tokens_details", "output_tokens_details"} <= set(one), "no token details")
    expect(await session.get_turn_usage(3) == {}, "a turn with no usage is not {}")
    expect(await session.get_session_usage() == totals(*runs), "session usage is not the sum")


async def check_usage_replaced(h: Harness) -> None:
    """A second store_run_usage for the same turn replaces the first instead of adding to it."""
    session = await open_advanced(h, "usage-again", 0, *USAGE)
    await session.store_run_usage(await run_offline(session, "Hi! My name is Ada."))
    other = await run_offline(
        await h.session("usage-elsewhere"), "Tell me a much longer story now."
    )
    await session.store_run_usage(other)
    usage = other.context_wrapper.usage
    expect(await session.get_session_usage() == totals(usage), "the second call did not replace")


async def check_usage_per_branch(h: Harness) -> None:
    """Usage stored on a branch is reported for that branch; the session's total spans all."""
    session = await open_advanced(h, "usage-branch", 0, *USAGE)
    on_main = []
    for text in ("Hi! My name is Ada.", "What is my name?"):
        result = await run_offline(session, text)
        await session.store_run_usage(result)
        on_main.append(result.context_wrapper.usage)
    await session.create_branch_from_turn(2, "alt")
    result = await run_offline(session, "Call me Bob.")
    await session.store_run_usage(result)
    alt = result.context_wrapper.usage
    expect(await session.get_session_usage("alt") == totals(alt), "usage of the branch")
    expect(await session.get_session_usage("main") == totals(*on_main), "usage of main")
    expected = totals(*on_main, alt)
    expect(await session.get_session_usage() == expected, "usage of all branches")
    listed = await session.get_turn_usage()
    expect([(t["user_turn_number"], tokens_of(t)) for t in listed] == [(2, counted(alt))], "alt")


async def check_pop_drops_usage_of_emptied_turn(h: Harness) -> None:
    """Popping the last item of a user turn also removes the usage recorded for that turn."""
    session = await open_advanced(h, "usage-pop", 0, *USAGE)
    first = await run_offline(session, "Hi! My name is Ada.")
    await session.store_run_usage(first)
    await session.store_run_usage(await run_offline(session, "What is my name?"))
    while len(await session.get_items()) > 2:
        await session.pop_item()
    turns = [t["user_turn_number"] for t in await session.get_turn_usage()]
    expect(turns == [1], f"usage kept for a popped turn: turns {turns}")
    expect(await session.get_session_usage() == totals(first.context_wrapper.usage), "totals")


# --- the SDK's names --------------------------------------------------------------------------


SDK_KEYWORDS: list[tuple[str, dict[str, Any]]] = [
    ("create_branch_from_turn", {"turn_number": 2, "branch_name": "by-turn"}),
    ("switch_to_branch", {"branch_id": "main"}),
    ("create_branch_from_content", {"search_term": "question 3", "branch_name": "by-content"}),
    ("switch_to_branch", {"branch_id": "main"}),
    ("get_items", {"limit": 1, "branch_id": "kw"}),
    ("find_turns_by_content", {"search_term": "question", "branch_id": "kw"}),
    ("get_conversation_turns", {"branch_id": "kw"}),
    ("get_conversation_by_turns", {"branch_id": "kw"}),
    ("get_tool_usage", {"branch_id": "kw"}),
    ("get_session_usage", {"branch_id": "kw"}),
    ("get_turn_usage", {"user_turn_number": 1, "branch_id": "kw"}),
    ("delete_branch", {"branch_id": "kw", "force": False}),
]
"""Each advanced method with its arguments named as in the SDK's signatures, in call order.

Each call works whether or not the calls before it did (the branch ``kw`` exists, not current).
"""


async def check_sdk_keyword_names(h: Harness) -> None:
    """Every advanced method accepts its arguments by the keyword names of the SDK's signature."""
    session = await open_advanced(h, "keywords", 3, "delete_branch", "create_branch_from_content")
    await session.create_branch_from_turn(2, "kw")
    await session.switch_to_branch("main")
    refused = []
    for name, kwargs in SDK_KEYWORDS:
        method = getattr(session, name, None)
        if method is None:
            continue
        try:
            await method(**kwargs)
        except TypeError:
            refused.append(f"{name}({', '.join(kwargs)})")
    expect(not refused, f"refused the SDK's keyword names: {refused}")

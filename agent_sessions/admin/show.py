"""A conversation as an operator reads it: one compact entry per stored row.

Rows are decoded with the package's codec. A row that cannot be decoded is shown as such, with
the reason, and an ``EncryptedSession`` envelope as encrypted (with its key id), or as the item
it holds when :func:`~agent_sessions.admin.sealed.open_rows` opened it, or as undecryptable
when the given keys did not: none of them stops the rendering.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from ..serialization import JsonCodec
from .db import canonical_time
from .rows import StoredRow
from .text import one_line, printable

if TYPE_CHECKING:  # the cipher stack loads only when a key is given
    from .sealed import Opened

__all__ = ["Entry", "describe", "describe_item", "entry_dict", "render_entries"]

_JSON = JsonCodec()
_HANDOFF = "transfer_to_"  # the SDK names a handoff's tool call after its target agent
_ROLES = ("user", "assistant", "system", "developer")
_LINE_BREAK = re.compile(r"\\x0d\n|\n")  # CRLF as escaped by printable(), or LF


class Entry(NamedTuple):
    """What a row says: a short label and its text; ``item`` is None if undecodable."""

    label: str
    body: str
    item: dict[str, Any] | None
    problem: str | None = None


def _compact(value: object) -> str:
    """Any JSON value as short text: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    probe: Any = {"": value}
    return _JSON.encode(probe)[4:-1]


def _part(part: object) -> str:
    """One part of a message's content list."""
    if not isinstance(part, dict):
        return _compact(part)
    kind = part.get("type")
    if isinstance(part.get("text"), str):
        return str(part["text"])
    if kind == "refusal":
        return f"[refusal: {part.get('refusal', '')}]"
    if kind == "input_image":
        return "[image]"
    if kind == "input_file":
        return f"[file {part.get('filename') or part.get('file_id') or ''}]".replace(" ]", "]")
    return f"[{kind or 'part'}]"


def _content(value: object) -> str:
    if isinstance(value, list):
        return " ".join(_part(part) for part in value)
    return _compact(value) if value is not None else ""


def _tool_call(item: dict[str, Any], kind: str) -> Entry:
    name = str(item.get("name", "?"))
    if kind == "function_call" and name.startswith(_HANDOFF):
        return Entry("handoff", f"-> {name[len(_HANDOFF) :]}", item)
    arguments = item.get("arguments", item.get("input", ""))
    return Entry("tool call", f"{name}({_compact(arguments)})", item)


def _other(item: dict[str, Any], kind: str) -> Entry:
    """Hosted tools and anything newer: the type, and the fields that say what happened."""
    shown = [
        f"{key}={_compact(item[key])}"
        for key in ("name", "action", "query", "queries", "status", "id")
        if key in item
    ]
    return Entry(kind.replace("_", " "), " ".join(shown), item)


def describe(text: str, opened: Opened | None = None) -> Entry:
    """Describe one stored row (``opened``: what opening it with keys gave, if tried)."""
    if opened is not None and opened.kid is not None:
        if opened.plaintext is not None:
            return describe(opened.plaintext)
        if opened.problem is not None:
            body = f"(key id {opened.kid}: {opened.problem})"
            return Entry("undecryptable", body, None, opened.problem)
        body = f"(EncryptedSession envelope, key id {opened.kid}, {len(text)} characters)"
        envelope: Any = _JSON.decode(text)
        return Entry("encrypted", body, envelope)
    try:
        decoded: Any = _JSON.decode(text)
    except (ValueError, RecursionError) as exc:
        problem = str(exc) if isinstance(exc, ValueError) else "nested too deeply to decode"
        return Entry("undecodable", f"({problem}; {len(text)} characters stored)", None, problem)
    item: dict[str, Any] = decoded
    if "__enc__" in item:
        return Entry("encrypted", f"(EncryptedSession envelope, {len(text)} characters)", item)
    return describe_item(item)


def describe_item(item: dict[str, Any]) -> Entry:
    """Describe one decoded item."""
    kind = str(item.get("type", "message"))
    role = item.get("role")
    if kind == "message" and role in _ROLES:
        return Entry(str(role), _content(item.get("content")), item)
    if kind in ("function_call", "custom_tool_call"):
        return _tool_call(item, kind)
    if kind.endswith("_call_output"):
        return Entry("tool output", _content(item.get("output")), item)
    if kind == "reasoning":
        summary = _content(item.get("summary") or item.get("content"))
        hidden = "[encrypted reasoning]" if item.get("encrypted_content") else ""
        return Entry("reasoning", summary or hidden, item)
    return _other(item, kind)


def _clip(body: str, limit: int | None) -> str:
    if limit is None or len(body) <= limit:
        return body
    return f"{body[:limit]}... (+{len(body) - limit:,} characters; --full shows all)"


def render_entries(
    rows: list[StoredRow],
    branches: dict[int, str],
    *,
    limit: int | None,
    opened: Mapping[int, Opened] | None = None,
) -> list[str]:
    """Lines for a session's rows: id, time, (branch,) (agent,) label and text.

    When any row carries provenance, each row shows the agent that wrote it (``-`` for the
    caller's input and for untagged rows), and a ``run ...`` line precedes the first row of
    each run. An encrypted row's agent is shown too: it is stored in clear.

    Args:
        rows: The rows, oldest first.
        branches: The branch of each row id, for advanced sessions (empty otherwise).
        limit: Clip each text to this many characters; None for all.
        opened: Encrypted rows as opened (or not) with keys, by row id.
    """
    opened = opened or {}
    id_width = max((len(str(row.id)) for row in rows), default=1)
    branch_width = max((len(one_line(b)) for b in branches.values()), default=0)
    tagged = any(row.tag is not None for row in rows)
    agent_width = max((len(_agent(row)) for row in rows), default=1)
    lines = []
    run: str | None = None
    for row in rows:
        entry = describe(row.text, opened.get(row.id))
        when = (canonical_time(row.created_at) or "")[:19]
        branch = f"{one_line(branches.get(row.id, '-')):<{branch_width}}  " if branches else ""
        agent = f"{_agent(row):<{agent_width}}  " if tagged else ""
        if row.tag is not None and row.tag.run_id != run:
            run = row.tag.run_id
            lines.append(f"run {one_line(run)}:")
        head = f"#{row.id:<{id_width}}  {when:<19}  {branch}{agent}{one_line(entry.label):<11}  "
        # Split on newlines only: every other separator is escaped, never obeyed.
        body = _LINE_BREAK.split(printable(_clip(entry.body, limit)))
        lines.append(head + body[0])
        lines.extend(" " * len(head) + more for more in body[1:])
    return lines


def _agent(row: StoredRow) -> str:
    """The agent column of a row: its agent's name, or ``-`` (input, or no provenance)."""
    if row.tag is None or row.tag.agent_name is None:
        return "-"
    return one_line(row.tag.agent_name)


def entry_dict(row: StoredRow, branch: str | None, opened: Opened | None = None) -> dict[str, Any]:
    """A row for ``show --json``: the decoded item, or the stored text and the problem.

    An encrypted row also has its ``key_id``; opened with a key, ``item`` is the decrypted
    item; not opened by the given keys, it has ``undecryptable`` (the reason) and no data.
    A row written in a run has its ``agent_name``, ``run_id`` and ``run_position``.
    """
    entry = describe(row.text, opened)
    found: dict[str, Any] = {"id": row.id, "created_at": canonical_time(row.created_at)}
    if branch is not None:
        found["branch"] = branch
    if row.tag is not None:
        found["agent_name"] = row.tag.agent_name
        found["run_id"] = row.tag.run_id
        found["run_position"] = row.tag.position
    found["kind"] = entry.label
    if opened is not None and opened.kid is not None:
        found["key_id"] = opened.kid
        if opened.problem is not None:
            found["undecryptable"] = opened.problem
            return found
    if entry.item is None:
        found["undecodable"] = entry.problem
        found["data"] = row.text
    else:
        found["item"] = entry.item
    return found

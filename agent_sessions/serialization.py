"""The one place where session items become stored text and stored text becomes items again.

Items are the SDK's Responses-API input items: JSON objects. They are stored as compact JSON text,
one row per item, in the same column layout as the SDK's own sessions, so a database stays readable
by both. Validation is strict on purpose: an item is accepted only if it would come back *exactly*
as it went in, so a value that JSON would silently change (a tuple, an integer dict key, NaN) is
refused up front instead of being stored altered.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias, Union, cast

from .errors import CorruptItemError, ItemValidationError

if TYPE_CHECKING:  # the SDK is not imported at run time: `import agent_sessions` stays light
    from agents.items import TResponseInputItem

__all__ = [
    "MAX_DEPTH",
    "Codec",
    "JSONValue",
    "JsonCodec",
    "SkipRow",
    "decode_or_report",
    "decode_rows",
    "decode_state",
    "encode_items",
    "encode_state",
    "logger",
]

JSONValue: TypeAlias = Union[  # noqa: UP007 - a recursive alias needs the string form
    dict[str, "JSONValue"], list["JSONValue"], str, int, float, bool, None
]
"""A value JSON keeps exactly: what a session's state holds."""

logger = logging.getLogger("agent_sessions")
"""Logger for rows that were skipped because they could not be decoded."""

MAX_DEPTH = 400
"""How deeply lists and dicts may nest in an item (the item itself is level 1).

The stdlib decoder recurses once per level and shares the interpreter's recursion limit (1,000
by default) with its caller, so an item must be readable from deep inside ``Runner.run``; 400
leaves that margin, and real items nest fewer than 20 levels.
"""

_SCALARS = (str, int, bool, type(None))
_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder()
_loads = _DECODER.decode
_WHITESPACE = re.compile(r"[ \t\n\r]*")  # what json.loads skips around a value


class SkipRow(ValueError):
    """Raised by a codec for a sound row that must not be returned (an expired item).

    Such a row is left out silently, even by strict reads, and stays stored.
    """


class Codec(Protocol):
    """Turns items into stored text and back; wrap one to change how rows look at rest."""

    def encode(self, item: TResponseInputItem) -> str:
        """Return the stored form of a validated item."""
        ...

    def decode(self, text: str) -> TResponseInputItem:
        """Return the item stored as ``text``.

        Raises:
            SkipRow: the row is sound but must not be returned.
            ValueError: ``text`` is not the stored form of an item; a
                :class:`~agent_sessions.errors.CorruptItemError` that is also a ``ValueError``
                is raised as it is by strict reads.
        """
        ...


class JsonCodec:
    """Compact JSON text, ASCII-only so that any string (even a lone surrogate) survives."""

    def encode(self, item: TResponseInputItem) -> str:
        """Return ``item`` as compact JSON text."""
        return _ENCODER.encode(item)

    def decode(self, text: str) -> TResponseInputItem:
        """Parse one stored row.

        Raises:
            ValueError: the row is not one JSON object.
        """
        if not isinstance(text, str):
            raise ValueError(f"row holds {type(text).__name__}, not text")  # noqa: TRY004
        start = _WHITESPACE.match(text).end()  # type: ignore[union-attr]
        value, end = _DECODER.raw_decode(text, start)
        if end != len(text) and text[end:].strip():
            raise ValueError(f"unexpected data after the item at offset {end}")
        if type(value) is not dict:
            raise ValueError(f"row holds a JSON {type(value).__name__}, not an object")
        return cast("TResponseInputItem", value)


def _problem(value: object) -> str | None:
    """Return why ``value`` would not survive a JSON round trip unchanged, or None if it would.

    The walk goes level by level, so it needs no recursion and knows how deep it is: nesting
    beyond :data:`MAX_DEPTH` is refused (which also ends the walk of a cyclic value).
    """
    level: list[object] = [value]
    depth = 0
    while level:
        depth += 1
        below: list[object] = []
        extend = below.extend
        for current in level:
            kind = type(current)
            if kind is dict:
                if depth > MAX_DEPTH:
                    return _too_deep()
                mapping = cast(dict[object, object], current)
                for key in mapping:
                    if type(key) is not str:
                        return f"dict key {key!r} is a {type(key).__name__}, not a str"
                extend(mapping.values())
            elif kind is list:
                if depth > MAX_DEPTH:
                    return _too_deep()
                extend(cast(list[object], current))
            elif kind is float:
                if not math.isfinite(cast(float, current)):
                    return f"{current!r} is not a finite number and has no JSON form"
            elif kind not in _SCALARS:
                return f"a value of type {kind.__name__} ({current!r:.60}) is not JSON-serializable"
        level = below
    return None


def _too_deep() -> str:
    return (
        f"it is nested more than {MAX_DEPTH} levels deep (or contains itself); such an item "
        "could not be read back reliably"
    )


def encode_items(items: Sequence[object], codec: Codec | None = None) -> list[str]:
    """Validate a whole batch, then encode it; nothing is returned unless every item is valid.

    Args:
        items: The batch given to ``add_items``.
        codec: How to encode each item; compact JSON by default.

    Returns:
        The stored text of each item, in order.

    Raises:
        ItemValidationError: an item is not a JSON object whose values survive a round trip;
            the error names its index. It is a ``TypeError``.
    """
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Sequence):
        raise ItemValidationError(
            -1, f"add_items takes a list of items, not {type(items).__name__}"
        )
    codec = codec or _JSON
    texts: list[str] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise ItemValidationError(index, f"expected a dict, got {type(item).__name__}")
        # The walk comes first: it ends on any value (even a cyclic one) without recursion,
        # so nothing too deep to read back ever reaches the encoder.
        problem = _problem(item)
        if problem is not None:
            raise ItemValidationError(index, problem)
        try:
            text = codec.encode(cast("TResponseInputItem", item))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ItemValidationError(index, str(exc) or repr(exc)) from exc
        texts.append(text)
    return texts


def decode_rows(
    texts: Iterable[str],
    *,
    session_id: str,
    strict: bool = False,
    codec: Codec | None = None,
) -> list[TResponseInputItem]:
    """Decode stored rows in order, skipping (or, when strict, raising on) the undecodable ones.

    Args:
        texts: Stored rows, oldest first.
        session_id: The session they belong to, for the warning or error.
        strict: Raise :class:`CorruptItemError` instead of skipping with a logged warning.
        codec: How rows were encoded; compact JSON by default.

    Returns:
        The decoded items, oldest first.
    """
    texts = list(texts)
    if codec is None or type(codec) is JsonCodec:
        fast = _decode_plain_rows(texts)
        if fast is not None:
            return fast
    codec = codec or _JSON
    items: list[TResponseInputItem] = []
    skipped: list[str] = []
    for text in texts:
        try:
            items.append(codec.decode(text))
        except SkipRow:
            continue
        except (ValueError, TypeError, RecursionError) as exc:
            skipped.append(_failure(exc, session_id, strict))
    if skipped:
        # One line per read, not per row: a wrong key would otherwise log every row it meets.
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        logger.warning(
            "skipping %d undecodable row(s) in session %r: %s%s",
            len(skipped),
            session_id,
            skipped[0],
            more,
        )
    return items


def _failure(exc: Exception, session_id: str, strict: bool) -> str:
    """Return why a row failed to decode, or raise it as a ``CorruptItemError`` when strict."""
    if strict:
        if isinstance(exc, CorruptItemError):
            raise exc
        raise CorruptItemError(session_id, str(exc)) from exc
    return exc.detail if isinstance(exc, CorruptItemError) else str(exc)


def _decode_plain_rows(texts: list[str]) -> list[TResponseInputItem] | None:
    """Decode rows that are all plain JSON objects in one parse; None if any is not.

    This is the path every read takes: the rows are joined into one JSON array and parsed by
    one ``json.loads``, faster than a ``raw_decode`` per row (1.1-1.8x). The result is used
    only if it holds exactly one object per row; anything else (a corrupt row, text that is
    not a ``str``, a row holding two values) sends the whole batch down the careful path,
    which decodes each row on its own and reports the bad ones exactly as it always did.

    The rows are joined by a comma and a newline: JSON refuses a raw newline in a string, so a row
    cut short inside a string cannot swallow the separator and merge with its neighbour.
    Every sound row is balanced, so one bad row, whatever it holds, either breaks the joined
    parse or changes the count; only several rows crafted to complete each other could pass
    (and whoever can write rows can write any item anyway).
    """
    if not texts:
        return []
    try:
        values = _loads("[" + ",\n".join(texts) + "]")
    except (ValueError, TypeError, RecursionError):
        return None
    if len(values) != len(texts):
        return None
    for value in values:
        if type(value) is not dict:
            return None
    return cast("list[TResponseInputItem]", values)


def decode_or_report(
    text: str, *, session_id: str, strict: bool = False, codec: Codec | None = None
) -> TResponseInputItem | None:
    """Decode one row; on failure warn and return None, or raise when ``strict``.

    Raises:
        CorruptItemError: the row is undecodable and ``strict`` is set.
    """
    try:
        return (codec or _JSON).decode(text)
    except SkipRow:
        return None
    except (ValueError, TypeError, RecursionError) as exc:
        reason = _failure(exc, session_id, strict)
        logger.warning("skipping an undecodable row in session %r: %s", session_id, reason)
        return None


def encode_state(value: object, name: str) -> str:
    """Validate a state value and return its stored text (compact JSON).

    Args:
        value: A JSON-compatible value (dict with str keys, list, str, int, finite float,
            bool); None is not stored (it means "no value").
        name: The state's name, for the error message.

    Raises:
        ItemValidationError: the value would not come back exactly as given (a tuple, an
            integer dict key, NaN, an object, nesting deeper than :data:`MAX_DEPTH`). It is
            a ``TypeError``.
    """
    problem = _problem(value)
    if problem is not None:
        raise _state_error(name, problem)
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _state_error(name, str(exc)) from exc


def _state_error(name: str, reason: str) -> ItemValidationError:
    error = ItemValidationError(0, reason)
    error.args = (f"the value of state {name!r} cannot be stored: {reason}",)
    return error


def decode_state(text: object, *, session_id: str, name: str) -> JSONValue:
    """Return the value a stored state text holds.

    Raises:
        CorruptItemError: the text is not one JSON value (it is never returned as data).
    """
    if not isinstance(text, str):
        raise CorruptItemError(session_id, f"state {name!r} holds {type(text).__name__}")
    try:
        return cast(JSONValue, _loads(text))
    except (ValueError, RecursionError) as exc:
        raise CorruptItemError(session_id, f"state {name!r} is not JSON: {exc}") from exc


_JSON = JsonCodec()

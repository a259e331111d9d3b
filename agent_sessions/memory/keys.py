r"""Namespaces and keys: validation, and the one-string form they are stored and matched in.

A namespace ``("users", "alice")`` is stored as ``"users\x1falice\x1f"``: each label followed
by the ASCII unit separator, which no label may contain. The trailing separator makes a prefix
search one index range: everything under ``("users", "alice")`` sorts in
``["users\x1falice\x1f", "users\x1falice\x20")``, and ``("users", "alice2")`` falls outside it.
Every backend compares this column byte by byte (SQLite's BINARY, PostgreSQL's ``"C"``,
MariaDB's ``VARBINARY``), so matching is exact (case and trailing spaces count) everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..errors import InvalidLimitError, InvalidNamespaceError

__all__ = [
    "KEY_MAX",
    "NAMESPACE_MAX",
    "SEPARATOR",
    "check_key",
    "check_page",
    "check_ttl",
    "decode_namespace",
    "encode_namespace",
    "encode_prefix",
    "prefix_bounds",
    "shape_namespaces",
]

SEPARATOR = "\x1f"
"""Ends every label in the stored namespace; refused inside labels."""
_AFTER_SEPARATOR = chr(ord(SEPARATOR) + 1)
NAMESPACE_MAX = 500
"""Longest stored namespace, in characters (labels plus one separator each)."""
KEY_MAX = 255
"""Longest key, in characters; with the namespace it fits one MariaDB index (3,072 bytes)."""


def _check_text(text: object, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidNamespaceError(f"{what} must be a non-empty str, got {text!r:.60}")
    if "\x00" in text or SEPARATOR in text:
        raise InvalidNamespaceError(
            f"{what} {text!r:.60} contains NUL or the reserved separator U+001F"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNamespaceError(f"{what} {text!r:.60} is not valid Unicode text") from exc
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _labels(namespace: object, what: str) -> tuple[str, ...]:
    if isinstance(namespace, (str, bytes)) or not isinstance(namespace, Sequence):
        raise InvalidNamespaceError(
            f"{what} must be a tuple of str, like ('users', 'alice'), got {namespace!r:.60}"
        )
    return tuple(_check_text(label, f"{what} label") for label in namespace)


def encode_prefix(namespace: object, what: str = "namespace prefix") -> str:
    """Validate a namespace (empty allowed) and return its stored form (``""`` for ``()``)."""
    if type(namespace) is tuple and namespace and all(type(x) is str and x for x in namespace):
        # The common case in one pass over the joined text; anything odd takes the slow path.
        joined = SEPARATOR.join(namespace) + SEPARATOR
        if (
            "\x00" not in joined
            and joined.count(SEPARATOR) == len(namespace)
            and len(joined) <= NAMESPACE_MAX
            and (joined.isascii() or _encodable(joined))
        ):
            return joined
    encoded = "".join(label + SEPARATOR for label in _labels(namespace, what))
    if len(encoded) > NAMESPACE_MAX:
        raise InvalidNamespaceError(
            f"{what} is {len(encoded)} characters stored; the limit is {NAMESPACE_MAX}"
        )
    return encoded


def encode_namespace(namespace: object) -> str:
    """Validate the namespace of one memory (at least one label) and return its stored form.

    Raises:
        InvalidNamespaceError: it is empty, not a sequence of non-empty str, holds NUL or the
            separator, or is too long. It is a ``ValueError``.
    """
    encoded = encode_prefix(namespace, "namespace")
    if not encoded:
        raise InvalidNamespaceError("namespace must have at least one label, like ('alice',)")
    return encoded


def decode_namespace(stored: str) -> tuple[str, ...]:
    """Return the tuple a stored namespace stands for."""
    return tuple(stored.split(SEPARATOR)[:-1])


def prefix_bounds(prefix: str) -> tuple[str, str] | None:
    """The half-open range of stored namespaces under ``prefix``; None for everything."""
    if not prefix:
        return None
    return prefix, prefix[:-1] + _AFTER_SEPARATOR


def check_key(key: object) -> str:
    """Validate a memory key.

    Raises:
        InvalidNamespaceError: it is not a non-empty str of at most 255 characters without NUL.
    """
    if not (type(key) is str and key and "\x00" not in key and SEPARATOR not in key):
        _check_text(key, "key")
    assert isinstance(key, str)  # noqa: S101 - narrowed above
    if len(key) > KEY_MAX:
        raise InvalidNamespaceError(f"key is {len(key)} characters; the limit is {KEY_MAX}")
    if not (key.isascii() or _encodable(key)):
        raise InvalidNamespaceError(f"key {key!r:.60} is not valid Unicode text")
    return key


PAGE_MAX = 2**61
"""Larger limits and offsets are treated as this: more rows than any table holds."""


def check_page(limit: object, offset: object) -> tuple[int, int]:
    """Validate ``limit`` and ``offset`` of a listing.

    Returns:
        Both, clamped to :data:`PAGE_MAX`.

    Raises:
        InvalidLimitError: either is not a non-negative int. It is a ``ValueError``.
    """
    for name, value in (("limit", limit), ("offset", offset)):
        if type(value) is not int or value < 0:
            raise InvalidLimitError(f"{name} must be a non-negative int, got {value!r}")
    # Any int is a valid count: past what a table can hold it means "all", and it is clamped
    # so that ``limit + offset`` still binds as a 64-bit SQL integer on every backend.
    return min(int(limit), PAGE_MAX), min(int(offset), PAGE_MAX)  # type: ignore[call-overload]


def check_ttl(ttl: object) -> float | None:
    """Validate a TTL in seconds (None = never expires).

    Raises:
        ValueError: it is not a positive, finite number.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, got {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return float(ttl)


def shape_namespaces(
    stored: Iterable[str],
    *,
    suffix: tuple[str, ...],
    max_depth: int | None,
    limit: int,
    offset: int,
) -> list[tuple[str, ...]]:
    """Turn stored namespaces into the sorted, distinct page ``list_namespaces`` returns."""
    found: set[tuple[str, ...]] = set()
    for text in stored:
        namespace = decode_namespace(text)
        if suffix and namespace[len(namespace) - len(suffix) :] != suffix:
            continue
        found.add(namespace if max_depth is None else namespace[:max_depth])
    return sorted(found)[offset : offset + limit]

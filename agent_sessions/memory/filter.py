"""Search filters, applied to decoded values the same way on every backend.

A filter maps a key (a top-level key of the value, or a dotted path into nested objects) to a
JSON value, which must be equal, or to operators: ``{"$eq", "$ne", "$gt", "$gte", "$lt",
"$lte", "$in", "$nin"}``. Equality is JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``.
Order comparisons hold between two numbers or two strings only; any other pair does not match.
A missing key matches only ``$ne`` and ``$nin``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from ..errors import InvalidFilterError, ItemValidationError
from ..serialization import encode_items
from .types import Hint

__all__ = ["Filter", "compile_filter", "filter_hints"]

Filter = Callable[[Mapping[str, Any]], bool]
_MISSING = object()
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}
_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", *_ORDER})


def _json_equal(a: object, b: object) -> bool:
    """Equality as JSON sees it: booleans are not numbers, containers compare element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _ordered(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` can be ordered: two numbers or two strings."""
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (
        isinstance(a, str) and isinstance(b, str)
    )


def _lookup(value: Mapping[str, Any], path: tuple[str, ...]) -> object:
    current: object = value
    for part in path:
        if not isinstance(current, dict) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _test(operator: str, found: object, expected: Any) -> bool:
    if found is _MISSING:
        return operator in ("$ne", "$nin")
    if operator == "$eq":
        return _json_equal(found, expected)
    if operator == "$ne":
        return not _json_equal(found, expected)
    if operator == "$in":
        return any(_json_equal(found, option) for option in expected)
    if operator == "$nin":
        return not any(_json_equal(found, option) for option in expected)
    return _ordered(found, expected) and _ORDER[operator](found, expected)


def _conditions(key: str, condition: object) -> list[tuple[str, object]]:
    """Split one filter entry into ``(operator, operand)`` pairs, validated."""
    is_operators = (
        isinstance(condition, dict)
        and bool(condition)
        and all(isinstance(k, str) and k.startswith("$") for k in condition)
    )
    if not is_operators:
        return [("$eq", condition)]
    assert isinstance(condition, dict)  # noqa: S101 - narrowed above
    pairs: list[tuple[str, object]] = []
    for operator, operand in condition.items():
        if operator not in _OPERATORS:
            known = ", ".join(sorted(_OPERATORS))
            raise InvalidFilterError(f"filter on {key!r}: unknown operator {operator!r} ({known})")
        if operator in ("$in", "$nin") and not isinstance(operand, list):
            raise InvalidFilterError(f"filter on {key!r}: {operator} takes a list")
        if operator in _ORDER and not _ordered(operand, operand):
            raise InvalidFilterError(f"filter on {key!r}: {operator} takes a number or a string")
        pairs.append((operator, operand))
    return pairs


def compile_filter(spec: object) -> Filter | None:
    """Validate a search filter and return a predicate over decoded values (None: no filter).

    Raises:
        InvalidFilterError: the filter is not a dict of str keys, names an unknown operator, or
            holds a value that is not JSON. It is a ``ValueError``.
    """
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise InvalidFilterError(f"filter must be a dict, got {type(spec).__name__}")
    try:
        encode_items([{"filter": spec}])
    except ItemValidationError as exc:
        raise InvalidFilterError(f"filter is not JSON: {exc.reason}") from exc
    tests: list[tuple[tuple[str, ...], str, object]] = []
    for key, condition in spec.items():
        path = tuple(key.split("."))
        if not all(path):
            raise InvalidFilterError(f"filter key {key!r} has an empty part")
        tests.extend((path, op, operand) for op, operand in _conditions(key, condition))
    if not tests:
        return None

    def matches(value: Mapping[str, Any]) -> bool:
        return all(_test(op, _lookup(value, path), operand) for path, op, operand in tests)

    return matches


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")


def filter_hints(spec: dict[str, Any] | None) -> list[Hint]:
    """The plain equalities of a (validated) filter, which a backend may check in SQL first."""
    hints: list[Hint] = []
    for key, condition in (spec or {}).items():
        path = tuple(key.split("."))
        if not all(_PLAIN_KEY.fullmatch(part) for part in path):
            continue
        for operator, operand in _conditions(key, condition):
            if operator == "$eq" and _bindable(operand):
                hints.append(Hint(path, operand))
    return hints


_INT64 = range(-(2**63), 2**63)


def _bindable(operand: object) -> TypeGuard[str | int | float | bool]:
    """Whether every SQL driver binds ``operand`` as the value it is.

    Otherwise it gives no hint: the filter still applies in process, so hints never change
    what a search returns. Integers beyond 64 bits overflow SQLite's; NUL ends a string inside
    ``json_extract``; a lone surrogate has no UTF-8 form to bind.
    """
    if isinstance(operand, (bool, float)):
        return True
    if isinstance(operand, int):
        return operand in _INT64
    if not isinstance(operand, str) or "\x00" in operand:
        return False
    try:
        operand.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

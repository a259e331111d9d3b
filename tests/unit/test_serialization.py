"""The codec boundary: what ``encode_items`` accepts and refuses, and how ``decode_rows`` reads."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_sessions.errors import CorruptItemError, ItemValidationError
from agent_sessions.serialization import MAX_DEPTH, JsonCodec, decode_rows, encode_items

T = TypeVar("T")


def _deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _exactly_equal(left: object, right: object) -> bool:
    """Compare like ``==``, but tell ``True`` from ``1`` and ``-0.0`` from ``0.0``."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return list(left) == list(right) and all(
            _exactly_equal(left[key], right[key]) for key in left
        )
    if isinstance(left, list):
        assert isinstance(right, list)
        return len(left) == len(right) and all(map(_exactly_equal, left, right))
    if isinstance(left, float):
        assert isinstance(right, float)
        return left == right and math.copysign(1.0, left) == math.copysign(1.0, right)
    return left == right


def _round_trip(item: dict[str, Any]) -> object:
    (text,) = encode_items([item])
    return JsonCodec().decode(text)


EXACT_ITEMS: dict[str, dict[str, Any]] = {
    "message": {"role": "user", "content": "hello"},
    "nested": {"type": "x", "content": [{"a": [1, [2, [3, {"b": None}]]]}, {}, []]},
    "unicode": {"text": "héllo — 你好 — مرحبا — 🙂👩‍💻 — \u0000 — \u2028"},
    "lone-surrogates": {"text": "\ud800 alone \udfff", "\udc00key": "\ud83d"},
    "huge-ints": {"big": 10**300, "negative": -(10**300), "edge": 2**63, "zero": 0},
    "floats": {"zero": 0.0, "minus-zero": -0.0, "tiny": 5e-324, "max": 1.7976931348623157e308},
    "bools-and-none": {"yes": True, "no": False, "nothing": None, "one": 1, "one-float": 1.0},
    "empty": {},
}


@pytest.mark.parametrize("item", EXACT_ITEMS.values(), ids=EXACT_ITEMS.keys())
def test_json_exact_items_round_trip_exactly(item: dict[str, Any]) -> None:
    """Returns a JSON-exact item from a round trip with every value, type and key order intact."""
    assert _exactly_equal(_round_trip(item), item)


def test_batch_encodes_one_text_per_item_in_order() -> None:
    """Encodes a batch to one stored text per item, in batch order."""
    texts = encode_items([{"n": 0}, {"n": 1}, {"n": 2}])
    assert [JsonCodec().decode(text) for text in texts] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_empty_batch_encodes_to_nothing() -> None:
    """Encodes an empty batch to an empty list."""
    assert encode_items([]) == []


def test_encoded_form_is_compact() -> None:
    """Stores items with no space after separators, like the SDK's compact rows."""
    (text,) = encode_items([{"role": "user", "content": [1, {"a": "b"}]}])
    assert text == '{"role":"user","content":[1,{"a":"b"}]}'


def test_encoded_form_is_ascii_only() -> None:
    """Stores non-ASCII text, and lone surrogates, as ASCII escapes."""
    (text,) = encode_items([{"text": "é 你 🙂 \ud800"}])
    assert text.isascii()
    assert text == '{"text":"\\u00e9 \\u4f60 \\ud83d\\ude42 \\ud800"}'


class _Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


REFUSED_ITEMS: dict[str, object] = {
    "str-item": "not a dict",
    "list-item": [{"role": "user"}],
    "none-item": None,
    "tuple-value": {"a": (1, 2)},
    "set-value": {"a": {1, 2}},
    "bytes-value": {"a": b"raw"},
    "int-key": {1: "one"},
    "none-key": {None: "none"},
    "tuple-key": {(1, 2): "pair"},
    "nan": {"a": float("nan")},
    "inf": {"a": float("inf")},
    "minus-inf": {"a": -math.inf},
    "object-value": {"a": _Opaque()},
    "nested-bad-value": {"a": [{"b": [1, 2, {"c": {3}}]}]},
    "int-too-large-for-str": {"a": 10**5000},
    "too-deep": {"a": _deeply_nested(100_000)},
}


@pytest.mark.parametrize("bad", REFUSED_ITEMS.values(), ids=REFUSED_ITEMS.keys())
@pytest.mark.parametrize("position", [0, 2])
def test_unstorable_item_is_refused_with_its_index(bad: object, position: int) -> None:
    """Refuses a batch holding an item that would not come back exactly, naming its position."""
    batch: list[object] = [{"ok": i} for i in range(3)]
    batch[position] = bad
    result: list[str] | None = None
    with pytest.raises(ItemValidationError) as caught:
        result = encode_items(batch)
    assert caught.value.index == position
    assert f"item {position}" in str(caught.value)
    assert result is None


def test_item_validation_error_is_a_type_error() -> None:
    """Raises an error that callers of the SDK's sessions already catch as ``TypeError``."""
    with pytest.raises(TypeError):
        encode_items([{"a": (1,)}])


def test_too_deep_item_is_refused_before_it_is_encoded() -> None:
    """Refuses an item nested past ``MAX_DEPTH`` by its depth, without running the encoder."""
    with pytest.raises(ItemValidationError, match=f"more than {MAX_DEPTH} levels") as caught:
        encode_items([{"a": _deeply_nested(100_000)}])
    assert caught.value.__cause__ is None


def test_item_at_the_depth_limit_is_accepted_and_one_deeper_is_refused() -> None:
    """Accepts nesting of exactly ``MAX_DEPTH`` levels (the item is level 1) and no deeper."""
    encode_items([{"a": _deeply_nested(MAX_DEPTH - 2)}])
    with pytest.raises(ItemValidationError, match="item 0 "):
        encode_items([{"a": _deeply_nested(MAX_DEPTH - 1)}])
    encode_items([{"a": [{"b": _deeply_nested(MAX_DEPTH - 4)}]}])
    with pytest.raises(ItemValidationError, match="item 1 "):
        encode_items([{}, {"a": [{"b": _deeply_nested(MAX_DEPTH - 3)}]}])


def _at_stack_depth(frames: int, call: Callable[[], T]) -> T:
    """Run ``call`` with ``frames`` more Python frames on the stack than now."""
    if frames == 0:
        return call()
    return _at_stack_depth(frames - 1, call)


def test_deepest_accepted_item_decodes_from_a_deep_call_stack() -> None:
    """The deepest item ``encode_items`` accepts decodes even 500 frames down the stack."""
    deepest = {"a": _deeply_nested(MAX_DEPTH - 2)}
    texts = _at_stack_depth(500, lambda: encode_items([deepest]))
    back = _at_stack_depth(500, lambda: decode_rows(texts, session_id="s", strict=True))
    assert back == [deepest]


def _self_referencing_dict() -> dict[str, Any]:
    item: dict[str, Any] = {"role": "user"}
    item["self"] = item
    return item


def _self_referencing_list() -> dict[str, Any]:
    content: list[Any] = []
    content.append(content)
    return {"content": content}


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "make", [_self_referencing_dict, _self_referencing_list], ids=["dict-cycle", "list-cycle"]
)
def test_cyclic_item_is_refused(make: Any) -> None:
    """Refuses an item that contains itself instead of walking it forever."""
    with pytest.raises(ItemValidationError) as caught:
        encode_items([{"ok": 0}, make()])
    assert caught.value.index == 1


def _generator() -> Iterator[dict[str, Any]]:
    yield {"role": "user"}


@pytest.mark.parametrize(
    "batch",
    [{"role": "user"}, "role", b"role", _generator()],
    ids=["dict", "str", "bytes", "generator"],
)
def test_non_sequence_batch_is_refused(batch: object) -> None:
    """Refuses a batch that is not a sequence of items rather than iterating into it."""
    result: list[str] | None = None
    with pytest.raises(ItemValidationError):
        result = encode_items(batch)  # type: ignore[arg-type]
    assert result is None


UNDECODABLE_ROWS: dict[str, object] = {
    "not-json": "{not json",
    "empty": "",
    "trailing-garbage": '{"a":1} trailing',
    "two-objects": '{"a":1}{"b":2}',
    "array": '[{"a":1}]',
    "number": "42",
    "string": '"text"',
    "null": "null",
    "bytes": b'{"a":1}',
}


@pytest.mark.parametrize("row", UNDECODABLE_ROWS.values(), ids=UNDECODABLE_ROWS.keys())
def test_undecodable_row_is_skipped_with_a_warning(
    row: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Skips an undecodable row, keeps its neighbours, and logs a warning naming the session."""
    rows = ['{"n":0}', row, '{"n":1}']
    with caplog.at_level(logging.WARNING, logger="agent_sessions"):
        items = decode_rows(rows, session_id="chat-7")  # type: ignore[arg-type]
    assert items == [{"n": 0}, {"n": 1}]
    warnings = [r for r in caplog.records if r.name == "agent_sessions"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "chat-7" in warnings[0].getMessage()


@pytest.mark.parametrize("row", UNDECODABLE_ROWS.values(), ids=UNDECODABLE_ROWS.keys())
def test_undecodable_row_raises_when_strict(row: object) -> None:
    """Raises ``CorruptItemError`` naming the session on an undecodable row in strict mode."""
    result: list[Any] | None = None
    with pytest.raises(CorruptItemError) as caught:
        result = decode_rows(['{"n":0}', row], session_id="chat-7", strict=True)  # type: ignore[list-item]
    assert caught.value.session_id == "chat-7"
    assert "chat-7" in str(caught.value)
    assert result is None


@pytest.mark.parametrize("row", [' {"n":0}', '\n{"n":0}\n', '\t{"n":0}'], ids=repr)
def test_row_with_surrounding_whitespace_decodes_like_the_sdk(row: str) -> None:
    """Decodes a row with leading whitespace, as the SDK's ``json.loads`` does."""
    assert json.loads(row) == {"n": 0}
    assert decode_rows([row], session_id="s", strict=True) == [{"n": 0}]


def test_decodable_rows_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Decodes valid rows, trailing whitespace included, without logging anything."""
    with caplog.at_level(logging.DEBUG, logger="agent_sessions"):
        items = decode_rows(['{"n":0}', '{"n":1}\n'], session_id="s")
    assert items == [{"n": 0}, {"n": 1}]
    assert caplog.records == []


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None))
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.text(st.characters(codec=None), max_size=8), _json_values, max_size=5))
def test_any_json_exact_item_round_trips_exactly(item: dict[str, Any]) -> None:
    """Returns any item of JSON-exact values exactly as it was encoded."""
    assert _exactly_equal(_round_trip(item), item)


def test_many_undecodable_rows_log_one_line_per_read(caplog: pytest.LogCaptureFixture) -> None:
    """A read that meets many undecodable rows logs one warning that counts them."""
    rows = ['{"n":0}', *["{broken"] * 50, '{"n":1}']
    with caplog.at_level(logging.WARNING, logger="agent_sessions"):
        items = decode_rows(rows, session_id="chat-7")
    assert items == [{"n": 0}, {"n": 1}]
    warnings = [r for r in caplog.records if r.name == "agent_sessions"]
    assert len(warnings) == 1
    assert "skipping 50 undecodable row(s) in session 'chat-7'" in warnings[0].getMessage()
    assert "(and 49 more)" in warnings[0].getMessage()


ROWS_THAT_ONLY_PARSE_JOINED = {
    # One object cut across two rows inside a string: the raw newline between rows refuses it.
    "split-string": ['{"a":"', '"}'],
    # Cut across two rows inside an array: one value for two rows, so the count differs.
    "split-array": ['{"a":[1', "2]}"],
    # Two objects in one row: one row too many.
    "comma-pair": ['{"a":1},{"b":2}', '{"c":3}'],
    # A row that opens more than it closes, or closes what it did not open.
    "opens": ['{"a":[{}'],
    "closes": ["{}]}"],
    "closes-the-array": ['{"a":1}]'],
    "stray-quote": ['{"a":1}"'],
}


@pytest.mark.parametrize(
    "rows", ROWS_THAT_ONLY_PARSE_JOINED.values(), ids=ROWS_THAT_ONLY_PARSE_JOINED.keys()
)
def test_rows_are_decoded_one_by_one_whatever_a_joined_parse_makes_of_them(
    rows: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The one-parse fast path never merges or splits rows: each row stands or falls alone.

    (Only several rows crafted to complete each other could pass the joined parse with the
    right count; see ``_decode_plain_rows``.)
    """
    good = ['{"n":0}', *rows, '{"n":1}']
    expected = []
    for row in good:
        try:
            value = json.loads(row)
        except ValueError:
            continue
        if type(value) is dict:
            expected.append(value)
    with caplog.at_level(logging.WARNING, logger="agent_sessions"):
        assert decode_rows(good, session_id="s") == expected
    assert len(caplog.records) == (1 if len(expected) < len(good) else 0)
    if len(expected) < len(good):
        with pytest.raises(CorruptItemError):
            decode_rows(good, session_id="s", strict=True)


def test_one_parse_and_row_by_row_agree_on_many_rows() -> None:
    """Thousands of valid rows come back in order, one item per row."""
    rows = [json.dumps({"n": i, "text": "x" * (i % 7)}, separators=(",", ":")) for i in range(3000)]
    assert decode_rows(rows, session_id="s", strict=True) == [json.loads(r) for r in rows]

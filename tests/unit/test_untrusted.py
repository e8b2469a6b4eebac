from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anchorline import untrusted
from anchorline.errors import BadInput, Permanent
from anchorline.untrusted import depth_of, parse_json


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert depth_of('{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert depth_of('"just a string with \\" and ]]"') == 0


def test_a_hundred_thousand_levels_are_refused_without_recursing() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadInput, match="nests deeper than 32 levels"):
        parse_json(deep, what="body", max_bytes=1 << 20)


def test_depth_at_the_limit_parses() -> None:
    value = parse_json("[" * 32 + "]" * 32, what="body", max_bytes=100)
    for _ in range(31):
        value = value[0]
    assert value == []


def test_size_is_checked_before_parsing_in_bytes_not_characters() -> None:
    with pytest.raises(BadInput, match="larger than 10 bytes"):
        parse_json('"ééééé"', what="manifest", max_bytes=10)
    assert parse_json('"éééé"', what="manifest", max_bytes=10) == "éééé"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('"\\ud800"', "lone surrogate"),
        ('{"x": "\\uDBFF"}', "lone surrogate"),
        ("NaN", "NaN is not JSON"),
        ("[Infinity]", "Infinity is not JSON"),
        ("{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_documents_are_bad_input_with_the_reason(raw: str | bytes, reason: str) -> None:
    with pytest.raises(BadInput, match=reason):
        parse_json(raw, what="doc", max_bytes=100)


def test_a_surrogate_pair_is_text() -> None:
    assert parse_json('"\\ud83d\\ude00"', what="doc", max_bytes=100) == "\U0001f600"


def test_bad_input_is_a_permanent_value_error() -> None:
    assert issubclass(BadInput, Permanent) and issubclass(BadInput, ValueError)


def _careful(raw: str | bytes, max_depth: int) -> object:
    """parse_json without its orjson fast path: the answer, or the reason it refuses."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(untrusted, "_parsed_fast", lambda *args: untrusted._SLOW)
        try:
            return parse_json(raw, what="doc", max_bytes=1 << 16, max_depth=max_depth)
        except BadInput as exc:
            return f"refused: {exc}"


def _either(raw: str | bytes, max_depth: int) -> object:
    try:
        return parse_json(raw, what="doc", max_bytes=1 << 16, max_depth=max_depth)
    except BadInput as exc:
        return f"refused: {exc}"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.integers(min_value=1, max_value=6))
def test_the_fast_path_gives_what_the_careful_one_gives(value: object, max_depth: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    expected = _careful(text, max_depth)
    got = _either(text, max_depth)
    assert got == expected and type(got) is type(expected)
    assert _either(text.encode("utf-8"), max_depth) == _careful(text.encode("utf-8"), max_depth)


@pytest.mark.parametrize(
    "raw",
    [
        "123456789012345678901234567890",  # past 64 bits: orjson would give a float
        "[-9223372036854775809, 18446744073709551616]",
        '{"a": 1.5}',
        "1e400",
        '"\\ud800"',
        '{"a": 1, "a": 2}',
        "[" * 33 + "]" * 33,
        "\ufeff[1]",
        "[1] x",
    ],
)
def test_documents_orjson_reads_otherwise_get_the_careful_answer(raw: str) -> None:
    assert _either(raw, 32) == _careful(raw, 32)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}":,0123456789.eE-tfnrul\\ ', max_size=40))
def test_any_text_gets_the_careful_answer(raw: str) -> None:
    assert _either(raw, 3) == _careful(raw, 3)


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": 1180591620717411303424}',
        '{"a": [1.5, -0.0]}',
        '{"a": {"b": ["c", null, true]}}',
        '{"a": 1e400}',  # valid in PostgreSQL's json type; orjson refuses it
    ],
)
def test_stored_json_reads_as_json_reads_it(raw: str) -> None:
    value = untrusted.parse_stored(raw)
    assert value == json.loads(raw)
    assert repr(value) == repr(json.loads(raw))  # no integer turned into a float

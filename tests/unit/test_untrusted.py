from __future__ import annotations

import pytest

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

"""The one parser of JSON from outside (HTTP bodies, manifests, results in Kafka records).

Python's `json` recurses once per nesting level, and py_ecc (imported through web3) raises the
recursion limit to 100,000, so a deep enough document overflows the C stack and kills the
process instead of raising. Every untrusted document is therefore measured before it is
parsed: its size, then its nesting depth (brackets outside strings), then its strings, which
must be encodable as UTF-8 (a lone surrogate escape is valid JSON but not text).
"""

from __future__ import annotations

import json
import re
from typing import Any

from anchorline.errors import BadInput

MAX_DEPTH = 32
# Unrolled ("normal* (special normal*)*"): the same matches as "(?:[^"\\]|\\.)*", four times
# faster, since it does not try an alternation at every character of a string.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def depth_of(text: str) -> int:
    """How deeply `text`'s arrays and objects nest, strings ignored; linear and iterative."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise BadInput(f"{name} is not JSON")


def parse_json(
    raw: str | bytes, *, what: str, max_bytes: int, max_depth: int = MAX_DEPTH
) -> Any:
    """`raw` parsed, or BadInput (a ValueError) saying what about it is wrong."""
    if len(raw) > max_bytes:
        raise BadInput(f"{what} is larger than {max_bytes} bytes")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    else:
        text = raw
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadInput(f"{what} is larger than {max_bytes} bytes")
    if depth_of(text) > max_depth:
        raise BadInput(f"{what} nests deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not JSON: {exc.msg} at position {exc.pos}") from exc
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadInput(f"{what} has a lone surrogate escape, which UTF-8 cannot carry") from exc
    return value

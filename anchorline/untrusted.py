"""The one parser of JSON from outside (HTTP bodies, manifests, results in Kafka records).

Python's `json` recurses once per nesting level, and py_ecc (imported through web3) raises the
recursion limit to 100,000, so a deep enough document overflows the C stack and kills the
process instead of raising. Every untrusted document is therefore measured before it is
parsed: its size, then its nesting depth (brackets outside strings), then its strings, which
must be encodable as UTF-8 (a lone surrogate escape is valid JSON but not text).

A document orjson parses (its own depth limit, 1,024, is checked iteratively in Rust) and whose
value holds no float nests no deeper than allowed is taken from orjson, four to ten times
faster; anything else (orjson refuses it, it holds a float, which orjson also gives for
integers past 64 bits, or it nests too deep) goes the way above, so the answer and each refusal's
reason are the same either way.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

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


def parse_json(raw: str | bytes, *, what: str, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """`raw` parsed, or BadInput (a ValueError) saying what about it is wrong."""
    if len(raw) > max_bytes:
        raise BadInput(f"{what} is larger than {max_bytes} bytes")
    fast = _parsed_fast(raw, max_bytes, max_depth)
    if fast is not _SLOW:
        return fast
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


_SLOW = object()
STORED_DEPTH = 64  # what the job store holds: checked documents, nested a level or two deeper


def parse_stored(raw: str | bytes) -> Any:
    """JSON the job store wrote (every part of it checked on its way in): orjson's value, or
    json's for one holding a float (orjson reads integers past 64 bits as floats) or nested
    past STORED_DEPTH, or one orjson refuses (PostgreSQL's json type keeps e.g. 1e400)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
    return value if _plain(value, STORED_DEPTH) else json.loads(raw)


def _parsed_fast(raw: str | bytes, max_bytes: int, max_depth: int) -> Any:
    """orjson's value for `raw` if it is one `json` would give and within the bounds, else
    _SLOW (parse_json then finds the answer, or the reason, the careful way)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")  # a lone surrogate: orjson refuses it
        if len(raw) > max_bytes:
            return _SLOW
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _SLOW
    return value if _plain(value, max_depth) else _SLOW


def _plain(value: Any, max_depth: int) -> bool:
    """No float anywhere in `value`, and no deeper than `max_depth` (as depth_of counts)."""
    if type(value) is float:
        return False
    return type(value) not in (dict, list) or _within(value, max_depth)


def _within(container: Any, room: int) -> bool:
    # Recursive, but never past max_depth + 1 frames: it stops where the room runs out.
    if room <= 0:
        return False
    for child in container.values() if type(container) is dict else container:
        kind = type(child)
        if kind is float or ((kind is dict or kind is list) and not _within(child, room - 1)):
            return False
    return True

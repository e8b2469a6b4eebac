"""docs/contract.md: its fastavro snippet, run as written, frames messages as the codec does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from anchorline.events import AnchorRequested, JobKind, JobRequested, JobStatus, ProveRequested
from anchorline.paths import ROOT
from anchorline.stream import codec

DOC = (ROOT / "docs" / "contract.md").read_text()
TYPES = {t.__name__: t for t in (JobRequested, ProveRequested, AnchorRequested, JobStatus)}


@pytest.fixture
def snippet(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the document's Python block defines, run from the repository's root."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC, flags=re.DOTALL)
    monkeypatch.chdir(ROOT)
    scope: dict[str, Any] = {}
    exec(code, scope)  # our own document's example
    return scope


def table() -> dict[str, str]:
    return dict(re.findall(r"^\| (\w+) \| `([0-9a-f]{16})` \|$", DOC, flags=re.MULTILINE))


@pytest.mark.parametrize("name", sorted(TYPES))
def test_the_snippet_the_table_and_the_codec_agree_on_each_fingerprint(
    name: str, snippet: dict[str, Any]
) -> None:
    headers = snippet["headers"]
    expected = codec.schema_fingerprint(TYPES[name])
    assert table()[name] == expected.hex()
    assert headers[name] == b"\xc3\x01" + expected


def test_a_message_the_snippet_encodes_decodes(snippet: dict[str, Any]) -> None:
    record = {
        "job_id": "job-1",
        "kind": "anchor",
        "content_uri": "sha256:" + "ab" * 32,
        "manifest": "{}",
        "signature": "0x" + "00" * 65,
        "submitted_at": datetime(2026, 1, 1, tzinfo=UTC),
        "signature_scheme": "eip191",
        "tenant": None,
        "attributes": {},
    }
    event = codec.decode(snippet["encode"]("JobRequested", record), JobRequested)
    assert (event.job_id, event.kind) == ("job-1", JobKind.ANCHOR)

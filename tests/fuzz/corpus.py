"""Hypothesis strategies of hostile records for every input topic (a pipeline stage's three,
one a priority), each with what the system
must make of it: a dead letter on the topic's dead-letter topic, or its job failed with a reason.

A strategy gives a `Maker`: the record's shape, drawn by Hypothesis, still waiting for the
unique id that lets the test find what became of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from anchorline.events import (
    PIPELINE,
    AnchorRequested,
    JobKind,
    JobRequested,
    JobStatus,
    NotifyRequested,
    Priority,
    ProveRequested,
    Stage,
    StageState,
)
from anchorline.stream import codec
from anchorline.stream.topics import Topics

DEAD = "dead-lettered"
FAILED = "failed"
WHEN = datetime(2026, 1, 1, tzinfo=UTC)
HASH = "0x" + "ab" * 32
ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@dataclass(frozen=True)
class Hostile:
    """One record to publish, and what must become of it."""

    topic: str
    key: bytes
    value: bytes
    expect: str
    job_id: str = ""
    headers: list[tuple[str, bytes]] = field(default_factory=list)


Maker = Callable[[str], Hostile]


@dataclass(frozen=True)
class Context:
    topics: Topics
    blob_uri: str  # content that is in the blob store, so that a job gets past its content


def requested(context: Context, job_id: str) -> JobRequested:
    return JobRequested(job_id, JobKind.VERIFY, context.blob_uri, "{}", "0x", WHEN)


def prove(job_id: str) -> ProveRequested:
    return ProveRequested(job_id, JobKind.PROOF, HASH, HASH, ADDRESS, WHEN)


def anchor(job_id: str) -> AnchorRequested:
    return AnchorRequested(job_id, HASH, [job_id], WHEN)


def notify(job_id: str) -> NotifyRequested:
    state = StageState.SUCCEEDED
    return NotifyRequested(job_id, JobKind.VERIFY, Stage.VERIFY, state, WHEN, "{}")


def status(job_id: str) -> JobStatus:
    return JobStatus(job_id, JobKind.VERIFY, Stage.VERIFY, StageState.FAILED, WHEN, job_id)


def valid_events(context: Context) -> list[tuple[str, Callable[[str], Any]]]:
    """Each input topic with a well-formed event for it."""
    return [
        (context.topics.jobs_requested, lambda job: requested(context, job)),
        (context.topics.prove_requested, prove),
        (context.topics.anchor_requested, anchor),
        (context.topics.notify_requested, notify),
        (context.topics.job_status, status),
    ]


@st.composite
def undecodable(draw: st.DrawFn, context: Context) -> Maker:
    """Random bytes, another fingerprint, a cut body, bytes after the body: on any topic."""
    topic, make = draw(st.sampled_from(valid_events(context)))
    how = draw(st.sampled_from(["random", "fingerprint", "truncated", "trailing"]))
    noise = draw(st.binary(min_size=1, max_size=64))

    def build(unique: str) -> Hostile:
        body = codec.encode(make(unique))
        value = {
            "random": noise,
            "fingerprint": body[:2] + bytes(8) + body[10:],
            "truncated": body[: max(0, len(body) - len(noise))],
            "trailing": body + noise,
        }[how]
        return Hostile(topic, unique.encode(), value, DEAD)

    return build


huge_numbers = st.one_of(
    st.integers(min_value=10**4 + 1, max_value=10**40).map(str),
    st.integers(max_value=0).map(str),
    st.text(max_size=30).filter(lambda text: not text.strip().isdigit()),
)


@st.composite
def hostile_headers(draw: st.DrawFn, context: Context) -> Maker:
    """A well-formed stage request whose attempt count or generations no stage wrote."""
    topic, make = draw(st.sampled_from(valid_events(context)[:4]))
    header = draw(
        st.one_of(
            huge_numbers.map(lambda raw: ("retry_topic-attempts", raw.encode())),
            st.one_of(
                st.integers(min_value=10**6 + 1, max_value=10**40),
                st.integers(max_value=-1),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=10),
                st.lists(st.integers(), max_size=3),
            ).map(lambda gen: ("anchorline-generations", json.dumps({"x": gen}).encode())),
            st.just(("anchorline-generations", b"[" * 5000 + b"]" * 5000)),
        )
    )

    def build(unique: str) -> Hostile:
        value = codec.encode(make(unique))
        return Hostile(topic, unique.encode(), value, DEAD, headers=[header])

    return build


@st.composite
def hostile_requests(draw: st.DrawFn, context: Context) -> Maker:
    """JobRequested with hostile fields: each fails its job with the reason."""
    depth = draw(st.integers(min_value=33, max_value=40_000))
    change = draw(
        st.sampled_from(
            [
                {"manifest": "[" * depth + "]" * depth},
                {"manifest": json.dumps({"x": "y" * (64 * 1024)})},
                {"content_uri": "file:///dev/zero"},
                {"content_uri": "file:///etc/hostname"},
                {"content_uri": "file:///proc/self/environ"},
                {"content_uri": "s3://bucket/key"},
                {"signature": "0x" + "zz" * 65},
                {"signature": ""},
            ]
        )
    )

    def build(unique: str) -> Hostile:
        event = replace(requested(context, unique), **change)
        return Hostile(
            context.topics.jobs_requested, unique.encode(), codec.encode(event), FAILED, unique
        )

    return build


@st.composite
def hostile_anchors(draw: st.DrawFn, context: Context) -> Maker:
    """AnchorRequested whose root is no 32-byte hex: its jobs fail with the reason."""
    root = draw(
        st.one_of(
            st.text(max_size=80).filter(lambda text: len(text.removeprefix("0x")) != 64),
            st.just("0x" + "zz" * 32),
            st.just("0x\x00"),  # quoted in the failure's reason: PostgreSQL's text refuses NUL
        )
    )

    def build(unique: str) -> Hostile:
        event = replace(anchor(unique), root=root)
        return Hostile(
            context.topics.anchor_requested, unique.encode(), codec.encode(event), FAILED, unique
        )

    return build


@st.composite
def forged_events(draw: st.DrawFn, context: Context) -> Maker:
    """Well-formed records no stage could have written: dead-lettered with the reason."""
    bad_id = draw(
        st.one_of(
            st.text(min_size=65, max_size=200, alphabet="abc"),
            st.text(min_size=1, max_size=20).filter(lambda t: any(c in t for c in "/ \\\n{")),
        )
    )
    kind = draw(
        st.sampled_from(["job id", "signer", "hash", "generation", "result", "stage", "notice"])
    )
    number = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=10**6 + 1)))
    number = max(min(number, 2**31 - 1), -(2**31))  # what Avro's int can carry

    def build(unique: str) -> Hostile:
        topics = context.topics
        made: dict[str, tuple[str, Any]] = {
            "job id": (topics.jobs_requested, replace(requested(context, unique), job_id=bad_id)),
            "signer": (topics.prove_requested, replace(prove(unique), signer=bad_id)),
            "hash": (topics.prove_requested, replace(prove(unique), content_sha256=bad_id)),
            "generation": (topics.job_status, replace(status(unique), generation=number)),
            "result": (topics.job_status, replace(status(unique), result="[" * 40 + "]" * 40)),
            "stage": (topics.job_status, replace(status(unique), stage=Stage.ANCHOR)),
            "notice": (topics.notify_requested, replace(notify(unique), job_id=bad_id)),
        }
        topic, event = made[kind]
        return Hostile(topic, unique.encode(), codec.encode(event), DEAD)

    return build


@st.composite
def on_a_lane(draw: st.DrawFn, context: Context, makers: st.SearchStrategy[Maker]) -> Maker:
    """A record for a pipeline stage on the input topic of one of the three priorities (the
    runner reads all three alike); the others' topics as they are."""
    make = draw(makers)
    priority = draw(st.sampled_from(list(Priority)))
    pipeline = {context.topics.request_topic(stage) for stage in PIPELINE}

    def build(unique: str) -> Hostile:
        record = make(unique)
        if record.topic not in pipeline:
            return record
        return replace(record, topic=context.topics.lane(record.topic, priority))

    return build


def hostile(context: Context) -> st.SearchStrategy[Maker]:
    return on_a_lane(
        context,
        st.one_of(
            undecodable(context),
            hostile_headers(context),
            hostile_requests(context),
            hostile_anchors(context),
            forged_events(context),
        ),
    )

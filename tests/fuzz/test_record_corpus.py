"""A generated corpus of hostile records on every input topic of a running `anchorline up`:
each bad record is dead-lettered with a reason (or fails its job with one), no service dies,
and valid jobs submitted after the corpus still succeed.

`ANCHORLINE_FUZZ_RECORDS` sets the size of the corpus (default 1000, about two minutes).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer
from corpus import DEAD, FAILED, Context, Hostile, Maker, hostile
from eth_account import Account
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from system_under_test import System

from anchorline.events import PIPELINE
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobstore import FileBlobStore

RECORDS = int(os.environ.get("ANCHORLINE_FUZZ_RECORDS", "1000"))
SETTLE_S = 180.0


def corpus(context: Context, count: int) -> list[Hostile]:
    """`count` hostile records drawn by Hypothesis, each with an id of its own."""
    makers: list[Maker] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def draw(data: st.DataObject) -> None:
        makers.append(data.draw(hostile(context)))

    draw()
    return [make(f"fuzz-{uuid.uuid4().hex}") for make in makers]


def publish(system: System, records: list[Hostile]) -> None:
    producer = Producer({"bootstrap.servers": system.settings.kafka_bootstrap, "acks": "all"})
    for record in records:
        producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers)
        producer.poll(0)
    assert producer.flush(60) == 0


def dead_letters(system: System, topics: set[str], keys: set[bytes]) -> dict[bytes, Any]:
    """The dead letters of `keys`, read from the start until all of them are there."""
    consumer = Consumer(
        {
            "bootstrap.servers": system.settings.kafka_bootstrap,
            "group.id": f"fuzz-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe(sorted(topics))
    found: dict[bytes, Any] = {}
    deadline = time.monotonic() + SETTLE_S
    try:
        while time.monotonic() < deadline and not keys <= set(found):
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None and message.key() in keys:
                    found[message.key()] = message
    finally:
        consumer.close()
    return found


def job_states(system: System, job_ids: list[str], wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_S
    jobs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if jobs.get(job_id, {}).get("state") in wanted:
                continue
            response = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10)
            if response.status_code == 200:
                jobs[job_id] = response.json()
        if all(jobs.get(job_id, {}).get("state") in wanted for job_id in job_ids):
            break
        time.sleep(0.5)
    return jobs


def submit_valid(system: System, content: bytes) -> str:
    account = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": account.address,
    }
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={
            "kind": "proof",
            "manifest": json.dumps(document),
            "signature": sign_eip191(document, account.key.hex()),
        },
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def restarts(output: list[str]) -> list[str]:
    return [line for line in output if "exited with" in line and "restarting" in line]


def test_hostile_records_on_every_topic_die_alone_and_the_system_goes_on(
    fuzz_system: System,
) -> None:
    system = fuzz_system
    blob_uri, _ = FileBlobStore(system.settings.blobs).put_file(io.BytesIO(b"fuzzed content"))
    records = corpus(Context(system.settings.topics, blob_uri), RECORDS)
    topics = system.settings.topics
    inputs = {*topics.stage_inputs(), *topics.lane_topics(), topics.job_status}
    assert {r.topic for r in records} == inputs
    seen_output = len(system.output)

    publish(system, records)

    doomed = {r.key: r for r in records if r.expect == DEAD}
    # A stage's three priorities share its dead-letter topic.
    source = {lane: topics.request_topic(s) for s in PIPELINE for lane in topics.lanes(s)}
    letter_topics = {topics.dead_letter(source.get(r.topic, r.topic)) for r in doomed.values()}
    letters = dead_letters(system, letter_topics, set(doomed))
    missing = {key: doomed[key].topic for key in set(doomed) - set(letters)}
    assert not missing, f"{len(missing)} bad records were not dead-lettered: {missing}"
    for key, letter in letters.items():
        reason = dict(letter.headers()).get("kafka_dlt-exception-message", b"")
        assert reason, f"the dead letter of {key!r} on {letter.topic()} carries no reason"

    failing = [r.job_id for r in records if r.expect == FAILED]
    jobs = job_states(system, failing, {"failed", "dead"})
    unfinished = {job: jobs.get(job, {}).get("state") for job in failing if job not in jobs}
    assert not unfinished, f"jobs of hostile requests that did not end: {unfinished}"
    assert all(job["error"] for job in jobs.values()), "a job ended without its reason"

    valid = [submit_valid(system, f"valid after the corpus {n}".encode()) for n in range(3)]
    done = job_states(system, valid, {"succeeded", "failed", "dead"})
    assert {job["state"] for job in done.values()} == {"succeeded"}, done

    assert not restarts(system.output[seen_output:]), "".join(system.output[seen_output:][-60:])

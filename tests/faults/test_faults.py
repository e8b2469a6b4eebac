"""Real faults under load: killed services, a restarted broker, a chain and a database that go
away, poison on every input topic, and jobs that die and are replayed from the dead-letter topic.

Each test runs a system of its own (tests/faults/fault_harness.py) and submits
ANCHORLINE_FAULT_JOBS jobs (default 3000) straight to Kafka over about ANCHORLINE_FAULT_LOAD_S
seconds (default 30), breaks something while they flow, then checks and prints that every job
reached the state it must end in, once, and that every anchored root is on chain exactly once.

Part of `make test`; on their own: .venv/bin/pytest -m slow -s tests/faults
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import MakeCluster
from fault_harness import (
    Cluster,
    Job,
    Submitter,
    Summary,
    Workload,
    check,
    manifest_for,
)
from web3 import Web3

from anchorline.errors import Poison
from anchorline.events import (
    AnchorRequested,
    JobKind,
    JobRequested,
    JobStatus,
    ProveRequested,
    Stage,
    StageState,
    new_id,
    utcnow,
)
from anchorline.proof.manifest import sign_eip191
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec
from anchorline.stream.watchdog import EXIT_HUNG

pytestmark = [pytest.mark.slow, pytest.mark.integration]

JOBS = int(os.environ.get("ANCHORLINE_FAULT_JOBS", "3000"))
LOAD_S = float(os.environ.get("ANCHORLINE_FAULT_LOAD_S", "30"))
TIMEOUT_S = 300 + JOBS / 10


def run_load(
    cluster: Cluster,
    scenario: str,
    fault: Callable[[Submitter], list[str]],
    capsys: pytest.CaptureFixture[str],
    *,
    extra: Callable[[Submitter], dict[str, Job]] | None = None,
    post: Callable[[Summary], None] | None = None,
    load_s: float = LOAD_S,
) -> tuple[Summary, Submitter]:
    """Submit the load over `load_s`, run `fault` while it flows, wait for the end, check it."""
    workload = Workload.create(cluster.settings.blobs)
    submitter = cluster.submitter()
    started = time.monotonic()
    submitter.start(workload, JOBS, rate=JOBS / load_s)
    notes = fault(submitter)
    submitter.join()
    jobs = dict(submitter.accepted)
    if extra is not None:
        jobs.update(extra(submitter))
    cluster.wait_terminal(jobs, timeout=TIMEOUT_S)
    summary = check(cluster, scenario, jobs)
    summary.seconds = time.monotonic() - started
    summary.notes.extend(notes)
    exits = cluster.unexpected_exits()
    if exits:
        summary.notes.append(f"services that exited on their own (restarted): {exits}")
    if post is not None:
        post(summary)
    report(summary, capsys)
    return summary, submitter


def report(summary: Summary, capsys: pytest.CaptureFixture[str]) -> None:
    """Print the summary line, then fail on any broken promise."""
    with capsys.disabled():
        print(f"\n{summary.line()}", flush=True)
    summary.assert_clean()


def when_sent(submitter: Submitter, fraction: float) -> None:
    submitter.wait_sent(int(JOBS * fraction))


# 1 -----------------------------------------------------------------------------------------


def test_kill_each_service_mid_load(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster()
    services = ("verifier", "prover", "chain-writer", "projector")

    def fault(submitter: Submitter) -> list[str]:
        jobs = lambda: set(submitter.accepted)  # noqa: E731
        cluster.wait_progress(jobs, JOBS // 20, total=JOBS, timeout=120)
        notes, killed = [], []
        for index, service in enumerate(services):
            when_sent(submitter, (index + 1) / 6)
            done = cluster.terminal_count(jobs())
            killed.append((service, cluster.members(service), time.monotonic()))
            cluster.kill_service(service, down_s=1.0)
            notes.append(f"kill -9 {service} at {submitter.sent} sent/{done} terminal")
        # A killed member holds its group until its session times out: wait for each to be
        # replaced by its restarted process, all at once.
        for service, before, at in killed:
            cluster.wait_in_group(service, replacing=before, timeout=180)
            notes.append(f"{service} back in its group {time.monotonic() - at:.0f} s after kill")
        return notes

    summary, _ = run_load(cluster, "kill -9 each service", fault, capsys, load_s=LOAD_S * 2)
    assert all(cluster.services[s].kills == 1 for s in services), summary.line()
    exits = cluster.unexpected_exits()
    assert not exits, f"{summary.line()}\n{cluster.tracebacks(exits)}"


# 2 -----------------------------------------------------------------------------------------


STALL_S = 120  # no job moving for this long after a fault is a hang, not a slow recovery
# (a commit that librdkafka blocks is cut after ANCHORLINE_COMMIT_DEADLINE_S, 30 s: the
# stage exits and is restarted, and its replacement rejoins the group)


def test_restart_the_broker_mid_load(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster()
    stalls: list[str] = []

    def back_after(submitter: Submitter, what: str, began: float) -> str:
        """Wait for jobs to move again; if they do not, say where each stage is stuck."""
        jobs = lambda: set(submitter.accepted)  # noqa: E731
        if cluster.progress(jobs, JOBS // 20, total=JOBS, timeout=STALL_S) is None:
            stuck = cluster.unstick()  # restarts them too, so the rest of the test can end
            stalls.append(f"no job moved for {STALL_S} s after the {what}; stuck: {stuck}")
            cluster.wait_progress(jobs, JOBS // 20, total=JOBS, timeout=180)
        return f"{what}: jobs flowing again {time.monotonic() - began:.0f} s after it went down"

    def fault(submitter: Submitter) -> list[str]:
        when_sent(submitter, 1 / 4)
        cluster.wait_progress(lambda: set(submitter.accepted), 1, total=JOBS, timeout=120)
        began = time.monotonic()
        cluster.broker.stop()  # SIGTERM: a controlled shutdown
        time.sleep(3)
        cluster.broker.start()
        notes = [back_after(submitter, "broker restart", began)]
        began = time.monotonic()
        cluster.kill_broker()  # kill -9: the broker recovers its logs on start
        time.sleep(3)
        cluster.broker.start()
        notes.append(back_after(submitter, "broker kill -9", began))
        return notes + stalls

    summary, _ = run_load(cluster, "broker restart", fault, capsys, load_s=LOAD_S * 2)
    assert not stalls, f"jobs stopped moving after a broker restart: {stalls}"
    # A stage may end itself when librdkafka blocks its commit (the watchdog's exit code 70,
    # confluentinc/librdkafka#5456); any other exit is a crash.
    crashes = {
        name: codes
        for name, codes in cluster.unexpected_exits().items()
        if set(codes) - {EXIT_HUNG}
    }
    assert not crashes, (
        f"services crashed: {crashes}\n{summary.line()}\n{cluster.tracebacks(crashes)}"
    )


# 3 -----------------------------------------------------------------------------------------

CHAIN_DOWN_S = 6.0  # longer than the first two delays (1 s, 2 s), shorter than the whole ladder


def test_stop_anvil_longer_than_the_first_delays(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster()
    w3 = Web3(Web3.HTTPProvider(cluster.settings.rpc_url))

    def fault(submitter: Submitter) -> list[str]:
        when_sent(submitter, 1 / 3)
        cluster.wait_anchors(1, timeout=120)
        block = w3.eth.block_number
        cluster.chain.stop()  # SIGTERM: anvil writes its state file on the way out
        time.sleep(CHAIN_DOWN_S)
        cluster.chain.start()
        after = w3.eth.block_number
        code = w3.eth.get_code(Web3.to_checksum_address(cluster.settings.registry_address))
        # >=: an anchor sent between reading the block number and the stop is mined and kept
        assert after >= block and len(code) > 2, "anvil lost its chain across the restart"
        return [f"anvil down {CHAIN_DOWN_S:.0f} s at block {block}, back at block {after}"]

    def post(summary: Summary) -> None:
        for stage in ("verify", "anchor"):
            summary.notes.append(f"{cluster.count_events(stage, 'retrying')} {stage} retries")
        assert cluster.count_events("anchor", "retrying") > 0, "the outage reached no stage"

    run_load(cluster, "anvil down", fault, capsys, post=post)


# 4 -----------------------------------------------------------------------------------------

DATABASE_DOWN_S = 10.0


def test_stop_postgres_mid_load(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster(own_postgres=True)
    server = cluster.postgres
    assert server is not None

    def fault(submitter: Submitter) -> list[str]:
        when_sent(submitter, 1 / 3)
        done = cluster.terminal_count(set(submitter.accepted))
        server.stop()
        time.sleep(DATABASE_DOWN_S)
        server.start()
        return [f"PostgreSQL down {DATABASE_DOWN_S:.0f} s after {done} terminal"]

    run_load(cluster, "postgres down", fault, capsys)


# 5 -----------------------------------------------------------------------------------------

FOREIGN_SCHEMA = {
    "type": "record",
    "name": "Foreign",
    "namespace": "org.example",
    "fields": [{"name": "job_id", "type": "string"}, {"name": "amount", "type": "long"}],
}


def foreign_avro() -> bytes:
    import fastavro
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    parsed = fastavro.parse_schema(FOREIGN_SCHEMA)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, {"job_id": new_id(), "amount": 42})
    digest = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    return codec.MAGIC + digest + body.getvalue()


def sample_events() -> dict[type[Any], Any]:
    job_id = new_id()
    return {
        JobRequested: JobRequested(
            job_id, JobKind.ANCHOR, "sha256:" + "ab" * 32, "{}", "0x", utcnow()
        ),
        ProveRequested: ProveRequested(
            job_id, JobKind.ANCHOR, "0x" + "cd" * 32, "0x" + "ef" * 32, "0x" + "12" * 20, utcnow()
        ),
        AnchorRequested: AnchorRequested(new_id(), "0x" + "34" * 32, [job_id], utcnow()),
        JobStatus: JobStatus(job_id, JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING),
    }


def poison_for(own: type[Any], rng: random.Random) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) pairs that no consumer of a topic carrying `own` can take."""
    samples = sample_events()
    wrong = next(event for kind, event in samples.items() if kind is not own)
    valid = codec.encode(samples[own])
    fingerprint = codec.schema_fingerprint(own)
    return [
        (b"poison-random", bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))),
        (None, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))),
        (b"poison-empty", b""),
        (b"poison-tombstone", None),
        (b"poison-wrong-schema", codec.encode(wrong)),
        (b"poison-foreign-schema", foreign_avro()),
        (b"poison-truncated", valid[: len(valid) // 2]),
        (b"poison-header-only", valid[: codec.HEADER_SIZE]),
        (b"poison-bad-marker", b"\xc3\x02" + valid[2:]),
        (b"poison-random-body", codec.MAGIC + fingerprint + rng.randbytes(40)),
        (rng.randbytes(16), rng.randbytes(64)),  # a key that is not UTF-8 either
    ]


def invalid_statuses() -> list[tuple[bytes | None, bytes | None]]:
    """Statuses that decode but that the jobs table cannot hold: dead letters too."""
    events = [
        JobStatus(new_id(), JobKind.VERIFY, Stage.VERIFY, StageState.SUCCEEDED, result="{oops"),
        JobStatus(new_id(), JobKind.VERIFY, Stage.VERIFY, StageState.SUCCEEDED, result="[1]"),
        JobStatus("x" * 100, JobKind.VERIFY, Stage.VERIFY, StageState.RUNNING),
    ]
    return [(event.job_id.encode(), codec.encode(event)) for event in events]


def test_poison_on_every_input_topic(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster()
    topics = cluster.settings.topics
    inputs = {
        topics.jobs_requested: JobRequested,
        topics.prove_requested: ProveRequested,
        topics.anchor_requested: AnchorRequested,
        topics.job_status: JobStatus,
    }
    rng = random.Random(5)
    published = dict.fromkeys(inputs, 0)

    def fault(submitter: Submitter) -> list[str]:
        for round_ in range(3):
            when_sent(submitter, (round_ + 1) / 4)
            for topic, own in inputs.items():
                for key, value in poison_for(own, rng):
                    with pytest.raises(Poison):  # or this test would count it wrong
                        codec.decode(value, own)
                    submitter.produce_raw(topic, key, value)
                    published[topic] += 1
            for key, value in invalid_statuses():
                submitter.produce_raw(topics.job_status, key, value)
                published[topics.job_status] += 1
        return [f"{sum(published.values())} poison messages on {len(inputs)} topics"]

    summary, _ = run_load(cluster, "poison", fault, capsys)
    for topic, count in published.items():
        letters = cluster.wait_dead_letters(topics.dead_letter(topic), count)
        assert len(letters) == count, (topic, len(letters), count)
        for letter in letters:
            reason = dict(letter["headers"]).get("kafka_dlt-exception-message", b"")
            assert reason, f"a dead letter on {topic} has no reason: {letter}"
    exits = cluster.unexpected_exits()
    assert not exits, f"{summary.line()}\n{cluster.tracebacks(exits)}"


# 6 -----------------------------------------------------------------------------------------

MISSING = max(10, JOBS // 40)


def test_dead_jobs_replayed_from_the_dlq_run_once(make_cluster: MakeCluster, capsys) -> None:
    cluster = make_cluster()
    settings = cluster.settings
    rng = random.Random(11)
    owner = Workload.create(settings.blobs, contents=1, creators=1)
    account = owner.accounts[0]
    # Contents that are not in the blob store yet: their jobs retry until they are dead.
    missing = [f"missing content {n}\n".encode() * rng.randint(10, 5000) for n in range(5)]
    dying: dict[str, Job] = {}

    def fault(submitter: Submitter) -> list[str]:
        when_sent(submitter, 1 / 4)
        for _ in range(MISSING):
            data = rng.choice(missing)
            document = manifest_for(data, account.address, 99)
            event = JobRequested(
                job_id=str(uuid.uuid4()),
                kind=rng.choice(list(JobKind)),
                content_uri="sha256:" + hashlib.sha256(data).hexdigest(),
                manifest=json.dumps(document),
                signature=sign_eip191(document, account.key.hex()),
                submitted_at=utcnow(),
            )
            job = Job(event.job_id, event.kind, "dead")
            submitter.publish(job, event)
            dying[job.job_id] = job
        return [f"{MISSING} jobs whose content is missing"]

    # First: the load completes, and the jobs without content die (not hold anything up).
    summary, submitter = run_load(
        cluster, "dead before replay", fault, capsys, extra=lambda _: dict(dying)
    )
    assert summary.states["dead"] == MISSING
    letters = cluster.wait_dead_letters(
        settings.topics.dead_letter(settings.topics.jobs_requested), MISSING
    )
    assert len(letters) == MISSING
    assert {dict(m["headers"])["retry_topic-attempts"] for m in letters} == {
        str(settings.max_attempts).encode()
    }

    # Fix the cause, replay, and every one of them succeeds, once.
    for data in missing:
        FileBlobStore(settings.blobs).put_file(io.BytesIO(data))
    started = time.monotonic()
    replay = ["dlq", "replay", "--stage", "verify"]
    first = cluster.cli(*replay)
    replayed = {job_id: Job(job_id, job.kind, "succeeded") for job_id, job in dying.items()}
    cluster.wait_generation(set(replayed), 1, timeout=TIMEOUT_S)
    after_first = cluster.events_of(set(replayed))
    summary = check(cluster, "replay from the DLQ", {**submitter.accepted, **replayed})
    summary.seconds = time.monotonic() - started
    summary.replayed = len(replayed)
    summary.replayed_once = cluster.succeeded_once(replayed, generation=1)
    summary.notes.append(f"replay said: {first.strip().splitlines()[-1]!r}")

    # The same letters again: nothing runs, nothing moves.
    second = cluster.cli(*replay)
    time.sleep(8)
    after_second = cluster.events_of(set(replayed))
    summary.notes.append(f"second replay said: {second.strip().splitlines()[-1]!r}")
    report(summary, capsys)
    assert after_second == after_first, "replaying the same letters again ran jobs again"
    generations = cluster.generations(set(replayed))
    assert set(generations.values()) == {1}, generations

"""The access policy: who may read and write each topic, group and transactional id."""

from __future__ import annotations

import pytest

from anchorline.stream.access import (
    DESK,
    EXTERNAL_PRODUCER,
    PRINCIPALS,
    READER_GROUPS,
    Grant,
    Operation,
    Resource,
    grants,
)
from anchorline.stream.dlq import stages
from anchorline.stream.kafka import transactional_id
from anchorline.stream.topics import Topics

TOPICS = Topics("anchorline", retry_levels=2)


def holders(resource: Resource, name: str, operation: Operation) -> set[str]:
    return {
        principal
        for principal in PRINCIPALS
        if Grant(resource, name, operation) in grants(principal, TOPICS)
    }


def writers(topic: str) -> set[str]:
    return holders(Resource.TOPIC, topic, Operation.WRITE)


def readers(topic: str) -> set[str]:
    return holders(Resource.TOPIC, topic, Operation.READ)


def test_the_scheduler_may_submit_jobs_of_each_priority_and_nothing_else() -> None:
    assert grants("scheduler", TOPICS) == [
        *(
            Grant(Resource.TOPIC, f"anchorline.jobs.requested{lane}", Operation.WRITE)
            for lane in (".high", "", ".low")
        ),
        Grant(Resource.TOPIC, "anchorline.job.status", Operation.WRITE),
    ]


def test_the_external_producer_may_write_jobs_requested_and_nothing_else() -> None:
    assert grants(EXTERNAL_PRODUCER, TOPICS) == [
        Grant(Resource.TOPIC, f"anchorline.jobs.requested{lane}", Operation.WRITE)
        for lane in (".high", "", ".low")
    ]


def test_status_events_come_only_from_the_gateway_the_scheduler_and_the_stages() -> None:
    assert writers(TOPICS.job_status) == {
        "gateway",
        "scheduler",
        "verifier",
        "prover",
        "chain-writer",
        "notifier",
        DESK,  # a replayed status letter
    }
    assert readers(TOPICS.job_status) == {"projector", DESK}  # the desk: to count what waits


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        # a stage writes its own input too: its delay forwarder returns due retries there
        # and the dead-letter desk replays a letter where it came from
        (TOPICS.jobs_requested, {"gateway", "scheduler", EXTERNAL_PRODUCER, "verifier", DESK}),
        (TOPICS.prove_requested, {"verifier", "prover", DESK}),
        (TOPICS.anchor_requested, {"prover", "chain-writer", DESK}),
    ],
)
def test_each_request_topic_has_only_its_producers(topic: str, expected: set[str]) -> None:
    assert writers(topic) == expected


@pytest.mark.parametrize(
    ("service", "source"),
    [
        ("verifier", TOPICS.jobs_requested),
        ("prover", TOPICS.prove_requested),
        ("chain-writer", TOPICS.anchor_requested),
    ],
)
def test_a_stage_alone_reads_and_writes_its_delay_and_dead_letter_topics(
    service: str, source: str
) -> None:
    # the projector keeps each job's request, for a retry through the API
    keeper = {"projector"} if source == TOPICS.jobs_requested else set()
    # the desk reads what waits there, to count it for the console
    assert readers(source) == {service, DESK} | keeper
    for topic in TOPICS.retries(source):
        assert readers(topic) == {service, DESK}
    for topic in [*TOPICS.retries(source), TOPICS.dead_letter(source)]:
        assert writers(topic) == {service}
    for group in (f"anchorline-{service}", f"anchorline-{service}-delay"):
        assert holders(Resource.GROUP, group, Operation.READ) == {service}


@pytest.mark.parametrize("service", ["verifier", "prover", "chain-writer"])
def test_a_stages_transactional_ids_match_its_prefix_and_no_other_stages(service: str) -> None:
    (prefix,) = [g for g in grants(service, TOPICS) if g.resource is Resource.TRANSACTIONAL_ID]
    assert prefix.prefixed and prefix.operation is Operation.WRITE
    assert transactional_id(service).startswith(prefix.name)
    assert transactional_id(f"{service}-delay").startswith(prefix.name)
    others = {"verifier", "prover", "chain-writer"} - {service}
    assert not any(transactional_id(other).startswith(prefix.name) for other in others)


def test_only_transactional_ids_and_the_desks_reader_groups_are_granted_by_prefix() -> None:
    prefixed = [g for p in PRINCIPALS for g in grants(p, TOPICS) if g.prefixed]
    groups = [g for g in prefixed if g.resource is Resource.GROUP]
    assert {g.resource for g in prefixed} - {Resource.GROUP} == {Resource.TRANSACTIONAL_ID}
    assert groups == [Grant(Resource.GROUP, READER_GROUPS, Operation.READ, prefixed=True)]
    assert holders(Resource.GROUP, READER_GROUPS, Operation.READ) == set()  # prefixed only


def test_the_gateway_reads_no_messages_and_describes_what_the_pipeline_view_needs() -> None:
    own = grants("gateway", TOPICS)
    assert not [g for g in own if g.operation is Operation.READ]
    described = {g.name for g in own if g.operation is Operation.DESCRIBE}
    assert TOPICS.dead_letter(TOPICS.job_status) in described
    assert set(TOPICS.retries(TOPICS.prove_requested)) <= described
    assert "anchorline-projector" in described


def test_the_dead_letters_of_the_status_topic_belong_to_the_projector() -> None:
    assert writers(TOPICS.dead_letter(TOPICS.job_status)) == {"projector"}


def test_the_desk_reads_the_dead_letters_the_replay_log_and_what_waits_and_no_more() -> None:
    # what waits: every priority's input of each stage, its delay topics and the statuses
    read = {
        g.name
        for g in grants(DESK, TOPICS)
        if g.operation is Operation.READ and g.resource is Resource.TOPIC
    }
    letters = {*stages(TOPICS).values(), TOPICS.replay_log}
    waiting = {*TOPICS.stage_inputs(), *TOPICS.lane_topics(), TOPICS.job_status}
    waiting |= {delay for source in TOPICS.stage_inputs() for delay in TOPICS.retries(source)}
    assert read == letters | waiting
    assert all(readers(topic) == {DESK} for topic in letters)  # the operator is a super user
    assert holders(Resource.TRANSACTIONAL_ID, "anchorline-dlq-replay", Operation.WRITE) == {DESK}
    (group,) = [g for g in grants(DESK, TOPICS) if g.resource is Resource.GROUP]
    assert (group.name, group.prefixed) == (READER_GROUPS, True)  # topic_reader's own groups


def test_an_unknown_principal_is_refused() -> None:
    with pytest.raises(ValueError, match="no such principal"):
        grants("mallory", TOPICS)


def test_only_the_gateway_cancels_jobs_and_every_stage_reads_the_cancellations() -> None:
    assert writers(TOPICS.cancellations) == {"gateway"}
    assert readers(TOPICS.cancellations) == {"verifier", "prover", "chain-writer"}


def test_only_the_projector_requests_webhooks_and_only_the_notifier_calls_them() -> None:
    # the notifier's delay forwarder, and the desk replaying a dead webhook
    assert writers(TOPICS.notify_requested) == {"projector", "notifier", DESK}
    assert readers(TOPICS.notify_requested) == {"notifier", DESK}


def test_the_desk_replays_a_letter_to_the_topic_of_its_priority() -> None:
    assert TOPICS.lane_topics()
    assert all(DESK in writers(lane) for lane in TOPICS.lane_topics())

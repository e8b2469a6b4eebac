"""Who may do what on the broker: one principal per service, each with only what it needs.

Pure policy, no Kafka import: `stream/provision.py` turns it into users and ACLs. The group
and transactional ids mirror the ones the runner, the delay forwarder, the projector and
`kafka.transactional_id()` use (`anchorline-<service>…`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from anchorline.events import PIPELINE, Stage
from anchorline.stream.topics import Topics


class Resource(StrEnum):
    TOPIC = "TOPIC"
    GROUP = "GROUP"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class Operation(StrEnum):
    READ = "READ"  # implies DESCRIBE
    WRITE = "WRITE"  # implies DESCRIBE
    DESCRIBE = "DESCRIBE"


@dataclass(frozen=True)
class Grant:
    """One ALLOW rule: `operation` on the resource `name`, or on every name it begins."""

    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False


STAGE_SERVICES: dict[str, Stage] = {
    "verifier": Stage.VERIFY,
    "prover": Stage.PROVE,
    "chain-writer": Stage.ANCHOR,
    "notifier": Stage.NOTIFY,
}
EXTERNAL_PRODUCER = "external-producer"
# The gateway's dead-letter desk (the console's, behind an admin key) logs in as this: the
# gateway's own login reads no message and writes no stage's input.
DESK = "dead-letter-desk"
# stream/topic_reader.py reads a topic to its end as a group of its own, named by this and a uuid.
READER_GROUPS = "anchorline-reader-"
PRINCIPALS: tuple[str, ...] = (
    "gateway",
    *STAGE_SERVICES,
    "projector",
    "scheduler",
    EXTERNAL_PRODUCER,
    DESK,
)


def grants(principal: str, topics: Topics) -> list[Grant]:
    """Everything `principal` may do; nothing else is allowed (the broker denies by default)."""
    if principal in STAGE_SERVICES:
        return _stage(principal, STAGE_SERVICES[principal], topics)
    if principal == "gateway":
        return _gateway(topics)
    if principal == "projector":
        return _projector(topics)
    if principal == "scheduler":  # submits the jobs of schedules, as the gateway does
        submits = (*topics.lanes(Stage.VERIFY), topics.job_status)
        return [_topic(name, Operation.WRITE) for name in submits]
    if principal == EXTERNAL_PRODUCER:
        return [_topic(name, Operation.WRITE) for name in topics.lanes(Stage.VERIFY)]
    if principal == DESK:
        return _desk(topics)
    raise ValueError(f"no such principal: {principal!r}")


def _stage(service: str, stage: Stage, topics: Topics) -> list[Grant]:
    source = topics.request_topic(stage)
    lanes = list(topics.lanes(stage))
    delays = topics.retries(source)
    # The delay forwarder returns due messages to their lane, so a stage writes its own input.
    writes = [*lanes, *delays, topics.dead_letter(source), topics.job_status, *_next(stage, topics)]
    # A pipeline stage skips what was cancelled; the notifier announces it all the same.
    follows = [topics.cancellations] if stage in PIPELINE else []
    return [
        *(_topic(name, Operation.READ) for name in [*lanes, *delays, *follows]),
        *(_topic(name, Operation.WRITE) for name in writes),
        *(_group(group, Operation.READ) for group in _groups(service)),
        Grant(Resource.TRANSACTIONAL_ID, f"anchorline-{service}-", Operation.WRITE, prefixed=True),
    ]


def _gateway(topics: Topics) -> list[Grant]:
    # `/v1/pipeline` compares each topic's end offsets with each group's commits.
    watched = [*topics.stage_inputs(), topics.job_status]
    described = [
        *watched,
        *topics.lane_topics(),
        *(topic for source in topics.stage_inputs() for topic in topics.retries(source)),
        *(topics.dead_letter(topic) for topic in watched),
    ]
    groups = [group for service in STAGE_SERVICES for group in _groups(service)]
    return [
        *(_topic(name, Operation.WRITE) for name in topics.lanes(Stage.VERIFY)),
        _topic(topics.job_status, Operation.WRITE),
        _topic(topics.cancellations, Operation.WRITE),
        *(_topic(name, Operation.DESCRIBE) for name in described),
        *(_group(group, Operation.DESCRIBE) for group in [*groups, "anchorline-projector"]),
    ]


def _desk(topics: Topics) -> list[Grant]:
    """What `anchorline dlq` does (stream/dlq.py): read every dead-letter topic and the replay
    log, and replay a letter to the topic it came from, with its `queued` status, in one
    transaction of its fixed id; and read what waits in each stage's input and delay topics
    (the console counts messages, not offsets: gateway/counts.py)."""
    sources = [*(topics.request_topic(stage) for stage in Stage), topics.job_status]
    # A letter goes back to the priority's topic it came from; each is counted too.
    inputs = [*(name for stage in Stage for name in topics.lanes(stage)), topics.job_status]
    delays = [delay for source in topics.stage_inputs() for delay in topics.retries(source)]
    return [
        *(_topic(topics.dead_letter(source), Operation.READ) for source in sources),
        *(_topic(name, Operation.READ) for name in [*inputs, *delays]),
        _topic(topics.replay_log, Operation.READ),
        *(_topic(name, Operation.WRITE) for name in inputs),
        _topic(topics.replay_log, Operation.WRITE),
        Grant(Resource.TRANSACTIONAL_ID, f"{topics.prefix}-dlq-replay", Operation.WRITE),
        Grant(Resource.GROUP, READER_GROUPS, Operation.READ, prefixed=True),
    ]


def _projector(topics: Topics) -> list[Grant]:
    return [
        _topic(topics.job_status, Operation.READ),
        # each job's request, kept for a retry
        *(_topic(name, Operation.READ) for name in topics.lanes(Stage.VERIFY)),
        _topic(topics.dead_letter(topics.job_status), Operation.WRITE),
        _topic(topics.notify_requested, Operation.WRITE),  # ended jobs, for their webhooks
        _group("anchorline-projector", Operation.READ),
    ]


def _next(stage: Stage, topics: Topics) -> list[str]:
    following = {Stage.VERIFY: Stage.PROVE, Stage.PROVE: Stage.ANCHOR}
    return list(topics.lanes(following[stage])) if stage in following else []


def _groups(service: str) -> list[str]:
    groups = [f"anchorline-{service}", f"anchorline-{service}-delay"]
    if service == "chain-writer":
        groups.append("anchorline-chain-writer-watch")  # its finality watch (WATCH_GROUP)
    return groups


def _topic(name: str, operation: Operation) -> Grant:
    return Grant(Resource.TOPIC, name, operation)


def _group(name: str, operation: Operation) -> Grant:
    return Grant(Resource.GROUP, name, operation)

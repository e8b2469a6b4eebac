"""A secured broker (SASL/SCRAM, ACLs by KRaft's StandardAuthorizer): each principal may do its
own work and nothing else, and a client without a valid login does nothing at all."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from kafka_helpers import publish, read_topic, signed_job, wait_for

from anchorline.cli.credentials import Logins
from anchorline.cli.main import main
from anchorline.events import JobKind, Stage
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.kafka import KafkaBroker
from anchorline.infra.kafka_sasl import ADMIN_USER, BrokerSecurity, new_password
from anchorline.infra.ports import free_ports
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.db import jobs, make_engine
from anchorline.stream import codec
from anchorline.stream.access import (
    DESK,
    EXTERNAL_PRODUCER,
    PRINCIPALS,
    Grant,
    Operation,
    Resource,
)
from anchorline.stream.kafka import (
    client_config,
    consumer_config,
    ensure_topics,
    producer_config,
)
from anchorline.stream.kafka import transactional_id as new_transactional_id
from anchorline.stream.provision import (
    binding,
    create_acls,
    ensure_principals,
    held_by,
    revoke,
)
from anchorline.stream.topic_reader import read_to_end
from anchorline.stream.topics import key_of
from anchorline_gateway.pipeline import KafkaPipelineView

DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED
QUICK = {"message.timeout.ms": 8000}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    port, controller_port = free_ports(2)
    state_dir = tmp_path_factory.mktemp("secured-kafka")
    security = BrokerSecurity.generate()
    with KafkaBroker(
        state_dir=state_dir, port=port, controller_port=controller_port, security=security
    ) as broker:
        yield broker


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {principal: new_password() for principal in PRINCIPALS}


@pytest.fixture(scope="module")
def admin(
    secured: KafkaBroker, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The operator's settings: topics of this module's prefix, every principal provisioned."""
    assert secured.security is not None
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("secured-state"),
        kafka_bootstrap=secured.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username=ADMIN_USER,
        kafka_password=secured.security.admin_password,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}",
        partitions=1,
        retry_delays_s="0.2,0.4",
        batch_max_wait_s=0.3,
    )
    ensure_topics(settings)
    ensure_principals(settings, passwords)
    return settings


def login(admin: Settings, passwords: dict[str, str], principal: str) -> Settings:
    return replace(admin, kafka_username=principal, kafka_password=passwords[principal])


def deliveries(settings: Settings, topics: list[str], **extra: object) -> dict[str, int | None]:
    """Produce one message to each topic; each topic's delivery error code (None: written)."""
    outcome: dict[str, int | None] = {}
    producer = Producer(producer_config(settings) | QUICK | extra)
    for topic in topics:
        producer.produce(
            topic,
            value=b"probe",
            on_delivery=lambda error, message: outcome.__setitem__(
                message.topic(), None if error is None else error.code()
            ),
        )
    producer.flush(30)
    return outcome


def test_the_external_producer_may_write_jobs_requested_and_nothing_else(
    admin: Settings, passwords: dict[str, str]
) -> None:
    external = login(admin, passwords, EXTERNAL_PRODUCER)
    requests = list(admin.topics.lanes(Stage.VERIFY))  # a request of each priority
    others = [topic for topic in admin.topics.all() if topic not in requests]
    outcome = deliveries(external, [*requests, *others])
    assert {topic: outcome[topic] for topic in requests} == dict.fromkeys(requests)
    assert {topic: outcome[topic] for topic in others} == {topic: DENIED for topic in others}


def test_the_external_producer_cannot_read_what_it_writes(
    admin: Settings, passwords: dict[str, str]
) -> None:
    external = login(admin, passwords, EXTERNAL_PRODUCER)
    consumer = Consumer(consumer_config(external, group_id="anchorline-verifier"))
    consumer.subscribe([admin.topics.jobs_requested])
    try:
        errors = wait_for(lambda: [m.error() for m in consumer.consume(10, 0.5) if m.error()], 30)
    finally:
        consumer.close()
    assert errors[0].code() in (DENIED, KafkaError.GROUP_AUTHORIZATION_FAILED)


@pytest.mark.parametrize(
    ("principal", "foreign"),
    [
        ("gateway", "prove_requested"),
        ("verifier", "anchor_requested"),
        ("prover", "jobs_requested"),
        ("chain-writer", "prove_requested"),
        ("projector", "job_status"),
    ],
)
def test_a_service_cannot_write_a_topic_it_does_not_own(
    admin: Settings, passwords: dict[str, str], principal: str, foreign: str
) -> None:
    topic = getattr(admin.topics, foreign)
    assert deliveries(login(admin, passwords, principal), [topic]) == {topic: DENIED}


def test_provisioning_again_revokes_a_grant_the_policy_does_not_make(
    admin: Settings, passwords: dict[str, str]
) -> None:
    external = login(admin, passwords, EXTERNAL_PRODUCER)
    status = admin.topics.job_status
    stray = Grant(Resource.TOPIC, status, Operation.WRITE)
    create_acls(AdminClient(client_config(admin)), [binding(EXTERNAL_PRODUCER, stray)], timeout=30)
    assert wait_for(lambda: deliveries(external, [status]) == {status: None}, timeout=30)

    ensure_principals(admin, passwords)
    assert wait_for(lambda: deliveries(external, [status]) == {status: DENIED}, timeout=30)


def test_a_stage_cannot_take_another_stages_transactional_id(
    admin: Settings, passwords: dict[str, str]
) -> None:
    verifier = login(admin, passwords, "verifier")
    producer = Producer(producer_config(verifier, transactional_id=new_transactional_id("prover")))
    with pytest.raises(Exception) as refused:
        producer.init_transactions(20)
    code = refused.value.args[0].code()
    assert code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


@pytest.mark.parametrize("source", ["jobs_requested", "anchor_requested"])
def test_reading_a_topic_without_the_right_says_so_at_once(
    admin: Settings, passwords: dict[str, str], source: str
) -> None:
    """The verifier may write (so describe) its own dead letters, not read them, and may not
    even see another stage's: neither reads as an empty topic or waits for a stall."""
    letters = admin.topics.dead_letter(getattr(admin.topics, source))
    publish(admin, (letters, b"a letter"))
    started = time.monotonic()
    with pytest.raises(KafkaException) as refused:
        list(read_to_end(login(admin, passwords, "verifier"), letters, stall_s=30))
    assert refused.value.args[0].code() in (DENIED, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert time.monotonic() - started < 15, "it waited for a stall instead"


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("no login", {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}),
        ("wrong password", {KafkaError._AUTHENTICATION}),
        ("unknown user", {KafkaError._AUTHENTICATION}),
    ],
)
def test_a_client_without_a_valid_login_writes_nothing(
    admin: Settings, passwords: dict[str, str], how: str, expected: set[int]
) -> None:
    settings = {
        "no login": replace(admin, kafka_security_protocol="PLAINTEXT"),
        "wrong password": replace(admin, kafka_username=EXTERNAL_PRODUCER, kafka_password="x"),
        "unknown user": replace(admin, kafka_username="mallory", kafka_password="x"),
    }[how]
    seen: set[int] = set()
    outcome = deliveries(
        settings,
        [admin.topics.jobs_requested],
        error_cb=lambda error: seen.add(error.code()),
        **{"message.timeout.ms": 4000},
    )
    assert outcome == {admin.topics.jobs_requested: KafkaError._MSG_TIMED_OUT}
    assert seen & expected, f"librdkafka reported {seen}"


def test_every_service_runs_its_stage_with_only_its_own_principal(
    admin: Settings,
    passwords: dict[str, str],
    anvil: AnvilChain,
    registry_address: str,
    running,
    tmp_path: Path,
) -> None:
    """An anchor job published by the external producer goes through the real verifier,
    prover, chain-writer and projector, each logged in as itself; on the way its content is
    missing once (a retry through the verifier's delay topic), and junk is dead-lettered."""
    from anchorline_chain_writer.main import build as chain_writer
    from anchorline_projector.main import build as projector
    from anchorline_prover.main import build as prover
    from anchorline_verifier.main import build as verifier

    chain = replace(
        admin,
        rpc_url=anvil.url,
        registry_address=registry_address,
        chain_private_key=DEV_PRIVATE_KEYS[0],
        prover_private_key=DEV_PRIVATE_KEYS[1],
        chain_id=anvil.chain_id,
        retry_delays_s="2,2",  # time enough to put the content back before the next attempt
    )
    for name, build in [
        ("projector", projector),
        ("verifier", verifier),
        ("prover", prover),
        ("chain-writer", chain_writer),
    ]:
        running(build(login(chain, passwords, name)).run)

    job = signed_job(admin, JobKind.ANCHOR, f"secured {uuid.uuid4()}".encode())
    blob = FileBlobStore(admin.blobs).resolve(job.content_uri)
    held = blob.read_bytes()
    blob.unlink()  # not there yet: the verifier must retry it through its delay topic
    external = login(admin, passwords, EXTERNAL_PRODUCER)
    _publish(external, admin.topics.jobs_requested, key_of(job).encode(), codec.encode(job))
    _publish(external, admin.topics.jobs_requested, b"junk", b"not avro")

    engine = make_engine(admin.db_url)
    wait_for(lambda: _row(engine, job.job_id, "retrying"), timeout=60)
    blob.write_bytes(held)
    row = wait_for(lambda: _row(engine, job.job_id, "succeeded"), timeout=90)
    assert row.stage == "anchor"
    assert row.result["anchor"]["txHash"]
    letters = read_topic(
        admin,
        admin.topics.dead_letter(admin.topics.jobs_requested),
        until=lambda m: b"not avro" in [message.value() for message in m],  # type: ignore[attr-defined]
    )
    values = [message.value() for message in letters]  # type: ignore[attr-defined]
    assert b"not avro" in values, "the verifier could not dead-letter the junk"

    # `/v1/pipeline`, read as the gateway (describe only) counting with the dead-letter desk's
    # login (the messages waiting), shows what the operator sees.
    as_gateway = KafkaPipelineView(
        login(admin, passwords, "gateway"), reader=login(admin, passwords, DESK)
    )
    as_operator = KafkaPipelineView(admin)
    view = wait_for(
        lambda: (seen := _counts(as_gateway._read())) == _counts(as_operator._read()) and seen
    )
    assert view["verify"]["dead_letters"] >= 1
    assert view["verify"]["processes"] >= 1
    refused = KafkaPipelineView(login(admin, passwords, "gateway"))  # may not read: says so
    with pytest.raises(KafkaException, match="AUTHORIZATION"):
        refused._read()


def _counts(view: dict[str, Any]) -> dict[str, Any]:
    """What two views of the same moment agree on (not since when each saw a process)."""
    stages = {**view["stages"], "projector": view["projector"]}
    return {
        name: {
            **{k: v for k, v in stage.items() if k not in ("instances", "_group")},
            "processes": len(stage["instances"]["members"]),
        }
        for name, stage in stages.items()
    }


def _publish(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    producer = Producer(producer_config(settings))
    producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _row(engine: sa.Engine, job_id: str, state: str) -> sa.Row | None:  # type: ignore[type-arg]
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
    except sa.exc.OperationalError:  # the projector has not created the table yet
        return None
    return row if row is not None and row.state == state else None


def test_the_principals_command_provisions_a_secured_cluster_and_writes_the_logins(
    admin: Settings,
    passwords: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`anchorline principals`, run with an operator's login against a cluster of one's own."""
    directory = tmp_path / "kafka-credentials"
    directory.mkdir(mode=0o700)
    Logins(directory, passwords).write(admin)  # so that it keeps this module's passwords
    for name, value in replace(admin, state_dir=tmp_path).as_env().items():
        monkeypatch.setenv(name, value)
    operator = AdminClient(client_config(admin))
    revoke(operator, held_by(operator, EXTERNAL_PRODUCER, timeout=30), timeout=30)
    jobs = admin.topics.jobs_requested
    assert deliveries(login(admin, passwords, EXTERNAL_PRODUCER), [jobs]) == {jobs: DENIED}

    assert main(["principals"]) == 0

    assert f"(0600) in {directory}" in capsys.readouterr().out
    written = (directory / f"{EXTERNAL_PRODUCER}.properties").read_text()
    lines = [line for line in written.splitlines() if not line.startswith("#")]
    config = dict(line.split("=", 1) for line in lines)
    assert config["sasl.password"] == passwords[EXTERNAL_PRODUCER]
    outcome: dict[str, int | None] = {}
    producer = Producer(config | QUICK)
    for topic in (admin.topics.jobs_requested, admin.topics.job_status):
        producer.produce(
            topic,
            value=b"probe",
            on_delivery=lambda e, m: outcome.__setitem__(m.topic(), e and e.code()),
        )
    producer.flush(30)
    assert outcome == {admin.topics.jobs_requested: None, admin.topics.job_status: DENIED}

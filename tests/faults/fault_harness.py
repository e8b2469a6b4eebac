"""A whole anchorline system the fault tests can break: its own broker, chain, database, services.

Every part runs as a real OS process on free ports in a temp dir: one Kafka broker (restarted
on the same state dir and ports), one anvil whose state survives a restart (`--state`), a
PostgreSQL database, and each service as `python -m anchorline.cli run <service>`. A watcher
restarts a service that exits on its own, as `anchorline up` does, and records that it did.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from confluent_kafka import (
    ConsumerGroupState,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient
from eth_account import Account
from web3 import Web3

from anchorline.events import JobKind, JobRequested, utcnow
from anchorline.infra.anvil import DEV_ADDRESSES, DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.kafka import KafkaCluster
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign_eip191
from anchorline.proof.registry import deploy_registry, load_artifact
from anchorline.settings import Settings
from anchorline.store.blobstore import FileBlobStore
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.stream import codec
from anchorline.stream.kafka import ensure_topics, producer_config
from anchorline.stream.topic_reader import read_to_end

# librdkafka logs every refused connection while a broker is down, which the fault tests do on
# purpose: keep the harness's own clients quiet (the services' logs keep theirs).
KAFKA_LOG = logging.getLogger("faults.kafka")
KAFKA_LOG.propagate = False
KAFKA_LOG.addHandler(logging.NullHandler())
log = logging.getLogger("faults")
LOG_NOISE = ("httpx: HTTP Request", "Connect to ipv4", "Disconnected", "alembic.runtime")
# The innermost anchorline frame of a thread that waits for work rather than being stuck.
IDLE_FRAMES = ("poll", "poll_once", "_poll_once", "run", "run_service", "work", "main")
STAGE_SERVICES = ("projector", "verifier", "prover", "chain-writer")
TERMINAL = ("succeeded", "failed", "dead")
LAST_STAGE = {"verify": "verify", "proof": "prove", "anchor": "anchor"}
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 15.0


LAST_STAGE_SQL = (
    "((j.kind = 'verify' and e.stage = 'verify') or (j.kind = 'proof' and e.stage = 'prove') "
    "or (j.kind = 'anchor' and e.stage = 'anchor'))"
)
STAGES_OF = {
    "verify": ("verify",),
    "proof": ("verify", "prove"),
    "anchor": ("verify", "prove", "anchor"),
}


class DroppedOutcome(AssertionError):
    """A job ended (succeeded or failed) and the jobs table will never say so."""


class PersistentAnvil(AnvilChain):
    """anvil that dumps its chain to a file on SIGTERM and loads it again on start."""

    def __init__(self, *, state_dir: Path, port: int) -> None:
        state_file = state_dir / "chain-state.json"
        super().__init__(
            state_dir=state_dir, port=port, state_file=state_file, state_interval_s=None
        )


# --- load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One submitted job and the state it must end in."""

    job_id: str
    kind: JobKind
    expect: str  # succeeded | failed


@dataclass
class Workload:
    """A few contents and creators, signed once; every job gets its own id."""

    requests: list[tuple[str, str, str, str]]  # (content_uri, manifest, signature, expect)
    rng: random.Random
    accounts: list[Any]

    @classmethod
    def create(
        cls, blobs: Path, *, contents: int = 6, creators: int = 3, seed: int = 7
    ) -> Workload:
        rng = random.Random(seed)
        store = FileBlobStore(blobs)
        accounts = [Account.create() for _ in range(creators)]
        impostor = Account.create()
        requests = []
        for index in range(contents):
            data = (f"fault content {index}\n".encode()) * rng.randint(50, 20_000)
            uri, _ = store.put_file(io.BytesIO(data))
            for account in accounts:
                document = manifest_for(data, account.address, index)
                text = json.dumps(document)
                requests.append((uri, text, sign_eip191(document, account.key.hex()), "succeeded"))
                # Signed by someone else than the creator it names: a permanent failure.
                bad = sign_eip191(document, impostor.key.hex())
                requests.append((uri, text, bad, "failed"))
        return cls(requests, rng, accounts)

    def job(self) -> tuple[Job, JobRequested]:
        good = [r for r in self.requests if r[3] == "succeeded"]
        bad = [r for r in self.requests if r[3] == "failed"]
        uri, text, signature, expect = self.rng.choice(bad if self.rng.random() < 0.05 else good)
        kind = self.rng.choice(list(JobKind))
        job_id = str(uuid.uuid4())
        event = JobRequested(
            job_id=job_id,
            kind=kind,
            content_uri=uri,
            manifest=text,
            signature=signature,
            submitted_at=utcnow(),
        )
        return Job(job_id, kind, expect), event


def manifest_for(data: bytes, creator: str, index: int) -> dict[str, Any]:
    return {
        "content_hash": "0x" + hashlib.sha256(data).hexdigest(),
        "creator": creator,
        "created_at": "2026-11-23T10:00:00Z",
        "metadata": {"title": f"fault load {index}"},
    }


class Submitter:
    """Produces jobs straight to Kafka at a steady rate; a job counts once Kafka acked it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: Any = Producer(
            producer_config(settings) | {"message.timeout.ms": 600_000, "logger": KAFKA_LOG}
        )
        self.accepted: dict[str, Job] = {}
        self.rejected: dict[str, str] = {}
        self.sent = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # close() ends the submitting thread before the producer

    def publish(self, job: Job, event: JobRequested) -> None:
        def delivered(error: Any, _message: Any) -> None:
            with self._lock:
                if error is None:
                    self.accepted[job.job_id] = job
                else:
                    self.rejected[job.job_id] = str(error)

        value = codec.encode(event)
        while True:
            try:
                self.producer.produce(
                    self.settings.topics.jobs_requested,
                    key=job.job_id.encode(),
                    value=value,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                self.producer.poll(0.1)
        self.sent += 1
        self.producer.poll(0)

    def produce_raw(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Any bytes at all, as a careless or hostile publisher would send them."""
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        self.producer.produce(topic, key=key, value=value, on_delivery=delivered)
        assert self.producer.flush(60) == 0 and not failures, failures

    def start(self, workload: Workload, count: int, *, rate: float) -> None:
        """Submit `count` jobs at `rate` per second in a background thread."""

        def run() -> None:
            started = time.monotonic()
            for index in range(count):
                # poll() returns early when it serves a delivery report: loop until due.
                while (delay := started + index / rate - time.monotonic()) > 0:
                    if self._stop.is_set():
                        return
                    self.producer.poll(min(delay, 0.1))
                if self._stop.is_set():
                    return
                self.publish(*workload.job())
            self.producer.flush(600)

        self._thread = threading.Thread(target=run, name="submitter", daemon=True)
        self._thread.start()

    def wait_sent(self, count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def join(self, timeout: float = 600) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), "the submitter did not finish"
        assert self.producer.flush(60) == 0, "the submitter could not deliver every job"
        assert not self.rejected, f"Kafka refused {len(self.rejected)} jobs: {self.rejected}"

    def close(self) -> None:
        """Stop submitting (a test that failed half-way left the thread running, which then
        produced on a dropped producer: a second error hiding the first) and drop the producer:
        it would keep calling a broker that is gone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None


# --- the system ----------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    name: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    aborts: int = 0  # stack dumps asked for by the test (SIGABRT), restarted by the watcher
    unexpected_exits: list[int] = field(default_factory=list)


class Cluster:
    """Broker, chain, database and the four stage services, each a process of its own."""

    def __init__(
        self,
        root: Path,
        *,
        ports: list[int],
        database_url: str,
        settings_overrides: dict[str, Any],
    ) -> None:
        """`ports`: a (client, controller) pair for each Kafka node, then anvil's and the
        gateway's (which runs only if started, as a service)."""
        *kafka_ports, rpc_port, http_port = ports
        self.root = root
        pairs = list(zip(kafka_ports[::2], kafka_ports[1::2], strict=True))
        self.kafka = KafkaCluster(state_dir=root / "kafka", ports=pairs)
        self.broker = self.kafka.nodes[0]  # the broker, when there is one
        self.chain = PersistentAnvil(state_dir=root / "anvil", port=rpc_port)
        self.settings = Settings(
            state_dir=root / "state",
            kafka_bootstrap=self.kafka.bootstrap,
            kafka_controller_port=pairs[0][1],
            http_port=http_port,
            topic_prefix="anchorline",
            partitions=3,
            database_url=database_url,
            blob_dir=root / "blobs",
            rpc_url=self.chain.url,
            chain_private_key=DEV_PRIVATE_KEYS[0],
            prover_private_key=DEV_PRIVATE_KEYS[1],
            retry_delays_s="1,2,4",
            max_attempts=5,
            batch_max_wait_s=0.5,
            batch_max_jobs=200,
            # A breaker that stays open longer than the whole retry ladder (1+2+4+4 s) would
            # dead-letter every batch that meets it: keep it shorter than the ladder.
            breaker_cooldown_s=2.0,
            **settings_overrides,
        )
        self.services: dict[str, ServiceProcess] = {}
        self.postgres: PostgresServer | None = None  # set when the cluster owns its server
        self.submitters: list[Submitter] = []
        self.engine = make_engine(database_url)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # lifecycle

    def start(self, services: tuple[str, ...] = STAGE_SERVICES) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.kafka.start()
        self.chain.start()
        address = deploy_registry(self.chain.url, DEV_PRIVATE_KEYS[0], writers=DEV_ADDRESSES)
        self.settings = replace(self.settings, registry_address=address)
        ensure_topics(self.settings)
        upgrade(self.engine)
        for service in services:
            self.start_service(service)
        for service in services:
            if service == "gateway":
                self.wait_gateway(timeout=180)
            else:
                self.wait_in_group(service, timeout=180)
        self._watcher = threading.Thread(target=self._watch, name="watcher", daemon=True)
        self._watcher.start()

    def submitter(self) -> Submitter:
        submitter = Submitter(self.settings)
        self.submitters.append(submitter)
        return submitter

    def close(self) -> None:
        """Stop everything that was started, in order, even after a failure half-way."""
        for submitter in self.submitters:
            submitter.close()
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(10)
        with self._lock:
            for service in self.services.values():
                if service.process is not None and service.process.poll() is None:
                    service.process.terminate()
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for service in self.services.values():
                process = service.process
                if process is None:
                    continue
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _kill_group(process)
        self.chain.stop()
        self.kafka.stop()
        self.engine.dispose()

    @property
    def env(self) -> dict[str, str]:
        # faulthandler: a SIGABRT makes a stuck service print every thread's stack to its log.
        return os.environ | self.settings.as_env() | {"PYTHONFAULTHANDLER": "1"}

    def dump_stacks(self) -> dict[str, str]:
        """SIGABRT every running service; faulthandler writes its threads' stacks to its log.

        The watcher starts each one again. Returns each service's stack dump.
        """
        sizes = {}
        with self._lock:
            for name, service in self.services.items():
                if service.process is not None and service.process.poll() is None:
                    sizes[name] = service.log_path.stat().st_size
                    service.aborts += 1
                    service.process.send_signal(signal.SIGABRT)
        time.sleep(3)
        dumps = {}
        for name, size in sizes.items():
            with self.services[name].log_path.open("rb") as log:
                log.seek(size)
                dumps[name] = log.read().decode(errors="replace")
        return dumps

    def unstick(self) -> list[str]:
        """What a liveness probe would do: restart every service, saying where each was stuck.

        Returns, per service, the anchorline frames its threads were in (innermost first).
        """
        stuck = []
        for name, dump in self.dump_stacks().items():
            for thread in dump.split("\n\n"):
                frames = re.findall(
                    r'File "[^"]*/(anchorline|services)/([^"]+)", line (\d+) in (\w+)', thread
                )
                if frames and frames[0][3] not in IDLE_FRAMES:
                    where = " < ".join(f"{f[1]}:{f[2]} {f[3]}" for f in frames[:3])
                    stuck.append(f"{name}: {where}")
        return stuck

    def failure(self, text: str) -> AssertionError:
        """An assertion error with the services' stacks and log tails appended."""
        exits = self.unexpected_exits()
        self.dump_stacks()
        return AssertionError(
            f"{text}\nunexpected exits before the stack dump: {exits}\n{self.log_tails()}"
        )

    # services

    def start_service(self, name: str) -> None:
        with self._lock:
            service = self.services.setdefault(
                name, ServiceProcess(name, self.root / "logs" / f"{name}.log")
            )
            service.starts += 1
            log = service.log_path.open("ab")
            log.write(f"\n===== start #{service.starts} at {time.strftime('%X')} =====\n".encode())
            log.flush()
            command = [sys.executable, "-m", "anchorline.cli", "run", name]
            service.process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def wait_gateway(self, *, timeout: float) -> None:
        """Until the gateway says it is ready (its producer reached Kafka)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise self.failure(f"the gateway not ready after {timeout:.0f} s")

    def members(self, service: str) -> set[str]:
        """Member ids of a service's consumer group, if it is stable (else an empty set)."""
        group = f"anchorline-{service}"
        admin = AdminClient(
            {"bootstrap.servers": self.settings.kafka_bootstrap, "logger": KAFKA_LOG}
        )
        try:
            found = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        except KafkaException:
            return set()
        if found.state != ConsumerGroupState.STABLE:
            return set()
        return {member.member_id for member in found.members if member.assignment}

    def wait_in_group(
        self, service: str, *, replacing: set[str] = frozenset(), timeout: float
    ) -> float:
        """Seconds until the service's group is stable with one member, not one of `replacing`."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            members = self.members(service)
            if len(members) == 1 and not members & replacing:
                return time.monotonic() - began
            time.sleep(0.5)
        raise self.failure(f"{service} not back in its consumer group after {timeout:.0f} s")

    def kill_service(self, name: str, *, down_s: float = 1.0) -> None:
        """kill -9 a service, leave it down for `down_s`, and start it again."""
        with self._lock:
            service = self.services[name]
            assert service.process is not None
            service.kills += 1
            _kill_group(service.process)
            service.process = None
        time.sleep(down_s)
        self.start_service(name)

    def _watch(self) -> None:
        while not self._stop.wait(RESTART_DELAY_S):
            for name, service in list(self.services.items()):
                with self._lock:
                    process = service.process
                    if process is None or process.poll() is None or self._stop.is_set():
                        continue
                    if process.returncode == -signal.SIGABRT and service.aborts:
                        service.aborts -= 1
                    else:
                        service.unexpected_exits.append(process.returncode)
                    service.process = None
                self.start_service(name)

    def kill_broker(self) -> None:
        """kill -9 the broker's JVM; `broker.start()` brings it back on the same logs."""
        self.broker.kill()

    def leading_broker(self) -> tuple[int, str]:
        """The node that leads the most partitions of `jobs.requested` and of the transaction
        coordinators' log (the stages' transactional ids are random, so which coordinator each
        has is not known here: leading the most of that log's partitions makes it the likely
        coordinator of some), and which partitions it leads."""
        led: dict[int, list[str]] = {}
        for topic in (self.settings.topics.jobs_requested, "__transaction_state"):
            for partition, node in self.kafka.leaders(topic).items():
                led.setdefault(node, []).append(f"{topic}/{partition}")
        node = max(led, key=lambda n: len(led[n]))
        return node, ", ".join(led[node])

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run `anchorline ARGS` against this cluster; its output, or a failure with it."""
        command = [sys.executable, "-m", "anchorline.cli", *args]
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, (
            f"anchorline {' '.join(args)} exited {result.returncode}\n{output}"
        )
        return result.stdout

    def unexpected_exits(self) -> dict[str, list[int]]:
        return {n: s.unexpected_exits for n, s in self.services.items() if s.unexpected_exits}

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for service in self.services.values():
            parts.append(f"--- {service.name} ({service.log_path}) ---")
            parts.extend(_log_lines(service)[-lines:])
        return "\n".join(parts)

    def tracebacks(self, names: Iterable[str]) -> str:
        """The last Python traceback in each named service's log: why it exited."""
        parts = []
        for name in names:
            lines = _with_json_tracebacks(_log_lines(self.services[name]))
            starts = [n for n, line in enumerate(lines) if line.startswith("Traceback")]
            if not starts:
                parts.append(f"--- {name}: no traceback in its log")
                continue
            block = []
            for line in lines[starts[-1] : starts[-1] + 60]:
                if line.startswith("====="):
                    break
                block.append(line)
            parts.append(f"--- {name}: its last traceback ---\n" + "\n".join(block))
        return "\n".join(parts)

    # the jobs table

    def states(self, job_ids: set[str] | None = None) -> dict[str, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text("select job_id, state from jobs")).all()
        return {job_id: state for job_id, state in rows if job_ids is None or job_id in job_ids}

    def terminal_count(self, job_ids: set[str]) -> int:
        try:
            return sum(state in TERMINAL for state in self.states(job_ids).values())
        except sa.exc.OperationalError:
            return -1

    def wait_terminal(self, jobs: dict[str, Job], *, timeout: float) -> dict[str, str]:
        """Every job's state once all are terminal, or a failure naming the stuck ones.

        A job whose outcome the projector dropped can never end: DroppedOutcome at once.
        """
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                states = self.states(set(jobs))
            except sa.exc.OperationalError:
                time.sleep(1)
                continue
            if len(states) == len(jobs) and all(s in TERMINAL for s in states.values()):
                return states
            found = self.dropped_outcomes(set(jobs))
            if found:
                raise DroppedOutcome(
                    f"{len(found)} jobs ended (succeeded or failed) but the projector dropped "
                    f"that event as older than the row, so they never end: "
                    f"{list(found.values())[:3]}\n" + self.histories(list(found)[:2])
                )
            time.sleep(1)
        stuck: dict[str, list[str]] = {}
        for job_id in jobs:
            state = states.get(job_id, "no row")
            if state not in TERMINAL:
                stuck.setdefault(state, []).append(job_id)
        listing = "\n".join(
            f"  {state}: {len(ids)} e.g. {', '.join(ids[:5])}" for state, ids in stuck.items()
        )
        raise self.failure(
            f"{sum(map(len, stuck.values()))} of {len(jobs)} jobs not terminal after "
            f"{timeout:.0f} s:\n{listing}\n"
            + self.histories([i for ids in stuck.values() for i in ids[:3]][:6])
        )

    def dropped_outcomes(self, job_ids: set[str]) -> dict[str, str]:
        """Jobs whose final event (`failed`, or the last stage's `succeeded`) was not applied
        and that are not terminal: they will never end."""
        query = (
            "select e.job_id, e.stage, e.state as final, e.attempt, j.state, j.attempts "
            "from job_events e "
            "join jobs j using (job_id) where not e.applied and e.generation = j.generation "
            "and j.state not in ('succeeded', 'failed', 'dead') and (e.state = 'failed' "
            f"or (e.state = 'succeeded' and {LAST_STAGE_SQL}))"
        )
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(sa.text(query)).all()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot look for dropped outcomes: %s", exc)
            return {}
        return {
            r.job_id: f"{r.job_id} {r.stage} {r.final} in attempt {r.attempt}, row {r.state} "
            f"in attempt {r.attempts}"
            for r in rows
            if r.job_id in job_ids
        }

    def histories(self, job_ids: list[str]) -> str:
        """The event history of a few jobs, for a failure message."""
        query = (
            "select job_id, stage, state, attempt, generation, applied, error, occurred_at "
            "from job_events where job_id = :job_id order by id"
        )
        lines = []
        try:
            with self.engine.connect() as connection:
                for job_id in job_ids:
                    lines.append(f"history of {job_id}:")
                    for row in connection.execute(sa.text(query), {"job_id": job_id}):
                        error = (row.error or "")[:100]
                        lines.append(
                            f"  {row.occurred_at:%X} {row.stage} {row.state} attempt "
                            f"{row.attempt} gen {row.generation} applied {row.applied} {error}"
                        )
        except sa.exc.SQLAlchemyError as exc:
            lines.append(f"(no history: {exc})")
        return "\n".join(lines)

    def wait_progress(
        self, job_ids: Callable[[], set[str]], more: int, *, total: int, timeout: float
    ) -> float:
        """Seconds until `more` further jobs (of `total`) are terminal: the pipeline flows."""
        found = self.progress(job_ids, more, total=total, timeout=timeout)
        if found is None:
            raise self.failure(f"fewer than {more} more jobs terminal in {timeout:.0f} s")
        return found

    def progress(
        self, job_ids: Callable[[], set[str]], more: int, *, total: int, timeout: float
    ) -> float | None:
        """As wait_progress, but None when the jobs did not move in time."""
        began = time.monotonic()
        target = min(total, max(0, self.terminal_count(job_ids())) + more)
        while time.monotonic() - began < timeout:
            if self.terminal_count(job_ids()) >= target:
                return time.monotonic() - began
            time.sleep(0.5)
        return None

    def count_events(self, stage: str, state: str) -> int:
        query = "select count(*) from job_events where stage = :stage and state = :state"
        with self.engine.connect() as connection:
            return int(
                connection.execute(sa.text(query), {"stage": stage, "state": state}).scalar_one()
            )

    def events_of(self, job_ids: set[str]) -> list[tuple[str, str, str, int, int]]:
        """Every history event of these jobs, in a stable order."""
        query = "select event_id, job_id, stage, state, attempt, generation from job_events"
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text(query)).all()
        return sorted(tuple(row) for row in rows if row.job_id in job_ids)

    def generations(self, job_ids: set[str]) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text("select job_id, generation from jobs")).all()
        return {job_id: gen for job_id, gen in rows if job_id in job_ids}

    def wait_generation(self, job_ids: set[str], generation: int, *, timeout: float) -> None:
        """Until every job is terminal in `generation` (a replay's own outcome)."""
        deadline = time.monotonic() + timeout
        query = "select job_id, state, generation from jobs"
        rows: list[Any] = []
        while time.monotonic() < deadline:
            with self.engine.connect() as connection:
                rows = [r for r in connection.execute(sa.text(query)).all() if r.job_id in job_ids]
            done = [r for r in rows if r.generation >= generation and r.state in TERMINAL]
            if len(done) == len(job_ids):
                return
            time.sleep(1)
        late = Counter((r.state, r.generation) for r in rows)
        raise self.failure(
            f"replayed jobs not terminal in generation {generation} after {timeout:.0f} s: "
            f"(state, generation) counts {dict(late)}, {len(job_ids) - len(rows)} without a row"
        )

    def succeeded_once(self, jobs: dict[str, Job], *, generation: int) -> int:
        """How many jobs succeeded at their last stage exactly once in `generation`."""
        query = (
            "select job_id, stage, count(*) from job_events where state = 'succeeded' "
            "and generation = :generation group by job_id, stage"
        )
        with self.engine.connect() as connection:
            rows = connection.execute(sa.text(query), {"generation": generation}).all()
        counts = {(job_id, stage): n for job_id, stage, n in rows}
        states = self.states(set(jobs))
        return sum(
            states.get(job_id) == "succeeded"
            and counts.get((job_id, LAST_STAGE[str(job.kind)])) == 1
            for job_id, job in jobs.items()
        )

    def wait_anchors(self, count: int, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.anchored_logs()) < count:
            assert time.monotonic() < deadline, f"fewer than {count} roots anchored in time"
            time.sleep(0.5)

    def wait_dead_letters(
        self, topic: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """The committed messages of a dead-letter topic, once there are `count` (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            letters = [
                {"key": m.key(), "value": m.value(), "headers": m.headers() or []}
                for m in read_to_end(self.settings, topic, stall_s=60)
            ]
            if len(letters) >= count or time.monotonic() > deadline:
                return letters
            time.sleep(1)

    # the chain

    def anchor_transactions(self) -> tuple[int, list[str]]:
        """How many transactions went to the registry after its deployment, and the reverted."""
        w3 = Web3(Web3.HTTPProvider(self.settings.rpc_url, request_kwargs={"timeout": 30}))
        registry = Web3.to_checksum_address(self.settings.registry_address)
        sent, reverted = 0, []
        for number in range(1, w3.eth.block_number + 1):
            for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
                if tx["to"] == registry:
                    sent += 1
                    if w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1:
                        reverted.append("0x" + bytes(tx["hash"]).hex())
        return sent, reverted

    def anchored_logs(self) -> list[dict[str, Any]]:
        w3 = Web3(Web3.HTTPProvider(self.settings.rpc_url, request_kwargs={"timeout": 30}))
        registry = w3.eth.contract(
            address=Web3.to_checksum_address(self.settings.registry_address),
            abi=load_artifact().abi,
        )
        return [
            {
                "root": "0x" + bytes(log["args"]["root"]).hex(),
                "tx": "0x" + bytes(log["transactionHash"]).hex(),
                "block": int(log["blockNumber"]),
            }
            for log in registry.events.Anchored().get_logs(from_block=0, to_block="latest")
        ]


def _log_lines(service: ServiceProcess) -> list[str]:
    """A service's log without the noise: librdkafka's own lines and LOG_NOISE."""
    return [
        line
        for line in service.log_path.read_text(errors="replace").splitlines()
        if not line.startswith("%") and not any(noise in line for noise in LOG_NOISE)
    ]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- the checks ----------------------------------------------------------------------------


@dataclass
class Summary:
    scenario: str
    submitted: int
    states: Counter[str]
    lost: list[str]
    wrong: list[str]
    duplicates: list[str]
    roots: int
    root_repeats: list[str]
    unanchored: list[str]
    orphan_roots: list[str]
    anchor_txs: int = 0
    replayed: int = 0
    replayed_once: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        terminal = sum(self.states[s] for s in TERMINAL)
        counts = "/".join(f"{self.states[s]} {s}" for s in TERMINAL)
        text = (
            f"[{self.scenario}] submitted {self.submitted}, terminal {terminal} ({counts}), "
            f"lost {len(self.lost)}, wrong outcome {len(self.wrong)}, "
            f"duplicates {len(self.duplicates)}, roots {self.roots} anchored once "
            f"in {self.anchor_txs} txs (repeats {len(self.root_repeats)}, "
            f"missing {len(self.unanchored)}, orphans {len(self.orphan_roots)}), "
            f"replayed {self.replayed} succeeded once {self.replayed_once}, "
            f"{self.seconds:.0f} s"
        )
        return text + "".join(f"; {note}" for note in self.notes)

    def assert_clean(self) -> None:
        problems = {
            "lost (no terminal row)": self.lost,
            "wrong final state": self.wrong,
            "duplicated success or anchor tx": self.duplicates,
            "root anchored twice": self.root_repeats,
            "anchor job whose root is not on chain": self.unanchored,
            "root on chain that no job claims": self.orphan_roots,
        }
        found = {name: ids[:10] for name, ids in problems.items() if ids}
        assert not found, f"{self.line()}\n{found}"
        assert self.replayed_once == self.replayed, self.line()


def check(
    cluster: Cluster,
    scenario: str,
    jobs: dict[str, Job],
    *,
    expect: Callable[[Job], str] = lambda job: job.expect,
) -> Summary:
    """Every submitted job terminal in its expected state, once; every root on chain once."""
    with cluster.engine.connect() as connection:
        rows = connection.execute(sa.text("select job_id, kind, state, result from jobs")).all()
        # Every committed `succeeded` a stage emitted for a job, per replay generation.
        repeated = connection.execute(
            sa.text(
                "select job_id, stage, generation, count(*) from job_events "
                "where state = 'succeeded' group by job_id, stage, generation "
                "having count(*) > 1"
            )
        ).all()
        applied_finals = connection.execute(
            sa.text(
                "select e.job_id, count(*) from job_events e join jobs j using (job_id) "
                f"where e.state = 'succeeded' and e.applied and {LAST_STAGE_SQL} "
                "group by e.job_id having count(*) > 1"
            )
        ).all()
    table = {row.job_id: row for row in rows}
    states = Counter(table[job_id].state for job_id in jobs if job_id in table)
    lost = [j for j in jobs if j not in table or table[j].state not in TERMINAL]
    wrong = [
        f"{j} {jobs[j].kind} expected {expect(jobs[j])} got {table[j].state}"
        for j in jobs
        if j in table and table[j].state in TERMINAL and table[j].state != expect(jobs[j])
    ]
    wrong += [
        f"{j} {jobs[j].kind} succeeded without a result for {stage}"
        for j in jobs
        if j in table and table[j].state == "succeeded"
        for stage in STAGES_OF[str(jobs[j].kind)]
        if stage not in _json(table[j].result)
    ]
    duplicates = [f"{r[0]} {r[1]} succeeded x{r[3]} in gen {r[2]}" for r in repeated]
    duplicates += [f"{r[0]} final success applied x{r[1]}" for r in applied_finals]

    logs = cluster.anchored_logs()
    by_root = Counter(log["root"] for log in logs)
    tx_of = {log["root"]: log["tx"] for log in logs}
    root_repeats = [root for root, n in by_root.items() if n > 1]
    unanchored: list[str] = []
    claimed: set[str] = set()
    for row in rows:
        if row.kind != "anchor" or row.state != "succeeded":
            continue
        result = _json(row.result)
        receipt, proof = result.get("anchor", {}), result.get("prove", {})
        root = receipt.get("root")
        claimed.add(str(root))
        if root not in tx_of or root != proof.get("root") or receipt.get("txHash") != tx_of[root]:
            unanchored.append(f"{row.job_id} root {root} tx {receipt.get('txHash')}")
    orphan_roots = [root for root in by_root if root not in claimed]
    txs, reverted = cluster.anchor_transactions()
    duplicates += [f"anchor tx {tx} reverted (root sent again?)" for tx in reverted]
    return Summary(
        scenario=scenario,
        submitted=len(jobs),
        states=states,
        lost=lost,
        wrong=wrong,
        duplicates=duplicates,
        roots=len(by_root),
        root_repeats=root_repeats,
        unanchored=unanchored,
        orphan_roots=orphan_roots,
        anchor_txs=txs,
    )


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value or {})


def _with_json_tracebacks(lines: list[str]) -> list[str]:
    """The log's lines, with the traceback a JSON line carries (`exc`) spelled out in lines."""
    spelled: list[str] = []
    for line in lines:
        spelled.append(line)
        if line.startswith("{") and '"exc"' in line:
            with contextlib.suppress(ValueError):
                exc = json.loads(line).get("exc")
                if isinstance(exc, str):
                    spelled.extend(exc.splitlines())
    return spelled

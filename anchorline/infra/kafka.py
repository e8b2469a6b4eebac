"""Local KRaft Kafka: one node (broker and controller in one JVM), or a cluster of such nodes
whose controllers form one quorum, for local runs and tests."""

from __future__ import annotations

import base64
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from anchorline.errors import ConfigurationError
from anchorline.infra.kafka_sasl import BrokerSecurity
from anchorline.infra.process import LocalServer, Startable
from anchorline.paths import INFRA_DIR
from anchorline.stream.kafka import default_replication

KAFKA_LOG = logging.getLogger("librdkafka")

KAFKA_DIR: Path = INFRA_DIR / "kafka"
LIB_DIR: Path = KAFKA_DIR / "lib"
JVM_HEAP: tuple[str, ...] = ("-Xms256m", "-Xmx768m")
# Three JVMs share a 2-CPU machine with the services, PostgreSQL and anvil.
CLUSTER_JVM_HEAP: tuple[str, ...] = ("-Xms128m", "-Xmx512m")

LOG4J2_CONFIG = """\
status = warn
# log4j's hook would only warn when Kafka's shutdown is the first to touch a logger.
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = STDOUT
"""


def ensure_kafka_jars() -> Path:
    """Return infra/kafka/lib, fetching the jars with Maven first if needed; needs java."""
    _java()
    if not any(LIB_DIR.glob("kafka_2.13-*.jar")):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(f"no Kafka jars in {LIB_DIR} and no mvn on PATH to fetch them")
        pom = str(KAFKA_DIR / "pom.xml")
        command = [mvn, "-q", "-B", "-f", pom, "dependency:copy-dependencies"]
        _run(command, what="mvn dependency:copy-dependencies")
    return LIB_DIR


class KafkaBroker(LocalServer):
    """One Kafka process on 127.0.0.1 acting as broker and KRaft controller.

    Alone by default; with `voters` (node id → controller port of every node, this one too)
    and `cluster_id`, one node of a KafkaCluster. With `security`, clients log in with
    SASL/SCRAM and ACLs decide what each may do.
    """

    log_name = "broker.log"
    stop_timeout = 30.0  # a controlled shutdown moves leadership first

    def __init__(
        self,
        *,
        state_dir: Path,
        port: int,
        controller_port: int,
        partitions: int = 3,
        security: BrokerSecurity | None = None,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        cluster_id: str = "",
    ) -> None:
        super().__init__(state_dir)
        self.port = port
        self.controller_port = controller_port
        self.partitions = partitions
        self.security = security
        self.node_id = node_id
        self.voters = dict(voters or {})
        self.cluster_id = cluster_id
        self.name = f"Kafka broker {node_id} on {self.bootstrap}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings of an operator's client: the bootstrap, and a login if secured."""
        login = self.security.admin_client() if self.security else {}
        return {"bootstrap.servers": self.bootstrap, "logger": KAFKA_LOG} | login

    def start(self, *, timeout: float = 90.0) -> None:
        """Format the storage on first use, launch the JVM and wait until it serves metadata."""
        super().start(timeout=timeout)

    def _ports(self) -> list[int]:
        return [self.port, self.controller_port]

    def _prepare(self) -> None:
        self._write_config()
        if not (self.state_dir / "data" / "meta.properties").exists():
            self._format_storage()
        elif self.security and not self._secured_marker.exists():
            raise ConfigurationError(
                f"{self.state_dir} was formatted without SCRAM users, so a secured broker could "
                "not log in to itself: remove it (its topics go with it) or run without security"
            )

    @property
    def _secured_marker(self) -> Path:
        return self.state_dir / "scram-formatted"

    def _command(self) -> list[str]:
        return self._java_command("kafka.Kafka", str(self._config_path))

    @property
    def _config_path(self) -> Path:
        return self.state_dir / "server.properties"

    def _write_config(self) -> None:
        if self.security:
            # The config holds the broker's password, the storage every SCRAM user's hash.
            self.state_dir.chmod(0o700)
        self._config_path.write_text(_server_properties(self))
        (self.state_dir / "log4j2.properties").write_text(LOG4J2_CONFIG)

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        log_config = self.state_dir / "log4j2.properties"
        return [
            _java(),
            *(CLUSTER_JVM_HEAP if self.voters else JVM_HEAP),
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}",
            "-cp",
            f"{LIB_DIR}/*",
            main_class,
            *args,
        ]

    def _format_storage(self) -> None:
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            # A cluster's voters are static (controller.quorum.voters): nothing to bootstrap.
            *([] if self.voters else ["--standalone"]),
            "-t",
            self.cluster_id or _cluster_id(),
            "-c",
            str(self._config_path),
            *(self.security.format_args() if self.security else []),
        )
        _run(command, what="kafka-storage format")
        self._secured_marker.unlink(missing_ok=True)
        if self.security:
            self._secured_marker.touch()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # Probe the socket first: librdkafka logs every refused connection to stderr.
        while not _accepts(self.port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka did not open {self.bootstrap}\n{self._log_tail()}")
            time.sleep(0.2)
        admin = AdminClient(self.admin_config())
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"Kafka on {self.bootstrap} not ready\n{self._log_tail()}")
            try:
                metadata = admin.list_topics(timeout=min(remaining, 5.0))
            except KafkaException:  # the broker is up but not yet unfenced
                time.sleep(0.2)
                continue
            self._check_cluster(metadata.cluster_id)
            # Unfenced: the controller lists it among the brokers (a restarted node of a
            # cluster answers metadata from its old log before it is back).
            if self.node_id in metadata.brokers:
                return
            time.sleep(0.2)

    def _check_cluster(self, answered: str | None) -> None:
        """The broker that answered is this one (its storage's cluster), not another's."""
        ours = _stored_cluster_id(self.state_dir / "data" / "meta.properties")
        if ours and answered != ours:
            raise RuntimeError(
                f"another Kafka cluster ({answered}) answers on {self.bootstrap}, not ours ({ours})"
            )


class KafkaCluster(Startable):
    """Kafka nodes on 127.0.0.1, each broker and controller, their controllers one quorum.

    `ports` holds one (client port, controller port) pair a node; node n (from 1) keeps its
    logs in state_dir/node-n. One pair is a lone KafkaBroker with its logs in state_dir itself.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        ports: Sequence[tuple[int, int]],
        partitions: int = 3,
        security: BrokerSecurity | None = None,
    ) -> None:
        if not ports:
            raise ConfigurationError("a Kafka cluster needs at least one node")
        self.state_dir = state_dir
        if len(ports) == 1:
            ((port, cport),) = ports
            single = KafkaBroker(
                state_dir=state_dir,
                port=port,
                controller_port=cport,
                partitions=partitions,
                security=security,
            )
            self.nodes = [single]
            return
        voters = {node: cport for node, (_, cport) in enumerate(ports, start=1)}
        dirs = [state_dir / f"node-{node}" for node in voters]
        found = [_stored_cluster_id(d / "data" / "meta.properties") for d in dirs]
        cluster_id = next((found_id for found_id in found if found_id), "") or _cluster_id()
        self.nodes = [
            KafkaBroker(
                state_dir=node_dir,
                port=port,
                controller_port=cport,
                partitions=partitions,
                security=security,
                node_id=node,
                voters=voters,
                cluster_id=cluster_id,
            )
            for node_dir, (node, (port, cport)) in zip(
                dirs, zip(voters, ports, strict=True), strict=True
            )
        ]

    @property
    def bootstrap(self) -> str:
        """Every node's client address: a client finds the cluster through any that answers."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaBroker:
        return self.nodes[node_id - 1]

    def admin_config(self) -> dict[str, Any]:
        return self.nodes[0].admin_config() | {"bootstrap.servers": self.bootstrap}

    def leaders(self, topic: str, *, timeout: float = 60.0) -> dict[int, int]:
        """Partition → the node that leads it, once every partition of `topic` has a leader."""
        admin = AdminClient(self.admin_config())
        deadline = time.monotonic() + timeout
        while True:
            found = admin.list_topics(topic, timeout=timeout).topics.get(topic)
            partitions = found.partitions if found is not None and found.error is None else {}
            leaders = {number: p.leader for number, p in partitions.items()}
            if leaders and all(leader >= 0 for leader in leaders.values()):
                return leaders
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic} has no leader for every partition: {leaders}")
            time.sleep(0.2)

    def under_replicated(self, *, timeout: float = 30.0) -> list[str]:
        """`topic/partition` of every partition with a replica out of its in-sync set."""
        admin = AdminClient(self.admin_config())
        topics = admin.list_topics(timeout=timeout).topics.values()
        return [
            f"{topic.topic}/{number}"
            for topic in topics
            for number, partition in topic.partitions.items()
            if set(partition.isrs) != set(partition.replicas)
        ]

    def wait_in_sync(self, *, timeout: float = 120.0) -> None:
        """Until every replica of every partition is in sync again: the point at which a
        rolling restart may take down the next node without a partition falling below
        min.insync.replicas."""
        deadline = time.monotonic() + timeout
        while lagging := self.under_replicated():
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas out of sync after {timeout:.0f} s: {lagging[:10]}")
            time.sleep(0.5)

    def start(self, *, timeout: float = 120.0) -> None:
        """Launch every node at once (a controller quorum forms only with a majority), then
        wait until each serves as a broker."""
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_started(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node at once: the last of a quorum stopped alone would wait for the
        others to elect a controller to shut down through."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))


def _quorum(broker: KafkaBroker) -> dict[str, str]:
    if not broker.voters:
        return {"controller.quorum.bootstrap.servers": f"127.0.0.1:{broker.controller_port}"}
    voters = ",".join(f"{node}@127.0.0.1:{port}" for node, port in sorted(broker.voters.items()))
    return {"controller.quorum.voters": voters}


def _replication(broker: KafkaBroker) -> dict[str, str]:
    """Internal topics (offsets, transactions) as replicated as the cluster allows, and a write
    acknowledged by all (acks=all) only once two copies have it, where there are three."""
    replicas, min_insync = default_replication(len(broker.voters) or 1)
    min_isr = str(min_insync)
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
    }


def _server_properties(broker: KafkaBroker) -> str:
    port, cport = broker.port, broker.controller_port
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(broker.node_id),
        **_quorum(broker),
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(broker.state_dir / "data"),
        "num.partitions": str(broker.partitions),
        "auto.create.topics.enable": "false",
        # The default 50 partitions make the first consumer group slow to come up.
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.num.partitions": "5",
        # A killed stage's open transaction holds back every read_committed reader until the
        # coordinator aborts it: look for timed-out ones every 2 s, not every 10 s.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "2000",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.segment.bytes": str(16 * 1024 * 1024),
        "log.retention.hours": "24",
        "log.retention.bytes": str(256 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
        **_replication(broker),
    }
    if broker.security:
        settings |= broker.security.server_properties(port=port, controller_port=cport)
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _stored_cluster_id(meta: Path) -> str:
    if not meta.exists():
        return ""
    for line in meta.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "cluster.id":
            return value.strip()
    return ""


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid() rejects ids starting with "-": they read as a CLI flag.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH: the Kafka broker needs a JRE 17+")
    return java


def _run(command: list[str], *, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise RuntimeError(f"{what} failed with code {result.returncode}\n{output}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False

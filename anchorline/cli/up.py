"""`anchorline up`: the whole system on this machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import httpx
from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3

from anchorline.cli.credentials import Logins, provision
from anchorline.errors import BadInput, ConfigurationError
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.apicurio import ApicurioRegistry
from anchorline.infra.kafka import KafkaCluster, ensure_kafka_jars
from anchorline.infra.kafka_sasl import ADMIN_USER, BROKER_USER
from anchorline.infra.ports import free_ports, port_taken
from anchorline.infra.process import PortTaken
from anchorline.infra.s3proxy import S3Proxy
from anchorline.proof.registry import deploy, has_registry
from anchorline.proof.trust import KeyPeriod, TrustRoots, parse_trust, rotated
from anchorline.settings import Settings
from anchorline.store.blobs import s3_access
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.store.s3blobs import ensure_bucket
from anchorline.stream.access import DESK, EXTERNAL_PRODUCER, PRINCIPALS
from anchorline.stream.kafka import ensure_topics

log = logging.getLogger(__name__)
SERVICES = (
    "projector",
    "verifier",
    "prover",
    "chain-writer",
    "notifier",
    "scheduler",
    "gateway",
)
RESTART_DELAY_S = 2.0
GATEWAY_START_TIMEOUT_S = 120.0
METRICS_TARGETS = "prometheus-targets.json"


def kafka_ports(settings: Settings, *, brokers: int = 1) -> list[tuple[int, int]]:
    """(client port, controller port) of each Kafka node: the first at KAFKA_BOOTSTRAP's (first
    address's) port and KAFKA_CONTROLLER_PORT, each next one 2 ports further (9092/9093,
    9094/9095, 9096/9097 by default)."""
    if brokers < 1:
        raise ConfigurationError("up --brokers needs 1 or more")
    first = settings.kafka_bootstrap.split(",")[0]
    port, controller = int(first.rsplit(":", 1)[1]), settings.kafka_controller_port
    ports = [(port + 2 * n, controller + 2 * n) for n in range(brokers)]
    if len({p for pair in ports for p in pair}) != 2 * brokers:
        raise ConfigurationError(
            f"up --brokers {brokers} puts node n on ANCHORLINE_KAFKA_BOOTSTRAP's port + 2n and "
            "ANCHORLINE_KAFKA_CONTROLLER_PORT + 2n: those overlap, choose ports an odd number apart"
        )
    return ports


def needed_ports(settings: Settings, *, brokers: int = 1) -> list[tuple[int, str, str]]:
    """(port, what listens there, the setting that chooses it) of everything `up` starts."""
    kafka = []
    for node, (port, controller) in enumerate(kafka_ports(settings, brokers=brokers), start=1):
        which = f" node {node}" if brokers > 1 else ""
        kafka += [
            (port, f"Kafka{which}", "KAFKA_BOOTSTRAP"),
            (controller, f"the Kafka controller{which}", "KAFKA_CONTROLLER_PORT"),
        ]
    return [
        *kafka,
        (urlparse(settings.rpc_url).port or 8545, "anvil", "RPC_URL"),
        (settings.http_port, "the gateway", "HTTP_PORT"),
    ]


def check_ports(settings: Settings, *, brokers: int = 1) -> None:
    """Refuse to start when a port is taken (by another `up`, say), naming each and its setting:
    a broker found there would pass for ours."""
    taken = [
        f"port {port} ({what}, ANCHORLINE_{setting})"
        for port, what, setting in needed_ports(settings, brokers=brokers)
        if port_taken(port, host="127.0.0.1")
        or (setting == "HTTP_PORT" and port_taken(port, host=settings.http_host))
    ]
    if taken:
        raise PortTaken(
            f"{' and '.join(taken)} {'is' if len(taken) == 1 else 'are'} taken, by another "
            "`anchorline up` or another program: stop it, or choose free ports with those settings"
        )


def wait_for_gateway(url: str, stop: threading.Event, *, timeout: float) -> bool:
    """Whether the gateway answered /healthz before `timeout` (False if `stop` came first)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            stop.wait(0.2)
    return False


TRUST_FILE_NAME = "trust.json"
ANVIL_STATE_NAME = "state.json"  # the local chain, kept across runs
LOCAL_S3_PORT = 9000
LOCAL_BLOB_URL = "s3://anchorline/blobs"
LOCAL_REGISTRY_PORT = 8081


def prepare(settings: Settings) -> Settings:
    """Fill in what a local run may leave out: keys from anvil's dev accounts, the registry (the
    one the trust document names, while the chain still has it, else a fresh one), and write
    the trust document the gateway publishes."""
    trust_file = settings.trust_file or settings.state_dir / TRUST_FILE_NAME
    settings = replace(
        settings,
        chain_private_key=settings.chain_private_key or DEV_PRIVATE_KEYS[0],
        prover_private_key=settings.prover_private_key or DEV_PRIVATE_KEYS[1],
        trust_file=trust_file,
    )
    settings = publish_trust(settings, trust_file)
    ensure_topics(settings)
    upgrade(make_engine(settings.db_url))
    return settings


def publish_trust(settings: Settings, trust_file: Path) -> Settings:
    """The settings with their registry (found again, or deployed), after writing the trust
    document for them to `trust_file`, keys of earlier runs kept."""
    previous = load_trust(trust_file)
    settings, deployment_block, deployed = registry_of(settings, previous)
    # A registry deployed now starts a new document, even at the address the old one had (a
    # reset chain deploys at the same address): the keys listed were of a chain that is gone.
    earlier = None if deployed else previous
    roots = rotated(earlier, trust_roots(settings, deployment_block), head=chain_head(settings))
    write_trust(trust_file, roots)
    return settings


def registry_of(settings: Settings, previous: TrustRoots | None) -> tuple[Settings, int, bool]:
    """The settings with a registry address, the block the registry was deployed in, and
    whether it was deployed just now."""
    if settings.registry_address:
        known = previous is not None and previous.registry == settings.registry_address
        return settings, previous.deployment_block if previous and known else 0, False
    if (
        previous is not None
        and previous.chain_id == settings.chain_id
        and has_registry(settings.rpc_url, previous.registry)
    ):
        log.info("AnchorRegistry at %s, as before", previous.registry)
        found = replace(settings, registry_address=previous.registry)
        return found, previous.deployment_block, False
    deployment = deploy(settings.rpc_url, settings.chain_private_key)
    log.info("deployed AnchorRegistry at %s", deployment.address)
    return replace(settings, registry_address=deployment.address), deployment.block, True


def trust_roots(settings: Settings, deployment_block: int) -> TrustRoots:
    """This run's trust roots: its chain, registry, prover and chain-writer, each from now on."""
    return TrustRoots(
        chain_id=settings.chain_id,
        registry=to_checksum_address(settings.registry_address),
        deployment_block=deployment_block,
        provers=(KeyPeriod(Account.from_key(settings.prover_private_key).address, 0),),
        chain_writers=(KeyPeriod(Account.from_key(settings.chain_private_key).address, 0),),
        confirmations=settings.confirmations,
    )


def chain_head(settings: Settings) -> int:
    return int(Web3(Web3.HTTPProvider(settings.rpc_url)).eth.block_number)


def load_trust(path: Path) -> TrustRoots | None:
    """The trust document a previous run wrote, or None (none yet, or not one)."""
    try:
        return parse_trust(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, BadInput) as exc:
        log.warning("ignoring the trust document %s: %s", path, exc)
        return None


def write_trust(path: Path, roots: TrustRoots) -> None:
    # Written aside and renamed, so that the gateway never serves half a document.
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(roots.as_json(), indent=2) + "\n")
    partial.replace(path)


def even_share(partitions: int, cpus: int) -> int:
    """The most processes, at most one a CPU, among which `partitions` split evenly."""
    return max(n for n in range(1, max(1, min(partitions, cpus)) + 1) if partitions % n == 0)


def process_names(settings: Settings, *, cpus: int) -> dict[str, str]:
    """Process name → the service it runs. Verifiers are sized to the machine (the verifier
    does most of the work per job); the prover stays one, so that its batches stay large."""
    verifiers = settings.verifier_processes or even_share(settings.partitions, cpus)
    names = {service: service for service in SERVICES}
    names.update({f"verifier-{n}": "verifier" for n in range(2, verifiers + 1)})
    return names


class Supervisor:
    """Runs each service as its own process (verifiers one a CPU) and restarts one that dies.

    With `logins`, each service runs with its own settings (its own Kafka login), and a
    service without one is not started: it never falls back to the operator's login.
    """

    def __init__(self, settings: Settings, *, logins: Mapping[str, Settings] | None = None) -> None:
        own = logins if logins is not None else {service: settings for service in SERVICES}
        self.envs = {service: os.environ | own[service].as_env() for service in own}
        self.names = {
            name: service
            for name, service in process_names(settings, cpus=os.cpu_count() or 1).items()
            if service in self.envs
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        workers = [name for name, service in self.names.items() if service != "gateway"]
        self.metrics_ports = dict(zip(workers, free_ports(len(workers)), strict=True))

    def start(self, name: str) -> None:
        service = self.names[name]
        command = [sys.executable, "-m", "anchorline.cli", "run", service]
        env = self.envs[service]
        if name in self.metrics_ports:  # a restarted process keeps its port
            env = env | {"ANCHORLINE_METRICS_PORT": str(self.metrics_ports[name])}
        # A session of its own: Ctrl-C reaches `up` alone, which then stops services in order.
        self.processes[name] = subprocess.Popen(command, env=env, start_new_session=True)

    def write_targets(self, path: Path, *, host: str) -> None:
        """A Prometheus file_sd target list of the workers' metrics (ops/prometheus.yml)."""
        targets = [
            {
                "targets": [f"{host}:{port}"],
                "labels": {"service": self.names[name], "process": name},
            }
            for name, port in self.metrics_ports.items()
        ]
        path.write_text(json.dumps(targets, indent=2) + "\n")

    def watch(self, stop: threading.Event) -> None:
        for name in self.names:
            self.start(name)
        while not stop.wait(RESTART_DELAY_S):
            for name, process in list(self.processes.items()):
                if process.poll() is not None:
                    log.warning("%s exited with %s; restarting", name, process.returncode)
                    self.start(name)

    def stop(self, *, timeout: float = 20.0) -> None:
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


def secure(settings: Settings, logins: Logins) -> dict[str, Settings]:
    """Give every principal its password and ACLs, write their login files, and return each
    service's settings, logged in as itself. `settings` logs in as the operator."""
    provision(settings, logins)
    print(f"Kafka logins (0600) in {logins.directory}", flush=True)
    print(f"external producers log in with {logins.properties(EXTERNAL_PRODUCER)}", flush=True)
    print(f"operator commands: set -a; . {logins.env_file(ADMIN_USER)}; set +a", flush=True)
    own = {service: logins.settings_of(service, settings) for service in SERVICES}
    own["gateway"] = replace(
        own["gateway"], desk_kafka_username=DESK, desk_kafka_password=logins.passwords[DESK]
    )
    return own


def local_object_store(settings: Settings) -> tuple[S3Proxy, Settings]:
    """S3Proxy for `up --blobs s3` and the settings that keep blobs in it: at S3_ENDPOINT_URL
    (default 127.0.0.1:9000), BLOB_URL (default s3://anchorline/blobs), with the S3 keys given
    or a new pair."""
    endpoint = settings.s3_endpoint_url or f"http://127.0.0.1:{LOCAL_S3_PORT}"
    address = urlparse(endpoint)
    if address.hostname not in ("127.0.0.1", "localhost") or address.port is None:
        raise ConfigurationError(f"up --blobs s3 serves 127.0.0.1:<port>, not {endpoint}")
    settings = replace(
        settings,
        blob_url=settings.blob_url or LOCAL_BLOB_URL,
        s3_endpoint_url=f"http://127.0.0.1:{address.port}",
        s3_access_key_id=settings.s3_access_key_id or "anchorline",
        s3_secret_access_key=settings.s3_secret_access_key or secrets.token_urlsafe(24),
    )
    server = S3Proxy(
        state_dir=settings.state_dir / "s3proxy",
        port=address.port,
        access_key=settings.s3_access_key_id,
        secret_key=settings.s3_secret_access_key,
    )
    return server, settings


def local_schema_registry(settings: Settings) -> tuple[ApicurioRegistry, Settings]:
    """Apicurio Registry for `up --schema-registry` and the settings that use it: at
    SCHEMA_REGISTRY_URL's port if given (default 8081)."""
    url = settings.schema_registry_url or f"http://127.0.0.1:{LOCAL_REGISTRY_PORT}"
    address = urlparse(url)
    if address.hostname not in ("127.0.0.1", "localhost") or address.port is None:
        raise ConfigurationError(f"up --schema-registry serves 127.0.0.1:<port>, not {url}")
    server = ApicurioRegistry(state_dir=settings.state_dir / "apicurio", port=address.port)
    return server, replace(settings, schema_registry_url=server.confluent_url)


def up(
    settings: Settings,
    stop: threading.Event,
    *,
    secured: bool = False,
    s3: bool = False,
    schema_registry: bool = False,
    brokers: int = 1,
) -> None:
    """Everything on this machine until `stop`; `secured`: SASL/SCRAM and ACLs on the broker,
    and each service logged in as its own principal; `s3`: blobs in a local S3Proxy's bucket;
    `brokers`: Kafka nodes in one KRaft quorum (topics replicated min(3, brokers) times)."""
    check_ports(settings, brokers=brokers)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    rpc_port = urlparse(settings.rpc_url).port or 8545
    ensure_kafka_jars()
    logins = (
        Logins.load_or_create(settings.state_dir, [BROKER_USER, ADMIN_USER, *PRINCIPALS])
        if secured
        else None
    )
    with ExitStack() as stack:
        kafka = KafkaCluster(
            state_dir=settings.state_dir / "kafka",
            ports=kafka_ports(settings, brokers=brokers),
            partitions=settings.partitions,
            security=logins.broker_security() if logins else None,
        )
        print(f"starting Kafka on {kafka.bootstrap} …", flush=True)
        stack.enter_context(kafka)
        settings = replace(settings, kafka_bootstrap=kafka.bootstrap)
        chain = AnvilChain(
            state_dir=settings.state_dir / "anvil",
            port=rpc_port,
            state_file=settings.state_dir / "anvil" / ANVIL_STATE_NAME,
        )
        print(f"starting anvil on {chain.url} …", flush=True)
        stack.enter_context(chain)
        if s3:
            settings = _start_object_store(settings, stack)
        if schema_registry:
            registry, settings = local_schema_registry(settings)
            print(f"starting Apicurio Registry on {registry.base_url} …", flush=True)
            stack.enter_context(registry)
        if logins:
            settings = logins.settings_of(ADMIN_USER, settings)
        settings = prepare(replace(settings, chain_id=settings.chain_id or chain.chain_id))
        supervisor = Supervisor(settings, logins=secure(settings, logins) if logins else None)
        stack.callback(supervisor.stop)
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
        print(f"registry contract {settings.registry_address} on chain {chain.url}", flush=True)
        print(f"trust document {settings.trust_file} (the gateway serves it)", flush=True)
        print(f"jobs database {settings.db_url}", flush=True)
        print(f"blobs in {settings.blob_url or settings.blobs.resolve()}", flush=True)
        if settings.schema_registry_url:
            print(f"schema registry {settings.schema_registry_url}", flush=True)
        gateway = f"http://{settings.http_host}:{settings.http_port}"
        targets = settings.state_dir / METRICS_TARGETS
        supervisor.write_targets(targets, host=settings.http_host)
        for name, port in supervisor.metrics_ports.items():
            print(f"metrics of {name} on http://{settings.http_host}:{port}/metrics", flush=True)
        print(f"Prometheus targets in {targets}", flush=True)
        if wait_for_gateway(gateway, stop, timeout=GATEWAY_START_TIMEOUT_S):
            print(f"gateway listening on {gateway}", flush=True)
            print("press Ctrl-C to stop", flush=True)
        elif not stop.is_set():
            print(f"the gateway does not answer on {gateway} yet; its log is above", flush=True)
        stop.wait()
        print("stopping …", flush=True)


def _start_object_store(settings: Settings, stack: ExitStack) -> Settings:
    server, settings = local_object_store(settings)
    print(f"starting S3Proxy on {server.endpoint} …", flush=True)
    stack.enter_context(server)
    location = settings.s3_blobs
    assert location is not None  # local_object_store always sets BLOB_URL
    ensure_bucket(s3_access(settings).client(), location[0], region=settings.s3_region)
    print(f"S3 keys in {server.state_dir / 's3proxy.conf'}", flush=True)
    return settings

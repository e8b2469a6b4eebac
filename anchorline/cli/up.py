"""`anchorline up`: the whole system on this machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

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
from urllib.parse import urlparse

from anchorline.cli.credentials import Logins, provision
from anchorline.errors import ConfigurationError
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.apicurio import ApicurioRegistry
from anchorline.infra.kafka import KafkaBroker, ensure_kafka_jars
from anchorline.infra.kafka_sasl import ADMIN_USER, BROKER_USER
from anchorline.infra.s3proxy import S3Proxy
from anchorline.proof.registry import deploy_registry
from anchorline.settings import Settings
from anchorline.store.blobs import s3_access
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.store.s3blobs import ensure_bucket
from anchorline.stream.access import EXTERNAL_PRODUCER, PRINCIPALS
from anchorline.stream.kafka import ensure_topics

log = logging.getLogger(__name__)
SERVICES = ("projector", "verifier", "prover", "chain-writer", "gateway")
RESTART_DELAY_S = 2.0
LOCAL_S3_PORT = 9000
LOCAL_BLOB_URL = "s3://anchorline/blobs"
LOCAL_REGISTRY_PORT = 8081


def prepare(settings: Settings) -> Settings:
    """Fill in what a local run may leave out: keys from anvil's dev accounts, a fresh registry."""
    settings = replace(
        settings,
        chain_private_key=settings.chain_private_key or DEV_PRIVATE_KEYS[0],
        prover_private_key=settings.prover_private_key or DEV_PRIVATE_KEYS[1],
    )
    if not settings.registry_address:
        address = deploy_registry(settings.rpc_url, settings.chain_private_key)
        settings = replace(settings, registry_address=address)
        log.info("deployed AnchorRegistry at %s", address)
    ensure_topics(settings)
    upgrade(make_engine(settings.db_url))
    return settings


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

    def start(self, name: str) -> None:
        service = self.names[name]
        command = [sys.executable, "-m", "anchorline.cli", "run", service]
        # A session of its own: Ctrl-C reaches `up` alone, which then stops services in order.
        self.processes[name] = subprocess.Popen(
            command, env=self.envs[service], start_new_session=True
        )

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
    return {service: logins.settings_of(service, settings) for service in SERVICES}


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
) -> None:
    """Everything on this machine until `stop`; `secured`: SASL/SCRAM and ACLs on the broker,
    and each service logged in as its own principal; `s3`: blobs in a local S3Proxy's bucket."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    kafka_port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    rpc_port = urlparse(settings.rpc_url).port or 8545
    ensure_kafka_jars()
    logins = (
        Logins.load_or_create(settings.state_dir, [BROKER_USER, ADMIN_USER, *PRINCIPALS])
        if secured
        else None
    )
    with ExitStack() as stack:
        broker = KafkaBroker(
            state_dir=settings.state_dir / "kafka",
            port=kafka_port,
            controller_port=settings.kafka_controller_port,
            partitions=settings.partitions,
            security=logins.broker_security() if logins else None,
        )
        print(f"starting Kafka on {broker.bootstrap} …", flush=True)
        stack.enter_context(broker)
        chain = AnvilChain(state_dir=settings.state_dir / "anvil", port=rpc_port)
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
        print(f"jobs database {settings.db_url}", flush=True)
        print(f"blobs in {settings.blob_url or settings.blobs.resolve()}", flush=True)
        if settings.schema_registry_url:
            print(f"schema registry {settings.schema_registry_url}", flush=True)
        print(f"gateway listening on http://{settings.http_host}:{settings.http_port}", flush=True)
        print("press Ctrl-C to stop", flush=True)
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

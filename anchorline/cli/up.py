"""`anchorline up`: the whole system on this machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import urlparse

from anchorline.cli.credentials import Logins, provision
from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.kafka import KafkaBroker, ensure_kafka_jars
from anchorline.infra.kafka_sasl import ADMIN_USER, BROKER_USER
from anchorline.proof.registry import deploy_registry
from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.stream.access import EXTERNAL_PRODUCER, PRINCIPALS
from anchorline.stream.kafka import ensure_topics

log = logging.getLogger(__name__)
SERVICES = ("projector", "verifier", "prover", "chain-writer", "notifier", "gateway")
RESTART_DELAY_S = 2.0


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


def up(settings: Settings, stop: threading.Event, *, secured: bool = False) -> None:
    """Everything on this machine until `stop`; `secured`: SASL/SCRAM and ACLs on the broker,
    and each service logged in as its own principal."""
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
        if logins:
            settings = logins.settings_of(ADMIN_USER, settings)
        settings = prepare(replace(settings, chain_id=settings.chain_id or chain.chain_id))
        supervisor = Supervisor(settings, logins=secure(settings, logins) if logins else None)
        stack.callback(supervisor.stop)
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
        print(f"registry contract {settings.registry_address} on chain {chain.url}", flush=True)
        print(f"jobs database {settings.db_url}", flush=True)
        print(f"gateway listening on http://{settings.http_host}:{settings.http_port}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        stop.wait()
        print("stopping …", flush=True)

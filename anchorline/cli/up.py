"""`anchorline up`: the whole system on this machine, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import urlparse

from anchorline.infra.anvil import DEV_PRIVATE_KEYS, AnvilChain
from anchorline.infra.kafka import KafkaBroker, ensure_kafka_jars
from anchorline.proof.registry import deploy_registry
from anchorline.settings import Settings
from anchorline.store.db import make_engine
from anchorline.store.migrate import upgrade
from anchorline.stream.kafka import ensure_topics

log = logging.getLogger(__name__)
SERVICES = ("projector", "verifier", "prover", "chain-writer", "gateway")
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
    """Runs each service as its own process (verifiers one a CPU) and restarts one that dies."""

    def __init__(self, settings: Settings) -> None:
        self.env = os.environ | settings.as_env()
        self.names = process_names(settings, cpus=os.cpu_count() or 1)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        command = [sys.executable, "-m", "anchorline.cli", "run", self.names[name]]
        # A session of its own: Ctrl-C reaches `up` alone, which then stops services in order.
        self.processes[name] = subprocess.Popen(command, env=self.env, start_new_session=True)

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


def up(settings: Settings, stop: threading.Event) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    kafka_port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    rpc_port = urlparse(settings.rpc_url).port or 8545
    ensure_kafka_jars()
    with ExitStack() as stack:
        broker = KafkaBroker(
            state_dir=settings.state_dir / "kafka",
            port=kafka_port,
            controller_port=settings.kafka_controller_port,
            partitions=settings.partitions,
        )
        print(f"starting Kafka on {broker.bootstrap} …", flush=True)
        stack.enter_context(broker)
        chain = AnvilChain(state_dir=settings.state_dir / "anvil", port=rpc_port)
        print(f"starting anvil on {chain.url} …", flush=True)
        stack.enter_context(chain)
        settings = prepare(replace(settings, chain_id=settings.chain_id or chain.chain_id))
        supervisor = Supervisor(settings)
        stack.callback(supervisor.stop)
        threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
        print(f"registry contract {settings.registry_address} on chain {chain.url}", flush=True)
        print(f"jobs database {settings.db_url}", flush=True)
        print(f"gateway listening on http://{settings.http_host}:{settings.http_port}", flush=True)
        print("press Ctrl-C to stop", flush=True)
        stop.wait()
        print("stopping …", flush=True)

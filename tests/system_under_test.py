"""`anchorline up` as tests run it: the README's run command, in a process of its own."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from anchorline.infra.anvil import ensure_node_tools
from anchorline.infra.kafka import ensure_kafka_jars
from anchorline.infra.ports import free_ports
from anchorline.proof.manifest import sign_eip191
from anchorline.settings import Settings

START_TIMEOUT_S = 180
GATEWAY_ANSWERS_WITHIN_S = 5  # after `up` printed that it listens (a loaded machine: not 0)
TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})


@dataclass(frozen=True)
class System:
    """A running `anchorline up` and what a test needs to talk to it."""

    base_url: str
    settings: Settings
    registry_address: str
    output: list[str]


def wait_terminal(system: System, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The job's record once it is final, read through the gateway."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10)
        if response.status_code == 200 and response.json()["state"] in TERMINAL:
            return dict(response.json())
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not terminal in time\n" + "".join(system.output[-40:]))


def submit_signed(system: System, content: bytes, *, kind: str = "anchor") -> str:
    """POST a job for `content` with a manifest signed by a new creator; its job id."""
    creator = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
    }
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={
            "kind": kind,
            "manifest": json.dumps(document),
            "signature": sign_eip191(document, creator.key.hex()),
        },
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def verify_receipt(
    system: System, receipt: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """`anchorline receipt verify RECEIPT` against the system's chain, with `options`."""
    command = [str(Path(sys.executable).parent / "anchorline"), "receipt", "verify", str(receipt)]
    command += ["--rpc", system.settings.rpc_url, *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def local_settings(state_dir: Path, **overrides: Any) -> Settings:
    """Settings of a system on free ports of this machine."""
    kafka_port, controller_port, rpc_port, http_port = free_ports(4)
    return Settings(
        state_dir=state_dir,
        kafka_bootstrap=f"127.0.0.1:{kafka_port}",
        kafka_controller_port=controller_port,
        rpc_url=f"http://127.0.0.1:{rpc_port}",
        http_port=http_port,
        **overrides,
    )


@contextmanager
def running_system(*, state_dir: Path, database_url: str, **overrides: Any) -> Iterator[System]:
    """`anchorline up` on free ports until the block ends (see `run_up`)."""
    with run_up(local_settings(state_dir, database_url=database_url, **overrides)) as running:
        yield running


@contextmanager
def run_up(settings: Settings, *options: str) -> Iterator[System]:
    """`anchorline up [options]` until the block ends, then Ctrl-C (SIGINT), which must stop it
    cleanly."""
    ensure_kafka_jars()
    ensure_node_tools()
    env = os.environ | settings.as_env()
    command = [str(Path(sys.executable).parent / "anchorline"), "up", *options]
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    threading.Thread(target=_collect, args=(process, output), daemon=True).start()
    try:
        registry = _wait_until_up(process, output)
        base_url = f"http://127.0.0.1:{settings.http_port}"
        _wait_http(base_url)
        yield System(base_url, settings, registry, output)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            code = -9
        if process.stdout is not None:
            process.stdout.close()
    assert code == 0, "anchorline up did not stop cleanly on Ctrl-C:\n" + "".join(output[-40:])


def _collect(process: subprocess.Popen[str], output: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)


def _wait_until_up(process: subprocess.Popen[str], output: list[str]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("anchorline up exited early:\n" + "".join(output[-60:]))
        lines = list(output)
        if any(line.startswith("gateway listening on") for line in lines):
            registry = next(line for line in lines if line.startswith("registry contract"))
            return registry.split()[2]
        time.sleep(0.2)
    raise AssertionError("anchorline up did not come up in time:\n" + "".join(output[-60:]))


def _wait_http(base_url: str) -> None:
    """`up` prints its gateway line once the gateway answers; then wait until it is ready (its
    database and Kafka answer), as a load balancer waits."""
    if not _answers(f"{base_url}/healthz", within_s=GATEWAY_ANSWERS_WITHIN_S):
        raise AssertionError("`up` said the gateway listens, and it did not answer /healthz")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the gateway never answered /readyz with 200")


def _answers(url: str, *, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False

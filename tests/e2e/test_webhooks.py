"""Webhooks on a running system (real Kafka, PostgreSQL, anvil) to a real HTTP receiver that
the test starts: signed deliveries, retries through the notifier's delay topics, dead letters
`anchorline dlq` lists, and a receiver that hangs slowing nothing but its own deliveries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from system_under_test import System, running_system, wait_terminal

from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer
from anchorline.proof.manifest import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


class Receiver:
    """A webhook receiver: `/ok` answers 204, `/flaky` 503 to the first delivery of each
    webhook-id, `/down` always 500, `/slow` only after the notifier has given up waiting."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        (port,) = free_ports(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver.lock:
                    seen = sum(
                        1
                        for p, h, _ in receiver.received
                        if h["webhook-id"] == headers["webhook-id"]
                    )
                    receiver.received.append((self.path, headers, body))
                if self.path == "/slow":
                    time.sleep(4)
                status = {"/ok": 204, "/slow": 204, "/down": 500}.get(self.path, 204)
                if self.path == "/flaky":
                    status = 503 if seen == 0 else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def of(self, job_id: str) -> list[tuple[str, dict[str, str], bytes]]:
        with self.lock:
            return [r for r in self.received if json.loads(r[2])["data"]["job_id"] == job_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture(scope="module")
def hooked(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer, receiver: Receiver
) -> Iterator[System]:
    state_dir = tmp_path_factory.mktemp("webhooks")
    with running_system(
        state_dir=state_dir,
        database_url=postgres.new_database("webhooks"),
        trace_file=state_dir / "spans.jsonl",  # every service exports its spans there
        batch_max_wait_s=0.5,
        retry_delays_s="1,2",
        max_attempts=3,
        webhook_secrets=f"*={SECRET}",
        webhook_private_networks="127.0.0.0/8",
        webhook_timeout_s=1.0,
    ) as running:
        yield running


def submit(
    system: System,
    content: bytes,
    callback: str | None,
    *,
    kind: str = "verify",
    headers: dict[str, str] | None = None,
) -> str:
    creator = Account.create()
    document = {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator.address,
    }
    data = {
        "kind": kind,
        "manifest": json.dumps(document),
        "signature": sign(document, "0x" + bytes(creator.key).hex()),
    }
    if callback is not None:
        data["callback_url"] = callback
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data=data,
        files={"content": ("c", content)},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def wait_for(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def history(system: System, job_id: str) -> list[dict[str, Any]]:
    job = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10).json()
    return [event for event in job["history"] if event["stage"] == "notify"]


def verify(headers: dict[str, str], body: bytes) -> bool:
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(f"v1,{expected}", s) for s in headers["webhook-signature"].split()
    )


def test_an_ended_job_is_posted_signed_and_the_delivery_is_in_its_history(
    hooked: System, receiver: Receiver
) -> None:
    job_id = submit(hooked, b"tell me when done", f"{receiver.url}/ok?token=abc")
    job = wait_terminal(hooked, job_id)
    ((path, headers, body),) = wait_for(lambda: receiver.of(job_id))
    assert path == "/ok?token=abc"
    assert verify(headers, body)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
    assert headers["webhook-id"] == f"msg_{job_id}_0"
    sent = json.loads(body)
    assert sent["type"] == f"job.{job['state']}" == "job.succeeded"
    assert (sent["data"]["job_id"], sent["data"]["state"]) == (job_id, "succeeded")
    assert sent["data"]["result"]["verify"]["status"] in ("OK", "WARN")
    (delivered,) = wait_for(lambda: history(hooked, job_id))
    assert delivered["note"] == f"webhook delivered to {receiver.url}/ok: HTTP 204"
    assert (
        httpx.get(f"{hooked.base_url}/v1/jobs/{job_id}", timeout=10).json()["state"] == "succeeded"
    )


def test_a_failed_delivery_is_retried_and_each_attempt_is_in_the_history(
    hooked: System, receiver: Receiver
) -> None:
    job_id = submit(hooked, b"flaky receiver", f"{receiver.url}/flaky")
    wait_terminal(hooked, job_id)
    deliveries = wait_for(lambda: len(receiver.of(job_id)) >= 2 and receiver.of(job_id))
    assert len({headers["webhook-id"] for _, headers, _ in deliveries}) == 1  # same message

    def delivered() -> list[dict[str, Any]]:
        events = history(hooked, job_id)
        return events if any("webhook delivered" in (e["note"] or "") for e in events) else []

    events = wait_for(delivered)
    states = [(e["state"], e["attempt"]) for e in events if e["state"] != "running"]
    assert ("retrying", 1) in states
    assert "answered HTTP 503" in next(e["error"] for e in events if e["state"] == "retrying")
    assert any("webhook delivered" in (e["note"] or "") and e["attempt"] == 2 for e in events)


def test_a_dead_receiver_ends_in_the_notifiers_dead_letters_and_a_slow_one_slows_nothing(
    hooked: System, receiver: Receiver
) -> None:
    dead = submit(hooked, b"nobody listens", f"{receiver.url}/down")
    slow = [submit(hooked, f"slow {n}".encode(), f"{receiver.url}/slow") for n in range(3)]
    wait_for(lambda: receiver.of(slow[0]))  # the notifier is now held up by slow receivers
    plain = [submit(hooked, f"plain {n}".encode(), None) for n in range(5)]
    for job_id in plain:
        assert wait_terminal(hooked, job_id)["state"] == "succeeded"

    def gave_up(job_id: str) -> list[dict[str, Any]]:
        return [e for e in history(hooked, job_id) if e["state"] == "dead"]

    # the pipeline finished those while the slow hooks were still being tried (each attempt
    # waits out the notifier's 1 s timeout, three attempts each, with 1 and 2 s between)
    assert not all(gave_up(job_id) for job_id in slow)
    for job_id in slow:
        (died,) = wait_for(lambda job_id=job_id: gave_up(job_id))
        assert "timed out" in died["error"].lower()
    (died,) = wait_for(lambda: gave_up(dead))
    assert "answered HTTP 500" in died["error"]
    assert len(receiver.of(dead)) == 3  # ANCHORLINE_MAX_ATTEMPTS
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "anchorline"), "dlq", "list", "--stage", "notify"],
        env={**os.environ, **hooked.settings.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert dead in listed.stdout and all(job_id in listed.stdout for job_id in slow)


def test_a_traceparent_sent_with_a_job_is_one_trace_through_every_service(
    hooked: System, receiver: Receiver
) -> None:
    trace, parent = os.urandom(16).hex(), os.urandom(8).hex()
    traceparent = {"traceparent": f"00-{trace}-{parent}-01"}
    job_id = submit(hooked, b"traced", f"{receiver.url}/ok", kind="anchor", headers=traceparent)
    assert wait_terminal(hooked, job_id)["state"] == "succeeded"
    wait_for(lambda: history(hooked, job_id))  # the notifier delivered its webhook
    job = httpx.get(f"{hooked.base_url}/v1/jobs/{job_id}", timeout=10).json()
    assert job["trace_id"] == trace
    services = {
        f"anchorline-{name}"
        for name in ("gateway", "verifier", "prover", "chain-writer", "projector", "notifier")
    }
    assert hooked.settings.trace_file is not None
    spans_file = hooked.settings.trace_file

    def of_trace() -> list[dict[str, Any]]:
        """The trace's spans once every service's are in and form one tree under the client's
        span (each process exports its spans in batches of its own: a child may come first)."""
        lines = spans_file.read_text().splitlines() if spans_file.exists() else []
        found = [json.loads(line) for line in lines if trace in line]
        named = {span["resource"]["attributes"]["service.name"] for span in found}
        ids = {span["context"]["span_id"] for span in found} | {"0x" + parent}
        whole = all(span["parent_id"] in ids for span in found)
        return found if services <= named and whole else []

    try:
        spans = wait_for(of_trace, timeout=90)
    except AssertionError:
        lines = spans_file.read_text().splitlines() if spans_file.exists() else []
        found = [json.loads(line) for line in lines if trace in line]
        ids = {span["context"]["span_id"] for span in found} | {"0x" + parent}
        orphans = [
            (span["name"], span["resource"]["attributes"]["service.name"], span["parent_id"])
            for span in found
            if span["parent_id"] not in ids
        ]
        raise AssertionError(f"not one tree of six services: orphans {orphans}") from None
    assert all(span["context"]["trace_id"] == "0x" + trace for span in spans)

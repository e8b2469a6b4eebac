"""Load through the gateway's HTTP API: a job counts as accepted only once it answered 202."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from fault_harness import Job, Workload

WORKERS = 4  # requests in flight: a slow answer (a broker failing over) holds back one of them
REQUEST_TIMEOUT_S = 30.0


@dataclass
class GatewaySubmitter:
    """POSTs jobs to /v1/jobs at a steady rate from a few threads, recording every answer."""

    url: str
    accepted: dict[str, Job] = field(default_factory=dict)
    accepted_at: list[float] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, workload: Workload, count: int, *, rate: float) -> None:
        # Drawn up front, in order: the workload's random generator is not for threads.
        requests = [workload.job() for _ in range(count)]
        began = time.monotonic()

        def work() -> None:
            with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
                while (index := self._next(count)) is not None:
                    delay = began + index / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self._submit(client, *requests[index])

        self._threads = [
            threading.Thread(target=work, name=f"gateway-load-{n}", daemon=True)
            for n in range(WORKERS)
        ]
        for thread in self._threads:
            thread.start()

    def _next(self, count: int) -> int | None:
        with self._lock:
            if self.sent >= count:
                return None
            self.sent += 1
            return self.sent - 1

    def _submit(self, client: httpx.Client, job: Job, event: Any) -> None:
        body = {
            "kind": str(job.kind),
            "content_uri": event.content_uri,
            "manifest": event.manifest,
            "signature": event.signature,
        }
        try:
            response = client.post(f"{self.url}/v1/jobs", json=body)
        except httpx.TransportError as exc:
            with self._lock:
                self.refused[type(exc).__name__] += 1
            return
        with self._lock:
            if response.status_code == 202:
                job_id = str(response.json()["job_id"])
                self.accepted[job_id] = Job(job_id, job.kind, job.expect)
                self.accepted_at.append(time.monotonic())
            else:
                self.refused[str(response.status_code)] += 1

    def wait_sent(self, count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def join(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
            assert not thread.is_alive(), "the gateway load did not finish"

    def longest_silence(self) -> float:
        """The longest time between two 202s: how long the gateway could not take jobs."""
        times = sorted(self.accepted_at)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

"""The workloads: jobs into the system by Kafka or HTTP, until each one's row is terminal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

from confluent_kafka import Producer

from anchorline.events import JobKind
from anchorline.stream import codec
from anchorline.stream.kafka import producer_config
from perf.http import Connection
from perf.jobs import Signed
from perf.stack import Stack

POLL_S = 0.5  # between counts of the terminal rows
PACE_S = 0.001  # the paced producer's shortest sleep
STALL_S = 90.0  # no new terminal row for this long: the rest is reported missing
BATCH_SIZE = 500  # the gateway's largest batch
MIN_JOBS = 200  # the smallest workload a benchmark sizes
BATCH_CLIENTS = 4
SINGLE_CLIENTS = 32


@dataclass
class Outcome:
    """One workload of one run."""

    name: str
    jobs: int
    terminal: int
    e2e_jobs_s: float
    ingest_jobs_s: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    # Split at the moment the last stage produced the outcome (the row's finished_at).
    to_outcome_ms: dict[str, float] = field(default_factory=dict)
    outcome_to_row_ms: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)


class Terminal:
    """Reads the terminal rows PostgreSQL stamped (see stack.TERMINAL_TRIGGER)."""

    def __init__(self, stack: Stack) -> None:
        self.conn = stack.connect()

    def count(self) -> int:
        row = self.conn.execute("select count(*) from bench_terminal").fetchone()
        return int(row[0]) if row else 0

    def wait(self, target: int) -> int:
        last, last_change = self.count(), time.monotonic()
        while last < target and time.monotonic() - last_change < STALL_S:
            # Each count reads every stamped row (6 million rows read in a run at 100 ms apart,
            # pg_stat_user_tables) on the PostgreSQL whose CPU the figures charge to the jobs;
            # the span comes from the rows' own stamps, so a coarser poll only ends it later.
            time.sleep(POLL_S)
            now = self.count()
            if now != last:
                last, last_change = now, time.monotonic()
        return last

    def stamps(self, job_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
        """Job id → (when its row became terminal, when its outcome was produced)."""
        rows = self.conn.execute(
            "select t.job_id, extract(epoch from t.at)::float8,"
            " extract(epoch from j.finished_at)::float8"
            " from bench_terminal t join jobs j using (job_id) where t.job_id = any(%s)",
            (list(job_ids),),
        )
        return {str(job_id): (float(at), float(done or at)) for job_id, at, done in rows}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p99": rank(0.99), "p99.9": rank(0.999)}


def run_workload(
    stack: Stack, name: str, submit: Callable[[], tuple[dict[str, float], float | None]]
) -> Outcome:
    """Submit (returns job id → submit time, and the ingest rate), wait, measure."""
    terminal = Terminal(stack)
    before_count, before_cpu = terminal.count(), stack.cpu_seconds()
    submitted, ingest = submit()
    done = terminal.wait(before_count + len(submitted)) - before_count
    after_cpu = stack.cpu_seconds()
    stamps = terminal.stamps(submitted)
    jobs = len(submitted)
    span = max((at for at, _ in stamps.values()), default=0.0) - min(
        submitted.values(), default=0.0
    )
    latencies = [1000 * (stamps[j][0] - submitted[j]) for j in stamps]
    to_outcome = [1000 * (stamps[j][1] - submitted[j]) for j in stamps]
    to_row = [1000 * (at - done) for at, done in stamps.values()]
    cpu = {
        part: 1000 * (used - before_cpu.get(part, 0.0)) / max(1, jobs)
        for part, used in after_cpu.items()
    }
    terminal.conn.close()
    return Outcome(
        name,
        jobs,
        done,
        len(stamps) / span if span > 0 else 0.0,
        ingest_jobs_s=ingest,
        latency_ms=percentiles(latencies),
        to_outcome_ms=percentiles(to_outcome),
        outcome_to_row_ms=percentiles(to_row),
        cpu_ms_per_job=cpu,
    )


def _producer(stack: Stack) -> Any:
    """The benchmark's producer of jobs, one for the stack's life, as another system keeps its
    own open: a new one for each workload put its first jobs behind its connection and producer
    id (the first second of a paced run had a p50 of 320 to 420 ms against 60 to 100 after).
    anchorline's producer settings (linger 5 ms, librdkafka's default too; lz4)."""
    if stack.jobs_producer is None:
        stack.jobs_producer = Producer(producer_config(stack.settings))
    return stack.jobs_producer


def kafka_jobs(
    stack: Stack, signed: list[Signed], kind: JobKind, count: int, *, rate: float | None = None
) -> Callable[[], tuple[dict[str, float], float | None]]:
    """Jobs produced straight to the request topic, as another system would; at `rate` per
    second, or as fast as the producer takes them."""
    events = [s.event(kind) for s in islice(cycle(signed), count)]
    encoded = [(e.job_id, codec.encode(e)) for e in events]
    topic = stack.settings.topics.jobs_requested

    def submit() -> tuple[dict[str, float], float | None]:
        producer, sent = _producer(stack), {}
        started = time.monotonic()
        for index, (job_id, value) in enumerate(encoded):
            if rate is not None and (delay := started + index / rate - time.monotonic()) > 0:
                # What is due goes out together, then a sleep till the next is due (at least
                # PACE_S): waking for each job (a poll with its sub-millisecond delay) cost this
                # client 0.14 CPU ms a job at 2,200 jobs/s, on the two CPUs it measures.
                time.sleep(max(delay, PACE_S))
                producer.poll(0)
            sent[job_id] = time.time()
            while True:
                try:
                    producer.produce(topic, key=job_id.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        if producer.flush(120) != 0:
            raise RuntimeError("the benchmark's producer could not deliver every job")
        return sent, len(sent) / (time.monotonic() - started)

    return submit


def http_single(
    stack: Stack, signed: list[Signed], count: int, *, clients: int = SINGLE_CLIENTS
) -> Callable[[], tuple[dict[str, float], float | None]]:
    """`POST /v1/jobs` (JSON, content already uploaded), one job a request, `clients` at once."""
    bodies = [s.request(JobKind.VERIFY) for s in islice(cycle(signed), count)]
    return lambda: asyncio.run(_http(stack, "/v1/jobs", bodies, clients, _one))


def http_batch(
    stack: Stack, signed: list[Signed], count: int, *, clients: int = BATCH_CLIENTS
) -> Callable[[], tuple[dict[str, float], float | None]]:
    """`POST /v1/jobs/batch` with 500 jobs a request, `clients` at once."""
    jobs = [s.request(JobKind.VERIFY) for s in islice(cycle(signed), count)]
    bodies = [{"jobs": jobs[i : i + BATCH_SIZE]} for i in range(0, len(jobs), BATCH_SIZE)]
    return lambda: asyncio.run(_http(stack, "/v1/jobs/batch", bodies, clients, _many))


def _one(answer: dict[str, Any]) -> list[str]:
    return [str(answer["job_id"])]


def _many(answer: dict[str, Any]) -> list[str]:
    return [str(job["job_id"]) for job in answer["jobs"]]


async def _http(
    stack: Stack,
    path: str,
    bodies: list[dict[str, Any]],
    clients: int,
    job_ids: Callable[[dict[str, Any]], list[str]],
) -> tuple[dict[str, float], float | None]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(json.dumps(body).encode())
    sent: dict[str, float] = {}
    connections = [await Connection.open(stack.base_url) for _ in range(clients)]

    async def worker(connection: Connection) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            at = time.time()
            status, answer = await connection.post(path, body)
            if status != 202:
                raise RuntimeError(f"{path} answered {status}: {answer}")
            sent.update(dict.fromkeys(job_ids(answer), at))

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return sent, len(sent) / (time.monotonic() - started)


def prefer_wait(
    stack: Stack, signed: list[Signed], *, rate: float, seconds: float
) -> dict[str, float]:
    """`POST /v1/jobs` with `Prefer: wait=5` at a steady rate: how long until the finished job
    comes back (ms percentiles), and how many did not finish within the wait."""
    return asyncio.run(_prefer_wait(stack, signed, rate=rate, count=max(5, int(rate * seconds))))


async def _prefer_wait(
    stack: Stack, signed: list[Signed], *, rate: float, count: int
) -> dict[str, float]:
    bodies = [json.dumps(s.request(JobKind.VERIFY)).encode() for s in islice(cycle(signed), count)]
    times: list[float] = []
    unfinished = 0

    async def one(body: bytes) -> None:
        nonlocal unfinished
        connection = await Connection.open(stack.base_url)
        try:
            at = time.perf_counter()
            status, _ = await connection.post("/v1/jobs", body, headers={"Prefer": "wait=5"})
            times.append(1000 * (time.perf_counter() - at))
            unfinished += status != 200
        finally:
            connection.close()

    tasks = []
    for body in bodies:
        tasks.append(asyncio.create_task(one(body)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    return percentiles(times) | {"unfinished": float(unfinished)}

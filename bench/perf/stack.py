"""The real system, started as `anchorline up` starts it, on free ports in a temporary state dir,
with its jobs table in a new PostgreSQL database; and the CPU time of each of its processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from anchorline.infra.anvil import ensure_node_tools
from anchorline.infra.kafka import ensure_kafka_jars
from anchorline.infra.ports import free_ports
from anchorline.infra.postgres import PostgresServer
from anchorline.settings import Settings

START_TIMEOUT_S = 240
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Each jobs-table row that becomes terminal is stamped by PostgreSQL itself, so "terminal row"
# is measured where it happens, not when a poller notices it.
TERMINAL_TRIGGER = """
create table if not exists bench_terminal (job_id text primary key, at timestamptz not null);
create or replace function bench_stamp() returns trigger language plpgsql as $$
begin
  insert into bench_terminal values (new.job_id, clock_timestamp()) on conflict do nothing;
  return new;
end $$;
drop trigger if exists bench_terminal on jobs;
create trigger bench_terminal after insert or update on jobs for each row
  when (new.state in ('succeeded', 'failed', 'dead')) execute function bench_stamp();
"""


@dataclass
class Stack:
    """A running `anchorline up` and how the benchmark reaches it."""

    settings: Settings
    base_url: str
    up: subprocess.Popen[bytes]
    postgres: PostgresServer
    dsn: str
    registry_address: str
    log_path: Path
    jobs_producer: Any = field(default=None, init=False, repr=False)  # measure.py's, kept

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each part: services, Kafka, anvil, PostgreSQL, this client."""
        totals: dict[str, float] = {}
        for pid, label in self._processes().items():
            used = _cpu_of(pid, children=label == "postgres")
            if used is not None:
                totals[label] = totals.get(label, 0.0) + used
        totals["bench (client)"] = _cpu_of(os.getpid(), children=False) or 0.0
        return totals

    def jit_cpu_seconds(self) -> float:
        """CPU seconds the broker's JIT compiler threads (C1, C2) have used so far."""
        return sum(
            _thread_cpu(pid, prefix=("C1 ", "C2 "))
            for pid, label in self._processes().items()
            if label == "kafka"
        )

    def _processes(self) -> dict[int, str]:
        parents = _parents()
        found: dict[int, str] = {}
        for pid in _descendants(self.up.pid, parents):
            label = _label(pid)
            if label:
                found[pid] = label
        postmaster = _postmaster(self.postgres)
        if postmaster:
            found[postmaster] = "postgres"
            for pid in _descendants(postmaster, parents):
                found[pid] = "postgres"
        return found


def postgres_cpu_seconds(postgres: PostgresServer) -> float:
    """CPU seconds the cluster has used so far: its postmaster, its live backends and the
    ones already reaped."""
    postmaster = _postmaster(postgres)
    if postmaster is None:
        return 0.0
    pids = [postmaster, *_descendants(postmaster, _parents())]
    return sum(_cpu_of(pid, children=True) or 0.0 for pid in pids)


def _postmaster(postgres: PostgresServer) -> int | None:
    try:
        return int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def running_stack(state_dir: Path) -> Iterator[Stack]:
    """Start PostgreSQL (a new database) and `anchorline up`; stop both afterwards."""
    # A benchmark ended by SIGTERM (kill, timeout) stops its stack as Ctrl-C does: Python's
    # default would end at once, leaving the stack (in a session of its own) running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    ensure_kafka_jars()
    ensure_node_tools()
    pg_port, kafka_port, controller_port, rpc_port, http_port = free_ports(5)
    postgres = PostgresServer(state_dir=state_dir / "postgres", port=pg_port)
    with postgres:
        url = postgres.new_database("bench")
        settings = Settings.from_env(
            state_dir=state_dir / "system",
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            kafka_controller_port=controller_port,
            rpc_url=f"http://127.0.0.1:{rpc_port}",
            http_port=http_port,
            database_url=url,
            registry_address="",
        )
        log_path = state_dir / "up.log"
        with log_path.open("wb") as log:
            up = subprocess.Popen(
                [str(Path(sys.executable).parent / "anchorline"), "up"],
                env=os.environ | settings.as_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            registry = _wait_until_up(up, log_path)
            base_url = f"http://127.0.0.1:{http_port}"
            _wait_http(base_url)
            dsn = url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(TERMINAL_TRIGGER)  # type: ignore[arg-type]
            yield Stack(settings, base_url, up, postgres, dsn, registry, log_path)
        finally:
            _stop(up)
    postgres.remove()


def _wait_until_up(up: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if up.poll() is not None:
            raise RuntimeError("anchorline up exited early:\n" + text[-4000:])
        if "gateway listening on" in text:
            line = next(line for line in text.splitlines() if line.startswith("registry contract"))
            return line.split()[2]
        time.sleep(0.2)
    raise RuntimeError("anchorline up did not come up in time:\n" + log_path.read_text()[-4000:])


def _wait_http(base_url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the gateway never became ready")


def _stop(up: subprocess.Popen[bytes]) -> None:
    up.send_signal(signal.SIGINT)
    try:
        up.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait(10)


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                parents[int(entry.name)] = int(stat[1])
    return parents


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _label(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [word.decode(errors="replace") for word in argv if word]
    if "run" in words and words.index("run") + 1 < len(words):
        return words[words.index("run") + 1]
    if words and words[0].endswith("java"):
        return "kafka"
    if any(word.endswith("anvil") for word in words[:1]):
        return "anvil"
    return None


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "


def _cpu_of(pid: int, *, children: bool) -> float | None:
    """utime + stime (and the reaped children's, for PostgreSQL's short-lived backends)."""
    stat = _stat(pid)
    if stat is None:
        return None
    ticks = int(stat[11]) + int(stat[12])
    if children:
        ticks += int(stat[13]) + int(stat[14])
    return ticks / CLOCK_TICKS


def _thread_cpu(pid: int, *, prefix: tuple[str, ...]) -> float:
    """CPU seconds of the threads of `pid` whose name starts with one of `prefix`."""
    ticks = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(prefix):
                continue
            text = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        stat = text[text.rindex(")") + 2 :].split()
        ticks += int(stat[11]) + int(stat[12])
    return ticks / CLOCK_TICKS

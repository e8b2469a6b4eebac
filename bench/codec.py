"""The Avro codec: µs to write and read each event type, the compiled codec against fastavro.

    .venv/bin/python bench/codec.py [--rounds 7] [--count 20000] [--json PATH]

For each event type, a typical event (a verify job's request, its statuses, a proof's and an
anchor's requests, a webhook's) is written `--count` times with the compiled writer
(anchorline/stream/avro_writer.py) and with fastavro as the codec called it before, and read
back into the event with the compiled reader (avro_reader.py) and with fastavro and the codec's
making of the event; the figure is the fastest of `--rounds` rounds (the least disturbed by the
rest of the machine), and each compiled figure is shown as a ratio to fastavro's of the same
run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anchorline.events import (
    AnchorRequested,
    JobKind,
    JobRef,
    JobRequested,
    NotifyRequested,
    ProveRequested,
    Stage,
    StageState,
    new_id,
    utcnow,
)
from anchorline.stream import codec


def events() -> list[Any]:
    now = utcnow()
    job = JobRequested(
        job_id=new_id(),
        kind=JobKind.PROOF,
        content_uri="sha256:" + "ab" * 32,
        manifest=json.dumps(
            {
                "name": "report.pdf",
                "sha256": "0x" + "cd" * 32,
                "size": 4096,
                "signer": "0x" + "12" * 20,
            }
        ),
        signature="0x" + "11" * 65,
        submitted_at=now,
        tenant="acme",
    )
    ref = JobRef(job.job_id, job.kind, now, "acme")
    result = json.dumps({"ok": True, "signer": "0x" + "12" * 20, "manifest_hash": "0x" + "ef" * 32})
    return [
        job,
        ref.status(Stage.VERIFY, StageState.QUEUED, attempt=1, progress=0),
        ref.status(Stage.VERIFY, StageState.SUCCEEDED, progress=100, result=result),
        ProveRequested(
            job.job_id, job.kind, "0x" + "cd" * 32, "0x" + "ef" * 32, "0x" + "12" * 20, now
        ),
        AnchorRequested(new_id(), "0x" + "77" * 32, [new_id() for _ in range(64)], now),
        NotifyRequested(job.job_id, job.kind, Stage.PROVE, StageState.SUCCEEDED, now, result),
    ]


def fastest_us(call: Callable[[], Any], *, rounds: int, count: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            call()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def measure(event: Any, *, rounds: int, count: int) -> dict[str, Any]:
    schemas = codec._schemas()
    data = codec.encode(event)
    write = schemas.writers[type(event)]
    read = schemas.readers[data[2 : codec.HEADER_SIZE]]
    if write(event) != codec.encode_with_fastavro(event) or not (
        read(data) == codec.decode_with_fastavro(data) == event
    ):
        raise RuntimeError(f"the compiled codec and fastavro disagree on {type(event).__name__}")
    figures = {
        "bytes": len(data),
        "write_us": fastest_us(lambda: write(event), rounds=rounds, count=count),
        "fastavro_write_us": fastest_us(
            lambda: codec.encode_with_fastavro(event), rounds=rounds, count=count
        ),
        "read_us": fastest_us(lambda: read(data), rounds=rounds, count=count),
        "fastavro_read_us": fastest_us(
            lambda: codec.decode_with_fastavro(data), rounds=rounds, count=count
        ),
    }
    return {"event": label(event), **figures}


def label(event: Any) -> str:
    state = getattr(event, "state", None)
    return (
        f"{type(event).__name__} ({state})"
        if state and hasattr(event, "event_id")
        else type(event).__name__
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds, the fastest kept (7)")
    parser.add_argument("--count", type=int, default=20_000, help="calls a round (20,000)")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args()
    rows = [measure(event, rounds=args.rounds, count=args.count) for event in events()]
    print(f"µs a call, fastest of {args.rounds} rounds of {args.count:,}")
    head = ("event", "bytes", "write", "fastavro", "x", "read", "fastavro", "x")
    print("{:30} {:>6} {:>7} {:>9} {:>5} {:>7} {:>9} {:>5}".format(*head))
    for row in rows:
        write, slow_write = row["write_us"], row["fastavro_write_us"]
        read, slow_read = row["read_us"], row["fastavro_read_us"]
        print(
            f"{row['event']:30} {row['bytes']:>6} {write:>7.2f} {slow_write:>9.2f}"
            f" {slow_write / write:>5.1f} {read:>7.2f} {slow_read:>9.2f} {slow_read / read:>5.1f}"
        )
    out = args.json or Path(tempfile.gettempdir()) / "anchorline-codec.json"
    out.write_text(
        json.dumps({"rounds": args.rounds, "count": args.count, "events": rows}, indent=2)
    )
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

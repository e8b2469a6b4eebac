"""Peak resident memory of verifying a large file through the verify handler, against a baseline.

    .venv/bin/python bench/verify_memory.py [--size-mib 2048] [--runs 3] [--dense]

Makes a file in a temporary directory (sparse by default; --dense writes pseudo-random bytes),
signs a manifest for it, then runs, in fresh child processes, `--runs` times each:

- baseline: import everything the verifier service imports, build the handler, report ru_maxrss;
- verify:   the same, then verify the file through VerifyHandler.handle (file:// content URI).

It prints the medians: the verifier process's peak, which must stay under 64 MiB however large
the file, and its difference from the baseline, what the streaming itself needed. The file is
deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MIB = 64
MIB = 1 << 20


def child(mode: str, request: dict[str, str]) -> dict[str, float]:
    """Runs in the child process: imports (and, for `verify`, verifies), then reports."""
    from anchorline.events import JobKind, JobRequested, JobStatus, StageState, utcnow
    from anchorline.settings import Settings
    from anchorline.store.blobstore import FileBlobStore
    from anchorline_verifier.handler import VerifyHandler
    from anchorline_verifier.main import build  # noqa: F401  (everything the service imports)

    settings = Settings()
    content = Path(request["path"])
    blobs = FileBlobStore(Path(request["blobs"]), content_roots=[content.parent])
    handler = VerifyHandler(blobs, chunk_size=settings.chunk_size)
    elapsed = 0.0
    if mode == "verify":
        event = JobRequested(
            job_id="bench",
            kind=JobKind.VERIFY,
            content_uri=content.as_uri(),
            manifest=request["manifest"],
            signature=request["signature"],
            submitted_at=utcnow(),
        )
        started = time.perf_counter()
        (status,) = handler.handle([event], lambda ref, percent: None)
        elapsed = time.perf_counter() - started
        assert isinstance(status, JobStatus) and status.state is StageState.SUCCEEDED, status
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_mib": peak_kib / 1024, "seconds": elapsed}


def make_file(path: Path, size: int, *, dense: bool) -> None:
    with path.open("wb") as handle:
        if not dense:
            handle.truncate(size)
            return
        block = os.urandom(MIB)
        for offset in range(0, size, MIB):
            handle.write(block[: min(MIB, size - offset)])


def run_child(mode: str, request: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode]
    result = subprocess.run(
        command, input=json.dumps(request), capture_output=True, text=True, check=True
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dense", action="store_true", help="write real bytes, not a sparse file")
    parser.add_argument("--child", choices=("baseline", "verify"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(sys.stdin.read()))))
        return 0

    from eth_account import Account

    from anchorline.proof.manifest import canonical_bytes, describe_file, sign_eip191

    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="anchorline-bench-") as tmp:
        path = Path(tmp) / "content.bin"
        make_file(path, size, dense=args.dense)
        creator = Account.create()
        document = describe_file(path, creator.address)
        request = {
            "path": str(path),
            "blobs": str(Path(tmp) / "blobs"),
            "manifest": canonical_bytes(document).decode(),
            "signature": sign_eip191(document, creator.key.hex()),
        }
        baseline = [run_child("baseline", request) for _ in range(args.runs)]
        verify = [run_child("verify", request) for _ in range(args.runs)]
    base_mib = statistics.median(run["peak_mib"] for run in baseline)
    verify_mib = statistics.median(run["peak_mib"] for run in verify)
    seconds = statistics.median(run["seconds"] for run in verify)
    extra = verify_mib - base_mib
    kind = "dense" if args.dense else "sparse"
    print(f"verify a {args.size_mib} MiB {kind} file through VerifyHandler, {args.runs} runs each")
    print(f"baseline (imports + handler): peak RSS {base_mib:7.1f} MiB (median)")
    print(f"verify:                       peak RSS {verify_mib:7.1f} MiB (median)")
    verdict = "PASS" if verify_mib < TARGET_MIB else "FAIL"
    print(f"verify - baseline:            {extra:7.1f} MiB  (what the streaming itself needs)")
    target = f"target < {TARGET_MIB} MiB: {verdict}"
    print(f"verifier process peak:        {verify_mib:7.1f} MiB  ({target})")
    print(f"time to verify:               {seconds:7.2f} s    ({size / MIB / seconds:.0f} MiB/s)")
    return 0 if verify_mib < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
